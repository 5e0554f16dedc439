"""The no-op fast path: ``trtbuild all`` when nothing changed, in a few stat calls.

After a run in which every model ended fresh or built, trtbuild writes a *fresh stamp*: the stat
(inode, size, mtime_ns) of every file any key depends on — the files the run's assessments consulted
(``state.freshstamp``), the manifest and overlay, the lock, trtbuild's own code, the files and
``sys.path`` folders the environment probe reads — plus the variables that steer trtbuild. Paths inside
the project are relative to the manifest's folder.
The next ``trtbuild all`` with the same manifest and device re-stats them; if every one is unchanged it
prints the same all-fresh summary and exits, importing nothing but the standard library and trtbuild's
standard-library-only modules (``stampfile``, the stamp's format, shared with its writer; ``files``,
``clock``, ``locate``, ``results``, ``env.jetson``). Any difference, an mtime too close to the stamp
(git's racily-clean rule), or an option the fast path does not know sends the command down the full
path, which decides precisely. So the fast path can only ever say "fresh" when the full path would.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from trtbuild.clock import STARTED  # the run's wall time, as the summaries report it, counts from here (both paths)
from trtbuild.locate import find_manifest
from trtbuild.stampfile import environment, is_int, read_stamp, stamp_path
from trtbuild.statsig import RACY_WINDOW_NS, signature


def _parse(argv: list[str]) -> tuple[Path, str | None, bool] | None:
    """(manifest, device, json) for ``all [-f F] [-d D] [--json] [-j N] [--wait S]``; ``None`` otherwise,
    also for several devices (``-d a -d b``): one device's stamp says nothing of the others."""
    if not argv or argv[0] != "all":
        return None
    manifest, device, json_mode = find_manifest(Path.cwd()), None, False
    rest = argv[1:]
    while rest:
        option = rest.pop(0)
        if option == "--json":
            json_mode = True
        elif option in ("-f", "--file", "-d", "--device", "-j", "--jobs", "--wait") and rest:
            value = rest.pop(0)
            if option in ("-f", "--file"):
                manifest = Path(value)
            elif option in ("-d", "--device"):
                if device is not None and value != device:
                    return None
                device = value
        else:
            return None
    if manifest is None:
        return None  # no manifest found: the full path says so
    return Path(os.path.abspath(manifest)), device, json_mode


def valid_stamp(manifest: Path, device: str | None) -> dict[str, Any] | None:
    """The stamp for ``manifest``/``device`` if it is well formed and every file it lists is unchanged,
    else ``None``."""
    stamp, _ = read_stamp(manifest, device)
    return stamp if stamp is not None and _unchanged(manifest, stamp) else None


def _unchanged(manifest: Path, stamp: dict[str, Any]) -> bool:
    """Whether every file of a well-formed ``stamp`` still has its recorded stat, outside the racy window."""
    if stamp["environment"] != environment():
        return False
    trusted_before = stamp["written_at"] - RACY_WINDOW_NS
    root = str(manifest.parent)
    for name, recorded in stamp["files"].items():
        if signature(os.path.join(root, name)) != recorded or (recorded is not None and recorded[2] > trusted_before):
            return False
    return True


def try_fast(argv: list[str]) -> int | None:
    """Answer ``trtbuild all`` from a valid stamp; returns the exit code, or ``None`` to take the full path.

    A damaged stamp (not JSON, wrong shape) or a lock or report the stamp vouches for that is not the
    shape trtbuild writes is never trusted: one ``warning:`` line on stderr for a damaged stamp, then the
    full path, which validates everything and rewrites the stamp.
    """
    parsed = _parse(argv)
    if parsed is None:
        return None
    manifest, device, json_mode = parsed
    stamp, problem = read_stamp(manifest, device)
    if problem is not None:
        print(
            f"warning: {stamp_path(manifest, device)}: damaged fresh stamp ({problem}); ignored, it will be rewritten",
            file=sys.stderr,
            flush=True,
        )
    if stamp is None or not _unchanged(manifest, stamp):
        return None
    summary = fresh_summary(manifest, device, stamp)
    if summary is None:
        return None
    _print(summary, json_mode)
    return 0


def _lock_of(manifest: Path, stamp: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the stamped lock file relative to the project, the device of a ``locks/<device>.lock``)."""
    for name in stamp["files"]:
        if name.startswith("locks/") and name.endswith(".lock") and name.count("/") == 1:
            return name, name[len("locks/") : -len(".lock")]
    single = manifest.with_suffix(".lock").name
    return (single, None) if single in stamp["files"] else (None, None)


def _lock_entries(root: Path, lock_name: str | None) -> dict[str, Any] | None:
    """The engine entries of the stamped lock (schema 2, ``state.lockfile``) by model, checked for what the
    summary reads (the ``model`` a string, the output's ``size`` an int, ``components.env`` a mapping);
    ``{}`` without a lock; ``None`` when it is unreadable or another shape."""
    if lock_name is None:
        return {}
    try:
        lock = json.loads((root / lock_name).read_bytes())
    except (OSError, ValueError):
        return None
    steps = lock.get("steps") if isinstance(lock, dict) and lock.get("schema") == 2 else None
    if not isinstance(steps, dict):
        return None
    engines: dict[str, Any] = {}
    for entry in steps.values():
        if not isinstance(entry, dict) or entry.get("kind") != "engine":
            continue
        model, outputs, components = entry.get("model"), entry.get("outputs"), entry.get("components")
        if not (
            isinstance(model, str)
            and isinstance(outputs, list)
            and outputs
            and isinstance(outputs[0], dict)
            and is_int(outputs[0].get("size"))
            and isinstance(components, dict)
            and isinstance(components.get("env", {}), dict)
        ):
            return None
        engines[model] = {"size": outputs[0]["size"], "env": components.get("env")}
    return engines


def fresh_summary(manifest: Path, device: str | None, stamp: dict[str, Any]) -> Any:
    """The all-fresh ``RunSummary`` from a valid stamp and the lock it vouches for (engine sizes, the
    environment fingerprint, the device) and the accuracy reports it lists: the full path's output.

    Returns:
        the summary, or ``None`` when the lock or a report is not the shape trtbuild writes (the full
        path then decides, and says what is wrong).
    """
    from trtbuild.results import FRESH, ModelResult, RunSummary, accuracy_figures

    root = manifest.parent
    lock_name, locked_device = _lock_of(manifest, stamp)
    entries = _lock_entries(root, lock_name)
    if entries is None:
        return None
    env: dict[str, Any] = next((entry["env"] for entry in entries.values() if entry["env"] is not None), {})
    results = {}
    for name, engine in stamp["engines"].items():
        result = ModelResult(FRESH, engine=engine, size=(entries.get(name) or {}).get("size"))
        report = next(
            (
                path
                for path in stamp["files"]
                if path.startswith("reports/")
                and path.endswith(f"/{name}.accuracy.json")
                or path == f"reports/{name}.accuracy.json"
            ),
            None,
        )
        if report is not None:
            try:
                result.accuracy = accuracy_figures(json.loads((root / report).read_bytes()), report)
            except FileNotFoundError:
                pass  # stamped as absent: the full path would find no report either
            except (OSError, ValueError):
                return None
        results[name] = result
    if locked_device is None and env:
        from trtbuild.env.jetson import device_of  # standard library only

        locked_device = device_of(env)
    return RunSummary(results, device or locked_device, env, time.monotonic() - STARTED)


def print_fresh(manifest: Path, device: str | None, stamp: dict[str, Any], json_mode: bool) -> bool:
    """Print the all-fresh summary of a valid stamp (``fresh_summary``); ``False`` (nothing printed) when
    the lock or a report it vouches for is not the shape trtbuild writes."""
    summary = fresh_summary(manifest, device, stamp)
    if summary is None:
        return False
    _print(summary, json_mode)
    return True


def _print(summary: Any, json_mode: bool) -> None:
    from trtbuild.results import print_summary, summary_json

    if json_mode:
        print(summary_json(summary), flush=True)
    else:
        print_summary(summary, sys.stdout)


def main() -> None:
    """Console-script entry point: the fast path when it applies, else the full CLI. A reader that
    closes our output pipe ends the fast path quietly, as it does the full path."""
    try:
        code = try_fast(sys.argv[1:])
    except BrokenPipeError:
        from trtbuild.results import exit_quietly_on_broken_pipe

        exit_quietly_on_broken_pipe()
    if code is not None:
        sys.exit(code)
    from trtbuild.cli.main import main as full

    full()
