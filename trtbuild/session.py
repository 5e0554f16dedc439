"""The operations behind the CLI: plan, build, clean — on a loaded project, with its state files.

The CLI parses arguments and prints; this module decides. Results are data (``ModelResult``) so the
human table and ``--json`` come from the same values.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import filelock
import networkx as nx

from trtbuild import reasons as why
from trtbuild.env.fingerprint import fingerprint
from trtbuild.env.jetson import device_of
from trtbuild.errors import BusyError, ManifestError, TrtbuildError, WriteError, did_you_mean, os_error_line
from trtbuild.files import remove_partials, sha256_file
from trtbuild.graph.dag import build_graph, engine_node_id, select, step_of, steps_of
from trtbuild.graph.runner import Reporter, run_graph
from trtbuild.manifest.devices import known_devices
from trtbuild.manifest.loader import ModelTarget, Project, load_project
from trtbuild.manifest.onnx_inputs import verify_inputs
from trtbuild.reasons import INPUT_MISSING, Reason
from trtbuild.results import FRESH, STALE, ModelResult, StepRun, accuracy_figures
from trtbuild.ssh.transport import DeviceError
from trtbuild.state.freshstamp import remove_stamps, write_stamp
from trtbuild.state.lockfile import LockFile
from trtbuild.state.statcache import StatCache
from trtbuild.steps.context import BUILT, FAILED, INTERRUPTED, PULLED, Context, Outcome
from trtbuild.steps.remote import Remote, lookup_key, remote_key
from trtbuild.steps.step import Step, assess, never
from trtbuild.steps.step import push as push_step

if TYPE_CHECKING:
    from trtbuild.env.device import BuilderDevice


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
            raise ManifestError(
                f"cannot match this machine ({seen}) to a device: pass --device, one of: {', '.join(known)}"
            )
    return load_project(manifest, device)


def open_context(
    project: Project, trust_stat_cache: bool = True, device: BuilderDevice | None = None, cache: StatCache | None = None
) -> Context:
    """Load the state a run needs: environment fingerprint, stat cache, lock.

    ``trust_stat_cache=False`` (audits) hashes every file again instead of trusting unchanged stats.
    ``device``: the builder device the engines are built on (``device_context``); the fingerprint is then
    the device's, probed over SSH. ``cache``: a stat cache shared with the other devices of the run.

    Raises:
        StateError: the lock file is corrupt.
        TrtbuildError: no TensorRT builder is installed.
        DeviceError: the builder device did not answer its probe.
    """
    env = device.probe() if device is not None else fingerprint()
    if device is not None:
        _DEVICE_ENVIRONMENTS[project.device] = env
    return Context(
        project=project,
        env=env,
        cache=cache or StatCache(project.state_dir / "statcache.json", trust=trust_stat_cache),
        lock=LockFile(project.lock_path),
        device=device,
    )


#: device overlay -> the fingerprint its builder device answered in this process (``environment``).
_DEVICE_ENVIRONMENTS: dict[str | None, dict[str, Any]] = {}


def environment(project: Project) -> dict[str, Any]:
    """The fingerprint ``project``'s engines were keyed with in this process: its builder device's, as
    probed (``{}`` when the device did not answer), else this machine's (``env.fingerprint``)."""
    if project.remote_builder is not None:
        return dict(_DEVICE_ENVIRONMENTS.get(project.device, {}))
    return fingerprint()


@contextlib.contextmanager
def device_context(
    project: Project, trust_stat_cache: bool = True, cache: StatCache | None = None
) -> Iterator[Context]:
    """``open_context`` with the project's builder device (a device overlay's ``remote:``, ``env.device``)
    connected for as long as the context is used: what every command that judges or builds a device's
    engines opens. Without ``remote:``, ``open_context`` for this machine.

    Raises:
        DeviceError: the builder device did not answer (raised on entering, never from the body).
        StateError, TrtbuildError: as ``open_context``.
    """
    spec = project.remote_builder
    if spec is None:
        yield open_context(project, trust_stat_cache, cache=cache)
        return
    from trtbuild.env.device import open_device

    with open_device(project.device or spec["host"], spec) as device:
        yield open_context(project, trust_stat_cache, device=device, cache=cache)


def _unreachable(project: Project, names: list[str], problem: str) -> dict[str, ModelResult]:
    """Every model of ``names`` failed with the one line saying why its builder device cannot build."""
    return {
        name: ModelResult(FAILED, [why.error(problem)], project.relative(project.models[name].engine)) for name in names
    }


@dataclass(frozen=True)
class RemoteOptions:
    """The remote cache asked for on the command line.

    Attributes:
        url: ``oci://HOST[:PORT]/REPO``, ``oci+http://...`` or ``oci-layout:PATH``; ``None``: the manifest's
            ``remote_cache`` (or none).
        push: push what is built here (``--no-push``: pull only).
        required: a cache failure fails the step (``--remote-cache-required``).
    """

    url: str | None = None
    push: bool = True
    required: bool = False


def open_remote(project: Project, options: RemoteOptions | None, warn: Callable[[str], None]) -> Remote | None:
    """The run's remote cache: ``options.url``, else the manifest's (or device overlay's) ``remote_cache``;
    ``None`` when neither names one. Entries are signed when ``TRTBUILD_SIGNING_KEY`` names an Ed25519
    private key file, and only entries signed by a ``remote_cache_trusted_keys`` key are used when the
    manifest lists some (``remote.signing``).

    Raises:
        CacheError: the URL is not one trtbuild knows, or a key is not Ed25519 (exit code 2).
        ManifestError: a key file cannot be read.
    """
    options = options or RemoteOptions()
    url = options.url or project.remote_cache
    if url is None:
        return None
    from trtbuild.remote.store import open_store

    trusted = None
    if project.remote_cache_trusted_keys is not None:
        trusted = [_key_file(project, path, "remote_cache_trusted_keys") for path in project.remote_cache_trusted_keys]
    signing = os.environ.get(SIGNING_KEY_VARIABLE)
    private = _key_file(project, Path(signing), SIGNING_KEY_VARIABLE) if signing else None
    store = open_store(url, trusted_keys=trusted, signing_key=private)
    return Remote(store, push=options.push, required=options.required, warn=warn)


#: The Ed25519 private key (PEM file) a builder signs the entries it pushes with; never in the project.
SIGNING_KEY_VARIABLE = "TRTBUILD_SIGNING_KEY"


def _key_file(project: Project, path: Path, field: str) -> bytes:
    """The bytes of a key file named by ``field``.

    Raises:
        ManifestError: it cannot be read (names the manifest, the field and the file).
    """
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{project.manifest.name}: {field}: cannot read {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def run_lock(project: Project, wait_seconds: float) -> Iterator[None]:
    """Hold the project's run lock (``.trtbuild/run.lock``, filelock) for a run that writes state.

    Bad input writes nothing: when the body raises an error of exit code 2 (``ManifestError``,
    ``StateError``), what this run created in ``.trtbuild/`` (the folder itself on a first run, the lock
    file, a first stat cache) is removed while the lock is still held, then the lock is released. A run
    waiting for the same lock file sees it unlinked and takes the lock anew (filelock checks the inode's
    link count after each ``flock``).

    Raises:
        BusyError: another run holds it for longer than ``wait_seconds``.
        WriteError: ``.trtbuild/`` or the lock file cannot be created or opened (a read-only project, a
            full disk): one line naming the file and the errno.
    """
    state = project.state_dir
    lock_file = state / "run.lock"
    folder_existed, file_existed = state.is_dir(), lock_file.exists()
    lock = filelock.FileLock(str(lock_file))
    deadline = time.monotonic() + wait_seconds
    for attempt in range(5):
        try:
            state.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
            break
        except filelock.Timeout:
            raise BusyError(
                f"another trtbuild run is building {project.manifest.name} (it holds {lock.lock_file}); "
                "wait for it or pass --wait SECONDS"
            ) from None
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and attempt < 4:
                continue  # the folder was removed by a run that refused its input: make it again
            raise WriteError(
                os_error_line(exc, lock_file if state.is_dir() else state, "cannot take the run lock")
            ) from None
    else:  # pragma: no cover - the loop always breaks or raises
        raise AssertionError("unreachable")
    before = set(os.listdir(state))
    try:
        yield
    except TrtbuildError as exc:
        if exc.exit_code == ManifestError.exit_code:
            _remove_created(state, before, folder_existed, file_existed)
        raise
    finally:
        lock.release()


def _remove_created(state: Path, before: set[str], folder_existed: bool, file_existed: bool) -> None:
    """Remove what a run that refused its input created in ``state``: the entries that were not there
    once the lock was held (``before``: what a run that held the lock while this one waited wrote stays),
    the lock file if it was not there when this run started, and the folder if it made it and it is empty
    now. Called with the run lock held; unlinking the held lock file is safe (see ``run_lock``)."""
    for name in set(os.listdir(state)) - before:
        if (state / name).is_dir() and not (state / name).is_symlink():
            shutil.rmtree(state / name, ignore_errors=True)
        else:
            (state / name).unlink(missing_ok=True)
    if not file_existed:
        (state / "run.lock").unlink(missing_ok=True)
        if not folder_existed:
            with contextlib.suppress(OSError):
                state.rmdir()


def _check_names(project: Project, names: list[str]) -> None:
    unknown = [name for name in names if name not in project.models]
    if unknown:
        raise ManifestError(
            [
                f"{project.manifest.name}: no model named {name!r}{did_you_mean(name, project.models)} "
                f"(models: {', '.join(project.models)})"
                for name in unknown
            ]
        )


def plan(
    project: Project, names: list[str] | None = None, remote: RemoteOptions | None = None
) -> dict[str, ModelResult]:
    """What is stale and why, per model, without building anything, in the words the run will use (a step
    whose input an earlier stale step will produce says what the run will say of it then: ``never built``,
    or nothing when it was built before). Each step is assessed once (``Context.assessments``), and each
    model's steps are sorted in its own subgraph: O(N) for N models.

    With a remote cache (``remote``, else the manifest's ``remote_cache``), each stale step whose key can be
    computed now says whether the run would pull it (``pull from STORE``) or build it (``build: not in
    STORE``); a step whose input is still to be made cannot know yet.

    Raises:
        ManifestError: an unknown model name, or an unreadable ONNX.
    """
    names = names or list(project.models)
    _check_names(project, names)
    with contextlib.ExitStack() as stack:
        try:
            ctx = stack.enter_context(device_context(project))
        except DeviceError as exc:
            return _unreachable(project, names, str(exc))
        return _plan(project, names, ctx, remote)


def _plan(project: Project, names: list[str], ctx: Context, remote: RemoteOptions | None) -> dict[str, ModelResult]:
    graph = select(build_graph(project, ctx.env), names)
    _preflight(graph, ctx)
    cache = open_remote(project, remote, lambda message: None)
    results = {}
    stale: set[str] = set()
    for name in names:
        reasons: list[Reason] = []
        for node_id in steps_of(graph, name):  # the same steps, in the same order, that `trtbuild all` would run
            step = step_of(graph, node_id)
            own = assess(step, ctx).reasons
            if own and own[0].kind == INPUT_MISSING and stale & set(graph.predecessors(node_id)):
                own = never(step, ctx)
            if own:
                stale.add(node_id)
                if cache is not None:
                    own = own + _would_pull(cache, assess(step, ctx).components, step)
                if step.on_device and ctx.device is not None:
                    own = own + [Reason(why.DEVICE, step.kind, ctx.device.host, new=f"on {ctx.device.describe()}")]
            reasons += own
        target = project.models[name]
        results[name] = ModelResult(
            STALE if reasons else FRESH, reasons, project.relative(target.engine), notes=gate_notes(target)
        )
    ctx.cache.save()
    return results


def gate_notes(target: ModelTarget) -> list[str]:
    """``["int8, not gated (gate: skip)"]`` for a reduced-precision model built unjudged, else ``[]``."""
    if target.spec.gate == "skip" and target.spec.precision != "fp32":
        return [f"{target.spec.precision}, not gated (gate: skip)"]
    return []


def _would_pull(cache: Remote, components: dict[str, Any] | None, step: Step) -> list[Reason]:
    """``pull from STORE`` or ``build: not in STORE`` for a stale step with ``components``; nothing when its
    key cannot be computed yet, or the store does not answer (``plan`` then says so once per step)."""
    if components is None:
        return []
    found = None if cache.broken else cache.lookup(lookup_key(components, step.tool)[0])
    if cache.broken:
        return [Reason(why.REMOTE, step.kind, cache.store.display, new=f"build: {cache.broken}")]
    words = f"pull from {cache.store.display}" if found is not None else f"build: not in {cache.store.display}"
    return [Reason(why.REMOTE, step.kind, cache.store.display, new=words)]


def _preflight(graph: nx.DiGraph, ctx: Context) -> None:
    """Check what the manifest says against the files, before any step runs (``plan`` and builds alike):
    every local source exists and matches its sha256 pin, every pinned plugin matches its pin (pins are
    checked on the bytes, never from the stat cache), and the declared inputs of every model whose ONNX is
    a source match that ONNX — whatever the precision and the steps between ONNX and engine.

    Raises:
        ManifestError: with every problem found (exit code 2, nothing built).
    """
    problems: list[str] = []
    for node_id in graph.nodes:
        step = step_of(graph, node_id)
        target = ctx.project.models[step.model]
        if step.kind == "source":
            where, pin = ctx.project.relative(step.output), target.spec.pinned_sha256()
            if not step.output.is_file():
                problems.append(f"{target.where('source')}: {where} does not exist")
            elif pin is not None and (actual := sha256_file(step.output)) != pin:
                problems.append(f"{target.where('source')}: {where} has sha256 {actual}, not the pinned {pin}")
            continue
        if step.kind != "engine":
            continue
        missing = False
        for index, (plugin, pin) in enumerate(zip(target.plugins, target.plugin_sha256)):
            if pin is not None and not plugin.is_file():
                problems.append(f"{target.where('plugins', index)}: {plugin} does not exist")
                missing = True
            elif pin is not None and (actual := sha256_file(plugin)) != pin:
                problems.append(f"{target.where('plugins', index)}: {plugin} has sha256 {actual}, not the pinned {pin}")
        if target.recipe is None and target.onnx.is_file() and not missing:
            try:
                if assess(step, ctx).reasons:
                    verify_inputs(target)
            except ManifestError as exc:
                problems += exc.messages
            except FileNotFoundError as exc:
                problems.append(f"{target.where('plugins')}: {exc.filename} does not exist")
    problems += _sample_problems(graph, ctx.project)
    if problems:
        raise ManifestError(problems)


def _sample_problems(graph: nx.DiGraph, project: Project) -> list[str]:
    """Calibration and validation samples that match no image or array file, or name a package that is not installed,
    as ``file:line: models.NAME.calibration: ...`` lines (the same verdict for ``plan`` and builds)."""
    from trtbuild.precision import samples

    problems = []
    root = project.root
    for target in (project.models[model] for model in graph.graph["engine_ids"]):
        for field_name in ("calibration", "validation"):
            sample = getattr(target.spec, field_name)
            if sample is None:
                continue
            try:
                samples.files(sample, root)
            except ManifestError as exc:
                problems += [f"{target.where(field_name)}: {message}" for message in exc.messages]
    return problems


def build(
    project: Project,
    names: list[str] | None,
    jobs: int,
    reporter: Reporter,
    wait_seconds: float = 0,
    stamp_device: str | None | Literal[False] = False,
    remote: RemoteOptions | None = None,
) -> dict[str, ModelResult]:
    """Build the stale engines of ``names`` (all models when ``None``) and what they depend on.

    ``remote``: the remote cache to pull stale steps from and push built ones to (``steps.remote``);
    default: the manifest's ``remote_cache``, if any.

    ``stamp_device``: for ``trtbuild all``, the device as requested (``None``: detected); when every
    model ends fresh or built, a fresh stamp is written for the no-op fast path (``trtbuild.fastpath``).
    ``False`` (the default; a build of named models): no stamp. A project built on a builder device gets
    no stamp: only the device can say whether it changed.

    A builder device (``remote:``) that does not answer fails every model of ``names`` with one line
    naming it.

    Raises:
        ManifestError: unknown names, a cycle, or inputs that do not match an ONNX (nothing built).
        BusyError: another run holds the project.
        StateError: the lock file is corrupt.
    """
    return build_devices([(project, reporter)], names, jobs, wait_seconds, stamp_device, remote)[0]


def build_devices(
    runs: list[tuple[Project, Reporter]],
    names: list[str] | None,
    jobs: int,
    wait_seconds: float = 0,
    stamp_device: str | None | Literal[False] = False,
    remote: RemoteOptions | None = None,
) -> list[dict[str, ModelResult]]:
    """``build`` for several devices of one project (``trtbuild all --device a --device b``), each with its
    own reporter; returns their results in the same order.

    The project's run lock is taken once; up to ``jobs`` devices build at once, each running up to ``jobs``
    steps of its own at once, and a builder device one engine build at a time (``Step.on_device``). A
    device that fails (does not answer) fails its own models only.

    Raises:
        ManifestError, BusyError, StateError: as ``build``.
    """
    first = runs[0][0]
    for project, _ in runs:
        _check_names(project, names or list(project.models))
    with run_lock(first, wait_seconds):
        remove_stamps(first)
        _remove_leftovers(first)
        cache = StatCache(first.state_dir / "statcache.json")
        for warning in cache.warnings:
            runs[0][1].warn(warning)
        try:
            if len(runs) == 1:
                project, reporter = runs[0]
                return [_build_device(project, names, jobs, reporter, stamp_device, remote, cache)]
            with ThreadPoolExecutor(max_workers=min(jobs, len(runs))) as pool:
                futures = [
                    pool.submit(_build_device, project, names, jobs, reporter, project.device, remote, cache)
                    for project, reporter in runs
                ]
                return [future.result() for future in futures]
        finally:
            cache.save()


def _build_device(
    project: Project,
    names: list[str] | None,
    jobs: int,
    reporter: Reporter,
    stamp_device: str | None | Literal[False],
    remote: RemoteOptions | None,
    cache: StatCache,
) -> dict[str, ModelResult]:
    """One device's part of ``build_devices``, with the run lock held."""
    names = names or list(project.models)
    remove_partials(project.lock_path.parent, project.lock_path.name)
    with contextlib.ExitStack() as stack:
        try:
            ctx = stack.enter_context(device_context(project, cache=cache))
        except DeviceError as exc:
            reporter.warn(str(exc))
            return _unreachable(project, names, str(exc))
        if ctx.lock.migrated:  # a schema-1 lock: written as schema 2 now, its keys unchanged
            ctx.lock.save()
        if ctx.device is None and project.device and project.device != device_of(ctx.env):
            reporter.warn(
                f"building devices/{project.device}.yaml on this machine, detected as {device_of(ctx.env)} "
                f"({ctx.env['builder']} {ctx.env['builder_version']}); its engines are for this builder"
            )
        graph = select(build_graph(project, ctx.env), names)
        ctx.remote = open_remote(project, remote, reporter.warn)
        _preflight(graph, ctx)
        outcomes = run_graph(graph, ctx, jobs, reporter)
        results = {name: _model_result(graph, outcomes, project, name) for name in names}
        done = (BUILT, FRESH, PULLED)
        if stamp_device is not False and ctx.device is None and all(r.status in done for r in results.values()):
            _stamp_if_fresh(graph, ctx, stamp_device or None)
        return results


def _stamp_if_fresh(graph: nx.DiGraph, ctx: Context, device: str | None) -> None:
    """Write the no-op stamp if every node of ``graph`` now assesses fresh. The assessment is what
    collects the stamp's file list: every file a key depends on passes through the stat cache
    (``StatCache.consulted``), discovered dependencies and external data included."""
    if not any(assess(step_of(graph, node_id), ctx).reasons for node_id in graph.nodes):
        write_stamp(ctx.project, device, ctx.cache.consulted)


def _remove_leftovers(project: Project) -> None:
    """Delete what a killed run may have left: request/result files and partial state files (each device's
    partial lock: ``_build_device``).

    Partial engines and exports are removed when their target is next built. Nothing here was ever
    trusted: partial files never carry a target's name.
    """
    shutil.rmtree(project.state_dir / "tmp", ignore_errors=True)
    for state_file in ("statcache.json",):
        remove_partials(project.state_dir, state_file)


def _model_result(graph: nx.DiGraph, outcomes: dict[str, Outcome], project: Project, name: str) -> ModelResult:
    """The model's result from its steps' outcomes: the engine's, with the reasons of every upstream step
    that did work; an upstream failure or interruption is the model's. ``steps`` are the steps that did
    not end fresh, with their wall times, and ``seconds`` their sum; ``size`` is the engine's bytes when
    it is built or fresh; ``accuracy`` the gate's figures when the model is gated and has a report."""
    engine_id = engine_node_id(graph, name)
    target = project.models[name]
    engine = project.relative(target.engine)
    order = steps_of(graph, name)
    steps = {node_id: step_of(graph, node_id) for node_id in order}
    runs = [
        StepRun(steps[node_id].kind, outcomes[node_id].status, outcomes[node_id].seconds)
        for node_id in order
        if outcomes[node_id].status != FRESH
    ]
    seconds = sum(run.seconds for run in runs)
    accuracy = None
    if any(step.kind == "accuracy" for step in steps.values()) and target.report.is_file():
        with contextlib.suppress(OSError, ValueError):
            accuracy = accuracy_figures(json.loads(target.report.read_text()), project.relative(target.report))
    for node_id in order[:-1]:
        if outcomes[node_id].status in (FAILED, INTERRUPTED):
            failed = outcomes[node_id]
            return ModelResult(
                failed.status,
                failed.reasons,
                engine,
                seconds,
                failed.log_tail,
                steps=runs,
                accuracy=accuracy,
                log=_log_of(project, steps[node_id]),
                notes=gate_notes(target),
            )
    outcome = outcomes[engine_id]
    upstream = [
        reason
        for node_id in order[:-1]
        if outcomes[node_id].status in (BUILT, PULLED)
        for reason in outcomes[node_id].reasons
    ]
    reasons = outcome.reasons + upstream if outcome.status == FAILED else upstream + outcome.reasons
    size = (
        target.engine.stat().st_size if outcome.status in (BUILT, FRESH, PULLED) and target.engine.is_file() else None
    )
    return ModelResult(
        outcome.status,
        reasons,
        engine,
        seconds,
        outcome.log_tail,
        size=size,
        steps=runs,
        accuracy=accuracy,
        log=_log_of(project, steps[engine_id]) if outcome.status == FAILED else "",
        notes=gate_notes(target),
    )


def _log_of(project: Project, step: Step) -> str:
    """The log file a step writes (``.trtbuild/logs/<model>[.<step>].log``), relative to the project."""
    return project.relative(project.log_dir / f"{step.model}{step.log}.log")


def push(project: Project, names: list[str] | None, remote: RemoteOptions) -> dict[str, list[str]]:
    """Publish the keyed steps of ``names`` (all models when ``None``) that are fresh here to the remote cache.

    Returns:
        ``{"pushed": [step id...], "present": [...], "stale": [...]}``: pushed now, already in the cache
        under the same key, not fresh here (never built, or changed since: build first).

    Raises:
        ManifestError: unknown names; no remote cache given (``--remote-cache`` or ``remote_cache``).
        CacheError: the cache failed.
        DeviceError: the project's builder device (``remote:``) did not answer: only it knows its facts.
    """
    names = names or list(project.models)
    _check_names(project, names)
    cache = open_remote(project, remote, lambda message: None)
    if cache is None:
        raise ManifestError(
            f"{project.manifest.name}: no remote cache to push to: pass --remote-cache URL or set remote_cache"
        )
    cache.required = True
    with device_context(project) as ctx:  # a builder device's engines are keyed with its facts
        return _push(project, names, ctx, cache)


def _push(project: Project, names: list[str], ctx: Context, cache: Remote) -> dict[str, list[str]]:
    """``push`` with the context and the cache open."""
    graph = select(build_graph(project, ctx.env), names)
    done: dict[str, list[str]] = {"pushed": [], "present": [], "stale": []}
    for node_id in nx.lexicographical_topological_sort(graph):
        step = step_of(graph, node_id)
        if step.check is not None:  # sources are not cached: they are pinned
            continue
        assessment = assess(step, ctx)
        entry = ctx.lock.step(step.id)
        if not assessment.fresh or entry is None:
            done["stale"].append(step.id)
        elif cache.lookup(remote_key(entry["components"])) is not None:
            done["present"].append(step.id)
        else:
            ctx.remote = cache
            push_step(step, ctx, entry)
            done["pushed"].append(step.id)
    ctx.cache.save()
    return done


def clean(project: Project, names: list[str] | None, wait_seconds: float = 0) -> list[str]:
    """Delete the engines (and leftover partial files) of ``names`` and forget every lock entry of those
    models (export, conversions, report, engine).

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
            lock.remove_model(name)
        lock.save()
    return removed
