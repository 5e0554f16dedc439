"""The operations behind the CLI: plan, build, clean — on a loaded project, with its state files.

The CLI parses arguments and prints; this module decides. Results are data (``ModelResult``) so the
human table and ``--json`` come from the same values.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import filelock
import networkx as nx

from trtbuild.env.fingerprint import fingerprint
from trtbuild.env.jetson import device_of
from trtbuild.errors import BusyError, ManifestError, did_you_mean
from trtbuild.graph.dag import build_graph, engine_node_id, select
from trtbuild.graph.engine_node import EngineBuild
from trtbuild.graph.nodes import BUILT, FAILED, Context, Outcome
from trtbuild.graph.sources import SourceFile
from trtbuild.graph.runner import Reporter, run_graph
from trtbuild.manifest.devices import known_devices
from trtbuild.manifest.loader import Project, load_project
from trtbuild.manifest.onnx_inputs import verify_inputs
from trtbuild.state.atomic import remove_partials
from trtbuild.state.freshstamp import remove_stamps, write_stamp
from trtbuild.state.lockfile import LockFile
from trtbuild.state.statcache import StatCache
from trtbuild.results import FRESH, STALE, ModelResult


def load(manifest: Path, device: str | None) -> Project:
    """Load ``manifest`` for ``device``: the one asked for, else the one detected when the project has
    ``devices/``, else none (a single-device project with ``builds.lock``).

    Raises:
        ManifestError: an unknown device, or one that cannot be detected (the message lists the known ones).
    """
    root = Path(os.path.abspath(manifest)).parent
    known = known_devices(root)
    if device is None and known:
        env = fingerprint()
        device = device_of(env)
        if device not in known:
            seen = env.get("device_model") or f"no device tree; builder {env['builder']}"
            raise ManifestError(f"cannot match this machine ({seen}) to a device: pass --device, one of: {', '.join(known)}")
    return load_project(manifest, device)


def open_context(project: Project, trust_stat_cache: bool = True) -> Context:
    """Load the state a run needs: environment fingerprint, stat cache, lock.

    ``trust_stat_cache=False`` (audits) hashes every file again instead of trusting unchanged stats.

    Raises:
        StateError: the lock file is corrupt.
        TrtbuildError: no TensorRT builder is installed.
    """
    state = project.state_dir
    return Context(
        project=project,
        env=fingerprint(),
        cache=StatCache(state / "statcache.json", trust=trust_stat_cache),
        lock=LockFile(project.lock_path),
    )


@contextlib.contextmanager
def run_lock(project: Project, wait_seconds: float) -> Iterator[None]:
    """Hold the project's run lock (``.trtbuild/run.lock``, filelock) for a run that writes state.

    Raises:
        BusyError: another run holds it for longer than ``wait_seconds``.
    """
    project.state_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(project.state_dir / "run.lock"))
    try:
        lock.acquire(timeout=wait_seconds)
    except filelock.Timeout:
        raise BusyError(
            f"another trtbuild run is building {project.manifest.name} (it holds {lock.lock_file}); "
            "wait for it or pass --wait SECONDS"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _check_names(project: Project, names: list[str]) -> None:
    unknown = [name for name in names if name not in project.models]
    if unknown:
        raise ManifestError([f"{project.manifest.name}: no model named {name!r}{did_you_mean(name, project.models)} "
                             f"(models: {', '.join(project.models)})" for name in unknown])


def _steps(graph: nx.DiGraph, engine_id: str) -> list[str]:
    """The nodes a model's engine needs, in run order, the engine last.

    Sorts only the model's own subgraph (its engine's ancestors), so asking for every model of an
    N-model project costs O(N), not one topological sort of the whole graph per model (O(N^2)).
    """
    needed = graph.subgraph(nx.ancestors(graph, engine_id) | {engine_id})
    return list(nx.lexicographical_topological_sort(needed))


def plan(project: Project, names: list[str] | None = None) -> dict[str, ModelResult]:
    """What is stale and why, per model, without building anything.

    Raises:
        ManifestError: an unknown model name, or an unreadable ONNX.
    """
    names = names or list(project.models)
    _check_names(project, names)
    ctx = open_context(project)
    graph = select(build_graph(project, ctx.env), names)
    _preflight(graph, ctx)
    results = {}
    for name in names:
        reasons = []
        for node_id in _steps(graph, engine_node_id(graph, name)):  # the same nodes, in the same order, that `trtbuild all` would run
            node = graph.nodes[node_id]["node"]
            reasons += [f"{node.verb}: {reason}" if node.verb else reason for reason in node.stale_reasons(ctx)]
        results[name] = ModelResult(STALE if reasons else FRESH, reasons, project.relative(project.models[name].engine))
    ctx.cache.save()
    return results


def _preflight(graph: nx.DiGraph, ctx: Context) -> None:
    """Check what the manifest says against the files, before any step runs (``plan`` and builds alike):
    every local source exists and matches its sha256 pin, and the declared inputs of every model whose
    ONNX is a source match that ONNX — whatever the precision and the steps between ONNX and engine.

    Raises:
        ManifestError: with every problem found (exit code 2, nothing built).
    """
    problems: list[str] = []
    for node_id, data in graph.nodes(data=True):
        node = data["node"]
        if isinstance(node, SourceFile):
            where, target = ctx.project.relative(node.produces), ctx.project.models[node.model]
            if not node.produces.is_file():
                problems.append(f"{target.where('source')}: {where} does not exist")
            elif node.pin is not None and (actual := ctx.cache.sha256(node.produces)) != node.pin:
                problems.append(f"{target.where('source')}: {where} has sha256 {actual}, not the pinned {node.pin}")
        elif isinstance(node, EngineBuild) and node.target.recipe is None and node.target.onnx.is_file():
            try:
                if node.stale_reasons(ctx):
                    verify_inputs(node.target)
            except ManifestError as exc:
                problems += exc.messages
            except FileNotFoundError as exc:
                problems.append(f"{node.target.where('plugins')}: {exc.filename} does not exist")
    if problems:
        raise ManifestError(problems)


def build(project: Project, names: list[str] | None, jobs: int, reporter: Reporter, wait_seconds: float = 0,
          stamp_device: str | None | bool = False) -> dict[str, ModelResult]:
    """Build the stale engines of ``names`` (all models when ``None``) and what they depend on.

    ``stamp_device``: for ``trtbuild all``, the device as requested (``None``: detected); when every
    model ends fresh or built, a fresh stamp is written for the no-op fast path (``trtbuild.fastpath``).

    Raises:
        ManifestError: unknown names, a cycle, or inputs that do not match an ONNX (nothing built).
        BusyError: another run holds the project.
        StateError: the lock file is corrupt.
    """
    names = names or list(project.models)
    _check_names(project, names)
    with run_lock(project, wait_seconds):
        remove_stamps(project)
        _remove_leftovers(project)
        ctx = open_context(project)
        for warning in ctx.cache.warnings:
            reporter.warn(warning)
        if project.device and project.device != device_of(ctx.env):
            reporter.warn(f"building devices/{project.device}.yaml on this machine, detected as {device_of(ctx.env)} "
                          f"({ctx.env['builder']} {ctx.env['builder_version']}); its engines are for this builder")
        graph = select(build_graph(project, ctx.env), names)
        try:
            _preflight(graph, ctx)
            outcomes = run_graph(graph, ctx, jobs, reporter)
            results = {name: _model_result(graph, outcomes, project, name) for name in names}
            if stamp_device is not False and all(result.status in (BUILT, FRESH) for result in results.values()):
                _stamp_if_fresh(graph, ctx, stamp_device or None)
        finally:
            ctx.cache.save()
    return results


def _stamp_if_fresh(graph: nx.DiGraph, ctx: Context, device: str | None) -> None:
    """Write the no-op stamp if every node of ``graph`` now assesses fresh. The assessment is what
    collects the stamp's file list: every file a key depends on passes through the stat cache
    (``StatCache.consulted``), discovered dependencies and external data included."""
    if not any(graph.nodes[node_id]["node"].stale_reasons(ctx) for node_id in graph.nodes):
        write_stamp(ctx.project, device, ctx.cache.consulted)


def _remove_leftovers(project: Project) -> None:
    """Delete what a killed run may have left: request/result files and partial state files.

    Partial engines and exports are removed when their target is next built. Nothing here was ever
    trusted: partial files never carry a target's name.
    """
    shutil.rmtree(project.state_dir / "tmp", ignore_errors=True)
    remove_partials(project.lock_path.parent, project.lock_path.name)
    for state_file in ("statcache.json",):
        remove_partials(project.state_dir, state_file)


def _model_result(graph: nx.DiGraph, outcomes: dict[str, Outcome], project: Project, name: str) -> ModelResult:
    """The engine's outcome, with the reasons of every upstream node that did work; an upstream failure
    is the model's failure."""
    engine_id = engine_node_id(graph, name)
    engine = project.relative(project.models[name].engine)
    upstream = _steps(graph, engine_id)[:-1]
    for node_id in upstream:
        if outcomes[node_id].status == FAILED:
            failed = outcomes[node_id]
            return ModelResult(FAILED, failed.reasons, engine, failed.seconds, failed.log_tail)
    outcome = outcomes[engine_id]
    work = [outcomes[node_id] for node_id in upstream if outcomes[node_id].status == BUILT]
    upstream_reasons = [reason for done in work for reason in done.reasons]
    reasons = outcome.reasons + upstream_reasons if outcome.status == FAILED else upstream_reasons + outcome.reasons
    seconds = sum(done.seconds for done in work) + outcome.seconds
    return ModelResult(outcome.status, reasons, engine, seconds, outcome.log_tail)


def clean(project: Project, names: list[str] | None, wait_seconds: float = 0) -> list[str]:
    """Delete the engines (and leftover partial files) of ``names`` and forget them in the lock.

    Returns:
        the engine paths removed, relative to the project.
    """
    names = names or list(project.models)
    _check_names(project, names)
    removed = []
    with run_lock(project, wait_seconds):
        remove_stamps(project)
        lock = LockFile(project.lock_path)
        for name in names:
            engine = project.models[name].engine
            remove_partials(engine.parent, engine.name)
            if engine.is_file():
                engine.unlink()
                removed.append(project.relative(engine))
            lock.remove(name)
        lock.save()
    return removed
