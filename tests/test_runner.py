"""The runner and the graph with fake steps (steps whose work is a Python function), not fake TensorRT:
waves, parallelism, failure policy, interruption, and one assessment per step per run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from trtbuild import reasons as why
from trtbuild.errors import BuildError
from trtbuild.graph import runner
from trtbuild.graph.dag import select, steps_of
from trtbuild.reasons import Reason
from trtbuild.state.lockfile import LockFile
from trtbuild.state.statcache import StatCache
from trtbuild.steps.context import BUILT, FAILED, FRESH, INTERRUPTED, SKIPPED, Context, Outcome
from trtbuild.steps.step import Step, assess


class Reporter:
    """A reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, list[str]]] = []
        self.ends: list[tuple[str, str]] = []
        self.mutex = threading.Lock()

    def started(self, step: Step, reasons: list[Reason]) -> None:
        with self.mutex:
            self.starts.append((step.id, why.texts(reasons)))

    def finished(self, step: Step, outcome: Outcome) -> None:
        with self.mutex:
            self.ends.append((step.id, outcome.status))

    def warn(self, message: str) -> None:
        raise AssertionError(message)


def fake(
    name: str,
    work: Any = None,
    stale: bool = True,
    model: str = "m",
    kind: str = "export",
    checks: list[str] | None = None,
) -> Step:
    """A step named ``kind:name`` whose assessment says ``never`` while ``stale`` and whose work is
    ``work(ctx)`` (default: built)."""
    state = {"stale": stale}

    def check(ctx: Context) -> list[Reason]:
        if checks is not None:
            checks.append(name)
        return [Reason(why.NEVER, kind)] if state["stale"] else []

    def act(ctx: Context) -> Outcome:
        if work is None:
            outcome = Outcome(BUILT, [Reason(why.NEVER, kind)]) if state["stale"] else Outcome(FRESH)
        else:
            outcome = work(ctx)
        if outcome.status == BUILT:
            state["stale"] = False
        return outcome

    return Step(id=f"{kind}:{name}", kind=kind, model=model, output=Path(name), check=check, act=act)


def graph_of(steps: list[Step], edges: list[tuple[str, str]], engines: dict[str, str] | None = None) -> nx.DiGraph:
    graph = nx.DiGraph()
    for step in steps:
        graph.add_node(step.id, step=step)
    graph.add_edges_from(edges)
    graph.graph["engine_ids"] = engines or {}
    return graph


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return Context(
        project=None, env={}, stats=StatCache(tmp_path / "statcache.json"), lock=LockFile(tmp_path / "builds.lock")
    )  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def not_stopping() -> Any:
    yield
    runner._STOPPING.clear()


def test_independent_steps_of_a_wave_run_at_once_and_a_join_waits_for_both(ctx: Context) -> None:
    both = threading.Barrier(2, timeout=10)  # b and c must both be running for either to finish
    order: list[str] = []

    def meet(name: str) -> Any:
        def work(_: Context) -> Outcome:
            both.wait()
            order.append(name)
            return Outcome(BUILT)

        return work

    steps = [
        fake("a", lambda _: (order.append("a"), Outcome(BUILT))[1]),
        fake("b", meet("b")),
        fake("c", meet("c")),
        fake("d", lambda _: (order.append("d"), Outcome(BUILT))[1]),
    ]
    graph = graph_of(
        steps, [("export:a", "export:b"), ("export:a", "export:c"), ("export:b", "export:d"), ("export:c", "export:d")]
    )
    outcomes = runner.run_graph(graph, ctx, jobs=2, reporter=Reporter())
    assert {node: outcome.status for node, outcome in outcomes.items()} == dict.fromkeys(graph.nodes, BUILT)
    assert order[0] == "a" and sorted(order[1:3]) == ["b", "c"] and order[3] == "d"


def test_a_failure_skips_its_dependents_only_and_names_the_step_that_failed(ctx: Context) -> None:
    def boom(_: Context) -> Outcome:
        raise BuildError("the child process was killed by SIGKILL (out of memory?)", log_tail="[E] killed")

    steps = [fake("a", boom), fake("b"), fake("c"), fake("x"), fake("y")]
    graph = graph_of(steps, [("export:a", "export:b"), ("export:b", "export:c"), ("export:x", "export:y")])
    events = Reporter()
    outcomes = runner.run_graph(graph, ctx, jobs=1, reporter=events)
    statuses = {node: outcome.status for node, outcome in outcomes.items()}
    assert statuses == {
        "export:a": FAILED,
        "export:b": SKIPPED,
        "export:c": SKIPPED,
        "export:x": BUILT,
        "export:y": BUILT,
    }
    assert why.texts(outcomes["export:a"].reasons) == ["the child process was killed by SIGKILL (out of memory?)"]
    assert outcomes["export:a"].log_tail == "[E] killed"
    assert outcomes["export:b"].reasons == [Reason(why.UPSTREAM, "export", "export:a")]
    assert why.texts(outcomes["export:c"].reasons) == ["export:b did not succeed"]
    assert ("export:c", SKIPPED) in events.ends and "export:c" not in [node for node, _ in events.starts]
    assert ("export:x", ["export: never exported"]) in events.starts


def test_a_bug_in_one_step_fails_that_step_with_its_traceback(ctx: Context) -> None:
    def bug(_: Context) -> Outcome:
        return {}["missing"]  # type: ignore[no-any-return]

    outcomes = runner.run_graph(graph_of([fake("a", bug), fake("b")], []), ctx, jobs=2, reporter=Reporter())
    assert outcomes["export:a"].status == FAILED and outcomes["export:b"].status == BUILT
    assert why.texts(outcomes["export:a"].reasons) == ["internal error: KeyError: 'missing'"]
    assert "Traceback" in outcomes["export:a"].log_tail and "bug" in outcomes["export:a"].log_tail


def test_a_step_that_fails_while_the_run_is_stopped_is_interrupted(ctx: Context) -> None:
    def stopped(_: Context) -> Outcome:
        runner.request_stop()  # what Ctrl-C does before terminating the children
        raise BuildError("the child process was killed by SIGTERM")

    outcomes = runner.run_graph(
        graph_of([fake("a", stopped), fake("b")], [("export:a", "export:b")]), ctx, 1, Reporter()
    )
    assert outcomes["export:a"].status == INTERRUPTED and why.texts(outcomes["export:a"].reasons) == ["interrupted"]
    assert outcomes["export:b"].status == SKIPPED


def test_each_step_is_assessed_once_per_run_and_again_after_a_step_writes(ctx: Context) -> None:
    checks: list[str] = []
    fresh = fake("fresh", stale=False, checks=checks)
    stale = fake("stale", checks=checks)
    graph = graph_of([fresh, stale], [])
    assert assess(fresh, ctx).fresh and assess(fresh, ctx).fresh and checks == ["fresh"]  # memoized
    outcomes = runner.run_graph(graph, ctx, jobs=1, reporter=Reporter())
    assert outcomes["export:fresh"].status == FRESH and outcomes["export:stale"].status == BUILT
    assert checks.count("fresh") == 1  # plan, pre-flight and runner share one assessment
    assert not assess(stale, ctx).reasons  # the memo was emptied when "stale" was built: assessed anew
    assert checks.count("stale") >= 2


def test_steps_of_sorts_one_models_subgraph_engine_last_and_select_keeps_its_ancestors() -> None:
    steps = [
        fake("src", kind="source"),
        fake("onnx", model="a"),
        fake("a.engine", kind="engine", model="a"),
        fake("b.engine", kind="engine", model="b"),
        fake("other", model="c"),
        fake("c.engine", kind="engine", model="c"),
    ]
    graph = graph_of(
        steps,
        [
            ("source:src", "export:onnx"),
            ("export:onnx", "engine:a.engine"),
            ("export:onnx", "engine:b.engine"),
            ("export:other", "engine:c.engine"),
        ],
        {"a": "engine:a.engine", "b": "engine:b.engine", "c": "engine:c.engine"},
    )
    assert steps_of(graph, "b") == ["source:src", "export:onnx", "engine:b.engine"]
    chosen = select(graph, ["a"])
    assert set(chosen.nodes) == {"source:src", "export:onnx", "engine:a.engine"} and chosen.graph["engine_ids"] == {
        "a": "engine:a.engine"
    }
    with pytest.raises(KeyError):
        steps_of(chosen, "c")
