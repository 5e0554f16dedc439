"""Run the graph in topological waves; independent nodes of a wave in parallel (``-j N``).

Error policy (DVC's ``skip_dependents``): a failed node's dependents are skipped, every other node goes
on, and the run's result says which failed. A node's unexpected exception fails that node only. A node
that fails because the run is being stopped (``request_stop``: Ctrl-C, SIGTERM) is ``interrupted``.
"""

from __future__ import annotations

import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Protocol

import networkx as nx

from trtbuild.errors import TrtbuildError
from trtbuild.graph.nodes import FAILED, INTERRUPTED, SKIPPED, Context, Node, Outcome

_STOPPING = threading.Event()


def request_stop() -> None:
    """Say that the run is being stopped (call before terminating the children): the nodes that fail
    from now on are reported ``interrupted``, not ``failed``."""
    _STOPPING.set()


class Reporter(Protocol):
    """Receives progress.

    ``started``: a node is about to do work, with the reasons its assessment gives (nodes that are fresh
    are not announced); ``finished``: a node ended, whatever its outcome (skipped dependents of a failed
    node included); ``warn``: something worth a warning happened.
    """

    def started(self, node: Node, reasons: list[str]) -> None: ...

    def finished(self, node: Node, outcome: Outcome) -> None: ...

    def warn(self, message: str) -> None: ...


def _run_one(node: Node, ctx: Context, reporter: Reporter) -> Outcome:
    started = time.monotonic()
    try:
        reasons = node.stale_reasons(ctx)  # only to announce the work: the node assesses again (stat-cached) as it runs
        if reasons:
            reporter.started(node, reasons)
        outcome = node.run(ctx)
    except TrtbuildError as exc:
        outcome = Outcome(FAILED, [str(exc)])
    except Exception as exc:  # a bug in one node must not take the other models down
        outcome = Outcome(FAILED, [f"internal error: {type(exc).__name__}: {exc}"], 0.0, traceback.format_exc())
    outcome.seconds = max(outcome.seconds, time.monotonic() - started)
    if outcome.status == FAILED and _STOPPING.is_set():
        outcome = Outcome(INTERRUPTED, ["interrupted"], outcome.seconds)
    reporter.finished(node, outcome)
    return outcome


def _run_wave(wave: list[str], graph: nx.DiGraph, ctx: Context, pool: ThreadPoolExecutor, reporter: Reporter,
              outcomes: dict[str, Outcome]) -> None:
    """Run one wave's nodes in ``pool``; a node whose predecessor failed, was skipped or was interrupted
    is skipped (its reason names that predecessor)."""
    futures = {}
    for node_id in wave:
        node: Node = graph.nodes[node_id]["node"]
        blocked = [p for p in graph.predecessors(node_id) if outcomes[p].status in (FAILED, SKIPPED, INTERRUPTED)]
        if blocked:
            outcomes[node_id] = Outcome(SKIPPED, [f"{blocked[0]} did not succeed"])
            reporter.finished(node, outcomes[node_id])
            continue
        futures[pool.submit(_run_one, node, ctx, reporter)] = node_id
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
