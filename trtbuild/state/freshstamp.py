"""Writing the fresh stamp that lets the next no-op ``trtbuild all`` skip everything (``trtbuild.fastpath``).

Lists every file whose change could make any model stale; the fast path re-stats exactly these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from trtbuild.env import fingerprint
from trtbuild.fastpath import STAMP_SCHEMA, environment, now_ns, signature, stamp_path
from trtbuild.manifest.devices import DEVICE_DIR
from trtbuild.manifest.loader import ModelTarget, Project
from trtbuild.state.atomic import write_atomic


def _code_files() -> list[Path]:
    """trtbuild's own modules and built-in recipes, and their folders (a new module changes a folder)."""
    import trtbuild.recipes

    found: list[Path] = []
    for package in (Path(trtbuild.__file__).parent, Path(trtbuild.recipes.__file__).parent):
        for folder, _, names in os.walk(package):
            found.append(Path(folder))
            found += [Path(folder) / name for name in names if name.endswith(".py")]
    return found


def _model_files(target: ModelTarget, root: Path) -> list[Path]:
    from trtbuild.precision.images import sample_plan

    spec = target.spec
    files = [target.source, target.onnx, target.fp16_onnx, target.int8_onnx, target.report, target.engine, *target.plugins]
    if target.recipe is not None:
        files.append(target.recipe.file)
    for sample in (spec.calibration, spec.validation):
        if sample is not None:
            files += [path for path, _ in sample_plan(sample, root)]
    return files


def write_stamp(project: Project, requested_device: str | None) -> None:
    """Record the stat of everything the models' freshness depends on, now that all of them are fresh."""
    paths: list[Path] = [project.manifest, project.lock_path, project.root / DEVICE_DIR, project.root / "recipes"]
    if project.device:
        paths.append(project.root / DEVICE_DIR / f"{project.device}.yaml")
    for target in project.models.values():
        paths += _model_files(target, project.root)
    paths += _code_files()
    probe = fingerprint._signature()
    files: dict[str, Any] = {str(path): signature(str(path)) for path in paths}
    files.update(probe["stats"])
    stamp = {
        "schema": STAMP_SCHEMA, "written_at": now_ns(), "environment": environment(),
        "files": files, "engines": {name: project.relative(target.engine) for name, target in project.models.items()},
    }
    target_file = stamp_path(project.manifest, requested_device)
    target_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target_file, json.dumps(stamp, separators=(",", ":")).encode())


def remove_stamps(project: Project) -> None:
    """Forget every fresh stamp of the project (before a run that may change anything)."""
    for stale in project.state_dir.glob(f"fresh.{project.manifest.name}.*.json"):
        stale.unlink(missing_ok=True)


