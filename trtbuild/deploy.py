"""The application side: the path of an engine trtbuild built, if it is fresh for this machine.

::

    import trtbuild

    path = trtbuild.engine("yolo-face")   # pathlib.Path, absolute; or StaleEngineError naming why

An application calls ``engine`` before it hands the file to TensorRT, DeepStream, Triton or trtexec
(docs/deploy.md), so a reflashed Jetson or an upgraded TensorRT fails at once with the reason
(``l4t 36.3.0 -> 36.4.3``) instead of TensorRT's "engine plan file is not compatible with this version
of TensorRT", or DeepStream quietly rebuilding the engine on the device.

*Fresh for this machine* means, for the lock of the project (``builds.lock``, or
``locks/<device>.lock`` when the project has ``devices/``):

- the lock has an entry for the model (else ``never built``);
- the engine file it records exists (else ``engine missing``) and has the recorded size and sha256
  (else ``engine modified``);
- the environment fingerprint recorded when it was built (``components.env``: builder and its version,
  CUDA, L4T, JetPack, device, GPU, ...) equals this machine's now (``env.fingerprint``); else one reason
  per field, rendered as ``trtbuild plan`` renders them (``trtbuild.reasons``).

It does not re-read ``builds.yaml``'s settings or hash the ONNX: an engine whose manifest entry was
edited after the build is still the one recorded for this machine. ``trtbuild plan --check`` (exit 1 if
anything is stale) answers "does every engine match the manifest", in CI or before shipping.

Cost: the standard library and trtbuild's environment probe only (no TensorRT, pydantic, networkx,
click, onnx, YAML on the fresh path). Measured on a loaded 2-core x86 machine: ~40 ms of imports once per
process (~25 ms of it ``importlib.metadata``, ``subprocess`` and ``dataclasses``, which the probe's
modules import), ~1 ms per call for the probe and the lock, plus the engine's sha256 (~0.8 ms per MB).
Shell scripts can use ``python -m trtbuild.deploy NAME``, which prints the path or the reason
(exit codes as the CLI's: 1 stale, 2 bad input).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from trtbuild import reasons as why
from trtbuild.env.fingerprint import fingerprint
from trtbuild.env.jetson import device_of
from trtbuild.errors import ManifestError, StateError, TrtbuildError
from trtbuild.locate import MANIFEST_NAME, find_manifest
from trtbuild.manifest.devices import LOCK_DIR, known_devices, overlay_path
from trtbuild.reasons import Reason, diff, texts

NEVER_BUILT = Reason(why.NEVER, "engine").text()
ENGINE_MISSING = Reason(why.OUTPUT_MISSING, "engine", "engine").text()
ENGINE_MODIFIED = Reason(why.OUTPUT_MODIFIED, "engine", "engine").text()

_CHUNK = 1 << 20  # bytes read at a time while hashing


class StaleEngineError(TrtbuildError):
    """The model's engine is not fresh for this machine; rebuild it here (``trtbuild build NAME``).

    Attributes:
        model: the model name asked for.
        reasons: why, one string per reason: ``never built``, ``engine missing``, ``engine modified``
            and/or environment differences as ``trtbuild plan`` shows them, e.g.
            ``["jetpack 6.0 -> 6.2", "l4t 36.3.0 -> 36.4.3"]`` or ``["tensorrt 10.3.0 -> 10.7.0"]``.
        engine: the engine path the lock records (absolute), ``None`` when never built.
        lock: the lock file consulted (absolute; it may not exist).
        device: the device whose lock was consulted (``None``: a project without ``devices/``).

    Exit code 1, as for ``trtbuild plan --check`` finding stale engines.
    """

    exit_code = 1

    def __init__(self, model: str, reasons: list[str], engine: Path | None, lock: Path, device: str | None) -> None:
        self.model, self.reasons, self.engine, self.lock, self.device = model, list(reasons), engine, lock, device
        where = f"{engine}" if engine is not None else f"no entry in {lock}"
        rebuild = f"trtbuild build {model}" + (f" --device {device}" if device else "")
        super().__init__(
            f"{model}: engine not fresh for this machine: {'; '.join(self.reasons)} ({where}); "
            f"rebuild it here with `{rebuild}`"
        )


def engine(name: str, manifest: str | os.PathLike[str] | None = None, device: str | None = None) -> Path:
    """The absolute path of model ``name``'s engine, when it is fresh for this machine (module docstring).

    Args:
        name: the model's name in ``builds.yaml``.
        manifest: the manifest file, or a folder to search from; default: ``builds.yaml`` in the current
            folder or the nearest parent (as the CLI finds it).
        device: the device whose lock to read (``devices/<device>.yaml`` must exist); default: detected as
            the CLI detects it (``/proc/device-tree/model``, else ``x86-rtx`` / ``x86-tensorrt``) when the
            project has ``devices/``, else none (``builds.lock``).

    Returns:
        the engine file, absolute (the lock's path resolved against the manifest's folder).

    Raises:
        StaleEngineError: never built, engine missing or modified, or built in another environment;
            ``.reasons`` says which.
        ManifestError: no manifest found, an unknown or undetectable device, or no model named ``name``
            in the manifest (the message lists the models); exit code 2.
        StateError: the lock file is not a readable trtbuild lock.
        TrtbuildError: no TensorRT (or TensorRT-RTX) is installed, so there is no environment to match.
    """
    manifest_path = _find(manifest)
    root = manifest_path.parent
    env = fingerprint()
    device = _device(root, device, env)
    lock = root / LOCK_DIR / f"{device}.lock" if device else manifest_path.with_suffix(".lock")
    entry = _entry(lock, name)
    if entry is None:
        declared = _declared_models(manifest_path, device)
        if name not in declared:
            listing = ", ".join(declared) or "none"
            raise ManifestError(f"{manifest_path}: no model named {name!r} (models: {listing})")
        raise StaleEngineError(name, [NEVER_BUILT], None, lock, device)
    recorded = entry["outputs"][0]
    path = root / recorded["path"]
    reasons = _file_reasons(path, recorded)
    if entry["components"]["env"] != env:
        reasons += texts(diff({"env": entry["components"]["env"]}, {"env": env}, "engine"))
    if reasons:
        raise StaleEngineError(name, reasons, path, lock, device)
    return path


def _find(manifest: str | os.PathLike[str] | None) -> Path:
    """The manifest, absolute: the file given, ``builds.yaml`` searched upward from a folder given, or
    from the current folder.

    Raises:
        ManifestError: none found.
    """
    start = Path.cwd() if manifest is None else Path(manifest)
    if manifest is not None and not start.is_dir():
        if not start.is_file():
            raise ManifestError(f"{start}: no such manifest")
        return start.absolute()
    found = find_manifest(start)
    if found is None:
        raise ManifestError(f"no {MANIFEST_NAME} in {start.absolute()} or any parent folder")
    return found


def _device(root: Path, device: str | None, env: dict[str, Any]) -> str | None:
    """The device whose lock applies, as ``ops.project.load`` decides it.

    Raises:
        ManifestError: ``device`` has no ``devices/<device>.yaml``, or the project has ``devices/`` and
            this machine matches none of them.
    """
    if device is not None:
        overlay_path(root, device)  # raises for an unknown device, listing the known ones
        return device
    known = known_devices(root)
    if not known:
        return None
    detected = device_of(env)
    if detected not in known:
        seen = env.get("device_model") or f"no device tree; builder {env['builder']}"
        raise ManifestError(f"cannot match this machine ({seen}) to a device: pass device=, one of: {', '.join(known)}")
    return detected


def _entry(lock: Path, name: str) -> dict[str, Any] | None:
    """Model ``name``'s entry in ``lock`` (``None``: no lock or no entry). Read only: this module never
    writes (``state.lockfile`` is the writer).

    Raises:
        StateError: the lock is not JSON, or the entry lacks the fields read here.
    """
    try:
        raw = json.loads(lock.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"{lock}: unreadable lock file ({exc}); run `trtbuild all` to rebuild it") from None
    schema = raw.get("schema") if isinstance(raw, dict) else None
    # Compared, not looked up: a schema of any JSON type (a list is unhashable) is refused below, never a TypeError.
    section_name = "models" if schema == 1 else "steps" if schema == 2 else None
    section = raw.get(section_name) if isinstance(raw, dict) and section_name else None
    if not isinstance(section, dict):
        raise StateError(
            f"{lock}: not a trtbuild lock (schema 2 with a steps mapping, or 1 with models); "
            "run `trtbuild all` to rebuild it"
        )
    if schema == 1:  # not migrated yet (``state.lockfile.migrate_v1``): the engine is models.NAME.engine
        where, entry = f"models.{name}", section.get(name)
        entry = (
            None if entry is None else {**entry, "outputs": [entry.get("engine")]} if isinstance(entry, dict) else entry
        )
    else:
        where, entry = (
            name,
            next(
                (
                    item
                    for item in section.values()
                    if isinstance(item, dict) and item.get("kind") == "engine" and item.get("model") == name
                ),
                None,
            ),
        )
    if entry is None:
        return None
    try:
        recorded = entry["outputs"][0]
        ok = all(isinstance(recorded[field], str) for field in ("path", "sha256")) and isinstance(
            entry["components"]["env"], dict
        )
    except (KeyError, TypeError, IndexError):
        ok = False
    if not ok:
        raise StateError(
            f"{lock}: the engine entry of {where}: missing its output path and sha256 or components.env; "
            "run `trtbuild all` to rebuild it"
        )
    return entry


def _file_reasons(path: Path, recorded: dict[str, Any]) -> list[str]:
    """``[]`` when ``path`` has the recorded size and sha256, else ``engine missing`` / ``engine modified``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [ENGINE_MISSING]
    if recorded.get("size") not in (None, size) or sha256_of(path) != recorded["sha256"]:
        return [ENGINE_MODIFIED]
    return []


def sha256_of(path: Path) -> str:
    """The sha256 of the file at ``path``, hex; read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _declared_models(manifest: Path, device: str | None) -> list[str]:
    """The model names of ``manifest`` and of its device overlay, in order. Only on the failure path
    (no lock entry): it reads YAML, which the fresh path never needs.

    Raises:
        ManifestError: a manifest or overlay that is not valid YAML.
    """
    from trtbuild.manifest.yamlsource import load_located

    names: list[str] = []
    files = [manifest] + ([overlay_path(manifest.parent, device)] if device else [])
    for file in files:
        data = load_located(file).data
        models = data.get("models") if isinstance(data, dict) else None
        if isinstance(models, dict):
            names += [str(key) for key in models if str(key) not in names]
    return names


def main(argv: list[str] | None = None) -> int:
    """``python -m trtbuild.deploy NAME [-f MANIFEST] [-d DEVICE]``: print the engine's path (exit 0), or
    ``trtbuild: <reason>`` on stderr with the error's exit code (1 stale, 2 bad input)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trtbuild.deploy", description=main.__doc__)
    parser.add_argument("name")
    parser.add_argument("-f", "--file", default=None, help=f"the manifest (default: {MANIFEST_NAME} here or above)")
    parser.add_argument("-d", "--device", default=None, help="the device whose lock to read (default: detected)")
    args = parser.parse_args(argv)
    try:
        print(engine(args.name, args.file, args.device))
    except TrtbuildError as exc:
        print(f"trtbuild: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
