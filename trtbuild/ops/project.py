"""The one way an operation opens a project: the manifest for a device, the run's context (fingerprint,
stat cache, lock, builder device), the run lock, the remote cache and its key files.
Every ``ops`` module that builds, plans, pushes or audits opens its state through here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import filelock

from trtbuild import reasons as why
from trtbuild.env.fingerprint import fingerprint
from trtbuild.env.jetson import device_of
from trtbuild.errors import BusyError, ManifestError, TrtbuildError, WriteError, did_you_mean, os_error_line
from trtbuild.manifest.devices import known_devices
from trtbuild.manifest.loader import load_project
from trtbuild.manifest.target import Project
from trtbuild.results import FAILED, ModelResult, RunSummary
from trtbuild.state.lockfile import LockFile
from trtbuild.state.statcache import StatCache
from trtbuild.steps.context import Context
from trtbuild.steps.remote import Remote

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


def check_names(project: Project, names: list[str]) -> None:
    """Raises ``ManifestError`` naming every one of ``names`` that is not a model of ``project``."""
    unknown = [name for name in names if name not in project.models]
    if unknown:
        raise ManifestError(
            [
                f"{project.manifest.name}: no model named {name!r}{did_you_mean(name, project.models)} "
                f"(models: {', '.join(project.models)})"
                for name in unknown
            ]
        )


def open_context(
    project: Project, trust_stat_cache: bool = True, device: BuilderDevice | None = None, stats: StatCache | None = None
) -> Context:
    """The state a run needs: environment fingerprint, stat cache, lock.

    ``trust_stat_cache=False`` (audits) hashes every file again instead of trusting unchanged stats.
    ``device``: the builder device the engines are built on (``device_context``); the fingerprint is then
    the device's, probed over SSH. ``stats``: a stat cache shared with the other devices of the run.

    Raises:
        StateError: the lock file is corrupt.
        TrtbuildError: no TensorRT builder is installed.
        DeviceError: the builder device did not answer its probe.
    """
    return Context(
        project=project,
        env=device.probe() if device is not None else fingerprint(),
        stats=stats or StatCache(project.state_dir / "statcache.json", trust=trust_stat_cache),
        lock=LockFile(project.lock_path),
        device=device,
    )


@contextlib.contextmanager
def device_context(
    project: Project, trust_stat_cache: bool = True, stats: StatCache | None = None
) -> Iterator[Context]:
    """``open_context`` with the project's builder device (a device overlay's ``remote:``, ``env.device``)
    connected for as long as the context is used: what every operation that judges or builds a device's
    engines opens. Without ``remote:``, ``open_context`` for this machine.

    Raises:
        DeviceError: the builder device did not answer (raised on entering, never from the body).
        StateError, TrtbuildError: as ``open_context``.
    """
    spec = project.remote_builder
    if spec is None:
        yield open_context(project, trust_stat_cache, stats=stats)
        return
    from trtbuild.env.device import open_device

    with open_device(project.device or spec["host"], spec) as device:
        yield open_context(project, trust_stat_cache, device=device, stats=stats)


def unreachable(project: Project, names: list[str], problem: str) -> RunSummary:
    """The summary of a run whose builder device did not answer: every model of ``names`` failed with the
    one line saying why, and no fingerprint (the device gave none)."""
    failed = {
        name: ModelResult(FAILED, [why.error(problem)], project.relative(project.models[name].engine)) for name in names
    }
    return RunSummary(failed, project.device or device_of({}), {})


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


#: The Ed25519 private key (PEM file) a builder signs the entries it pushes with; never in the project.
SIGNING_KEY_VARIABLE = "TRTBUILD_SIGNING_KEY"


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
    folder_existed, file_existed = state.is_dir(), (state / "run.lock").exists()
    lock = _acquire(project, time.monotonic() + wait_seconds)
    before = set(os.listdir(state))
    try:
        yield
    except TrtbuildError as exc:
        if exc.exit_code == ManifestError.exit_code:
            _remove_created(state, before, folder_existed, file_existed)
        raise
    finally:
        lock.release()


def _acquire(project: Project, deadline: float) -> filelock.BaseFileLock:
    """The run lock, held; the folder made again if a run that refused its input removed it meanwhile."""
    state = project.state_dir
    lock_file = state / "run.lock"
    lock = filelock.FileLock(str(lock_file))
    for attempt in range(5):
        try:
            state.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
            return lock
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
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises


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
