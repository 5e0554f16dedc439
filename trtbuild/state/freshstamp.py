"""Writing the fresh stamp that lets the next no-op ``trtbuild all`` skip everything (``trtbuild.fastpath``);
its format is ``trtbuild.stampfile``, which the fast path reads with.

Lists every file whose change could make any model stale; the fast path re-stats exactly these. The list
is not written by hand: it is what the run's staleness assessments consulted (``StatCache.consulted``:
sources, exports, conversions, reports, engines, plugins, recipes, discovered dependencies, external
data, calibration and validation images, trtbuild's step code), plus the manifest, the overlay, the lock,
the folders whose new files would change a verdict, trtbuild's own code and what the environment probe
reads. Paths inside the project are stored relative to its root, so a copied project checks its own files.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trtbuild.clock import now_ns
from trtbuild.env.fingerprint import probe_inputs
from trtbuild.errors import os_error_line
from trtbuild.files import write_atomic
from trtbuild.manifest.devices import DEVICE_DIR
from trtbuild.manifest.target import Project
from trtbuild.stampfile import STAMP_SCHEMA, environment, stamp_name, stamp_path
from trtbuild.statsig import signature


def _code_files() -> list[Path]:
    """trtbuild's own modules and built-in recipes, and their folders (a new module changes a folder)."""
    import trtbuild.recipes

    found: list[Path] = []
    for package in (Path(trtbuild.__file__).parent, Path(trtbuild.recipes.__file__).parent):
        for folder, _, names in os.walk(package):
            found.append(Path(folder))
            found += [Path(folder) / name for name in names if name.endswith(".py")]
    return found


def write_stamp(project: Project, requested_device: str | None, consulted: Iterable[Path]) -> None:
    """Record the stat of everything the models' freshness depends on, now that all of them are fresh.

    The stamp is only a shortcut: when it cannot be written (a full disk, a read-only ``.trtbuild/``) one
    ``warning:`` line on stderr names the file and the errno, nothing half-written is left, and the next
    ``trtbuild all`` takes the full path. Nothing is raised for that.

    Args:
        consulted: the files the run's assessments hashed or looked up (``StatCache.consulted``).
    """
    paths: list[Path] = [project.manifest, project.lock_path, project.root / DEVICE_DIR, project.root / "recipes"]
    if project.device:
        paths.append(project.root / DEVICE_DIR / f"{project.device}.yaml")
    paths += sorted(consulted) + _code_files()
    files: dict[str, Any] = {stamp_name(path, project.root): signature(str(path)) for path in paths}
    files.update(probe_inputs()["stats"])
    stamp = {
        "schema": STAMP_SCHEMA,
        "written_at": now_ns(),
        "environment": environment(),
        "files": files,
        "engines": {name: project.relative(target.engine) for name, target in project.models.items()},
    }
    target_file = stamp_path(project.manifest, requested_device)
    try:
        write_atomic(target_file, json.dumps(stamp, separators=(",", ":")).encode())  # creates the folder, checked
    except OSError as exc:
        reason = "cannot write the fresh stamp (the next run takes the full path)"
        print(f"warning: {os_error_line(exc, target_file, reason)}", file=sys.stderr, flush=True)


def remove_stamps(project: Project) -> None:
    """Forget every fresh stamp of the project (before a run that may change anything)."""
    for stale in project.state_dir.glob(f"fresh.{project.manifest.name}.*.json"):
        stale.unlink(missing_ok=True)
