"""``trtbuild all`` / ``trtbuild build``: build the stale engines and what they depend on, per device."""

from __future__ import annotations

import contextlib
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import networkx as nx

from trtbuild.clock import STARTED
from trtbuild.env.jetson import device_of
from trtbuild.files import remove_partials
from trtbuild.graph.dag import build_graph, select, step_of
from trtbuild.graph.runner import Reporter, run_graph
from trtbuild.manifest.target import Project
from trtbuild.ops.preflight import preflight
from trtbuild.ops.project import RemoteOptions, check_names, device_context, open_remote, run_lock, unreachable
from trtbuild.ops.summary import model_result
from trtbuild.results import FRESH, RunSummary
from trtbuild.ssh.transport import DeviceError
from trtbuild.state.freshstamp import remove_stamps, write_stamp
from trtbuild.state.statcache import StatCache
from trtbuild.steps.context import BUILT, PULLED, Context
from trtbuild.steps.step import assess

#: ``stamp_device`` of a build of named models: no fresh stamp is written.
NO_STAMP: Literal[False] = False


def build(
    runs: list[tuple[Project, Reporter]],
    names: list[str] | None,
    jobs: int,
    wait_seconds: float = 0,
    stamp_device: str | None | Literal[False] = NO_STAMP,
    remote: RemoteOptions | None = None,
) -> list[RunSummary]:
    """Build the stale engines of ``names`` (all models when ``None``) and what they depend on, for each
    device's project of ``runs`` (``trtbuild all --device a --device b``; one entry for one device), each
    with its own reporter; returns their summaries in the same order, each with the fingerprint its keys
    hold (a builder device's, as probed) and the wall time of the command so far.

    The project's run lock is taken once; up to ``jobs`` devices build at once, each running up to ``jobs``
    steps of its own at once, and a builder device one engine build at a time (``Step.on_device``). A
    builder device (``remote:``) that does not answer fails its own models only, with one line naming it.

    ``remote``: the remote cache to pull stale steps from and push built ones to (``steps.remote``);
    default: the manifest's ``remote_cache``, if any. ``stamp_device``: for ``trtbuild all`` of one device,
    the device as requested (``None``: detected); when every model ends fresh or built, a fresh stamp is
    written for the no-op fast path (``trtbuild.fastpath``). A project built on a builder device gets no
    stamp: only the device can say whether it changed.

    Raises:
        ManifestError: unknown names, a cycle, or inputs that do not match an ONNX (nothing built).
        BusyError: another run holds the project.
        StateError: the lock file is corrupt.
    """
    first = runs[0][0]
    for project, _ in runs:
        check_names(project, names or list(project.models))
    with run_lock(first, wait_seconds):
        remove_stamps(first)
        _remove_leftovers(first)
        stats = StatCache(first.state_dir / "statcache.json")
        for warning in stats.warnings:
            runs[0][1].warn(warning)
        try:
            if len(runs) == 1:
                project, reporter = runs[0]
                summaries = [_build_device(project, names, jobs, reporter, stamp_device, remote, stats)]
            else:
                with ThreadPoolExecutor(max_workers=min(jobs, len(runs))) as pool:
                    futures = [
                        pool.submit(_build_device, project, names, jobs, reporter, project.device, remote, stats)
                        for project, reporter in runs
                    ]
                    summaries = [future.result() for future in futures]
        finally:
            stats.save()
    seconds = time.monotonic() - STARTED  # the whole command's, the same for every device
    for summary in summaries:
        summary.seconds = seconds
    return summaries


def _build_device(
    project: Project,
    names: list[str] | None,
    jobs: int,
    reporter: Reporter,
    stamp_device: str | None | Literal[False],
    remote: RemoteOptions | None,
    stats: StatCache,
) -> RunSummary:
    """One device's part of ``build``, with the run lock held."""
    names = names or list(project.models)
    remove_partials(project.lock_path.parent, project.lock_path.name)
    with contextlib.ExitStack() as stack:
        try:
            ctx = stack.enter_context(device_context(project, stats=stats))
        except DeviceError as exc:
            reporter.warn(str(exc))
            return unreachable(project, names, str(exc))
        if ctx.lock.migrated:  # a schema-1 lock: written as schema 2 now, its keys unchanged
            ctx.lock.save()
        if ctx.device is None and project.device and project.device != device_of(ctx.env):
            reporter.warn(
                f"building devices/{project.device}.yaml on this machine, detected as {device_of(ctx.env)} "
                f"({ctx.env['builder']} {ctx.env['builder_version']}); its engines are for this builder"
            )
        graph = select(build_graph(project, ctx.env), names)
        ctx.remote = open_remote(project, remote, reporter.warn)
        preflight(graph, ctx)
        outcomes = run_graph(graph, ctx, jobs, reporter)
        results = {name: model_result(graph, outcomes, project, name) for name in names}
        done = (BUILT, FRESH, PULLED)
        if stamp_device is not False and ctx.device is None and all(r.status in done for r in results.values()):
            _stamp_if_fresh(graph, ctx, stamp_device or None)
        return RunSummary(results, project.device or device_of(ctx.env), ctx.env)


def _stamp_if_fresh(graph: nx.DiGraph, ctx: Context, device: str | None) -> None:
    """Write the no-op stamp if every node of ``graph`` now assesses fresh. The assessment is what
    collects the stamp's file list: every file a key depends on passes through the stat cache
    (``StatCache.consulted``), discovered dependencies and external data included."""
    if not any(assess(step_of(graph, node_id), ctx).reasons for node_id in graph.nodes):
        write_stamp(ctx.project, device, ctx.stats.consulted)


def _remove_leftovers(project: Project) -> None:
    """Delete what a killed run may have left: request/result files and partial state files (each device's
    partial lock: ``_build_device``).

    Partial engines and exports are removed when their target is next built. Nothing here was ever
    trusted: partial files never carry a target's name.
    """
    shutil.rmtree(project.state_dir / "tmp", ignore_errors=True)
    remove_partials(project.state_dir, "statcache.json")
