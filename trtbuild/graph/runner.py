"""Run the graph in topological waves; independent nodes of a wave in parallel (``-j N``).

Every node is a ``steps.step.Step``; the runner only calls ``steps.step.assess`` (to announce the work)
and ``steps.step.run``. Error policy (DVC's ``skip_dependents``): a failed step's dependents are skipped,
every other step goes on, and the run's result says which failed. A ``TrtbuildError`` a step raises (a
child that failed, a refused write) fails that step with its message and log tail; an unexpected
exception fails that step only, with its traceback as the log tail. A step that fails because the run is
being stopped (``request_stop``: Ctrl-C, SIGTERM) is ``interrupted``.
"""

from __future__ import annotations

import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Protocol

import networkx as nx

from trtbuild import reasons as why
from trtbuild.errors import TrtbuildError
from trtbuild.graph.dag import step_of
from trtbuild.reasons import Reason
from trtbuild.steps.context import FAILED, INTERRUPTED, SKIPPED, Context, Outcome
from trtbuild.steps.step import Step, assess, run

_STOPPING = threading.Event()


def request_stop() -> None:
    """Say that the run is being stopped (call before terminating the children): the nodes that fail
    from now on are reported ``interrupted``, not ``failed``."""
    _STOPPING.set()


class Reporter(Protocol):
    """Receives progress.

    ``started``: a step is about to do work, with the reasons its assessment gives (steps that are fresh
    are not announced); ``finished``: a step ended, whatever its outcome (skipped dependents of a failed
    step included); ``warn``: something worth a warning happened.
    """

    def started(self, step: Step, reasons: list[Reason]) -> None: ...

    def finished(self, step: Step, outcome: Outcome) -> None: ...

    def warn(self, message: str) -> None: ...


def _run_one(step: Step, ctx: Context, reporter: Reporter) -> Outcome:
    started = time.monotonic()
    try:
        reasons = assess(step, ctx).reasons  # memoized: ``run`` uses the same assessment
        if reasons:
            reporter.started(step, reasons)
        outcome = run(step, ctx)
    except TrtbuildError as exc:
        outcome = Outcome(FAILED, [why.error(str(exc))], 0.0, getattr(exc, "log_tail", ""))
    except Exception as exc:  # a bug in one step must not take the other models down
        outcome = Outcome(
            FAILED, [why.error(f"internal error: {type(exc).__name__}: {exc}")], 0.0, traceback.format_exc()
        )
    outcome.seconds = max(outcome.seconds, time.monotonic() - started)
    if outcome.status == FAILED and _STOPPING.is_set():
        outcome = Outcome(INTERRUPTED, [why.error("interrupted")], outcome.seconds)
    reporter.finished(step, outcome)
    return outcome


def _run_wave(
    wave: list[str],
    graph: nx.DiGraph,
    ctx: Context,
    pool: ThreadPoolExecutor,
    reporter: Reporter,
    outcomes: dict[str, Outcome],
) -> None:
    """Run one wave's nodes in ``pool``; a node whose predecessor failed, was skipped or was interrupted
    is skipped (its reason names that predecessor)."""
    futures = {}
    for node_id in wave:
        step = step_of(graph, node_id)
        blocked = [p for p in graph.predecessors(node_id) if outcomes[p].status in (FAILED, SKIPPED, INTERRUPTED)]
        if blocked:
            outcomes[node_id] = Outcome(SKIPPED, [Reason(why.UPSTREAM, step.kind, blocked[0])])
            reporter.finished(step, outcomes[node_id])
            continue
        futures[pool.submit(_run_one, step, ctx, reporter)] = node_id
    for future in as_completed(futures):
        outcomes[futures[future]] = future.result()


def run_graph(graph: nx.DiGraph, ctx: Context, jobs: int, reporter: Reporter) -> dict[str, Outcome]:
    """Run every node of ``graph``; returns node id -> outcome.

    Args:
        jobs: how many nodes of one wave run at once (each engine build is its own child process).
    """
    outcomes: dict[str, Outcome] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        for wave in nx.topological_generations(graph):
            _run_wave(sorted(wave), graph, ctx, pool, reporter, outcomes)
    except BaseException:  # Ctrl-C: start nothing new; running children are being terminated
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return outcomes
