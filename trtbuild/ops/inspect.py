"""``trtbuild inspect``: what an engine is — I/O tensors, profiles, size, layers, precision mix.

From TensorRT's engine inspector where the installed builder can deserialize the engine (in a child
process), otherwise from what the lock recorded when the engine was built: the builder's network summary
(I/O, layer count, precision mix), the optimization profiles and the file's size and hash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trtbuild.child_requests import InspectRequest
from trtbuild.errors import BuildError, ManifestError
from trtbuild.isolation import run_isolated
from trtbuild.manifest.target import Project
from trtbuild.state.lockfile import LockFile


def _from_inspector(project: Project, name: str, engine: Path, flavour: str) -> dict[str, Any]:
    report = project.state_dir / "tmp" / f"{name}.inspect.json"
    run_isolated(
        InspectRequest(engine=str(engine), flavour=flavour),
        report,
        project.log_dir / f"{name}.inspect.log",
        project.state_dir / "tmp",
    )
    try:
        return json.loads(report.read_text())
    finally:
        report.unlink(missing_ok=True)


def describe(project: Project, name: str) -> dict[str, Any]:
    """The description of model ``name``'s engine.

    Returns:
        ``{"model", "engine", "size", "sha256", "builder", "built_at", "source", "profiles", "io",
        "layers", "precisions", ...}``; ``source`` says where the structure came from.

    Raises:
        ManifestError: no such model, or it was never built (not in the lock).
    """
    if name not in project.models:
        raise ManifestError(f"{project.manifest.name}: no model named {name} (models: {', '.join(project.models)})")
    found = LockFile(project.lock_path).of_model(name, "engine")
    if found is None:
        raise ManifestError(f"{name}: not in {project.relative(project.lock_path)}; build it first")
    entry, facts = found[1], found[1].get("facts", {})
    recorded = entry["outputs"][0]
    engine = project.root / recorded["path"]
    settings = entry["components"]["settings"]
    description: dict[str, Any] = {
        "model": name,
        "engine": recorded["path"],
        "size": recorded["size"],
        "sha256": recorded["sha256"],
        "builder": facts.get("builder"),
        "built_at": entry.get("when"),
        "precision": settings["precision"],
        "workspace": settings["workspace"],
        "profiles": settings["profiles"],
    }
    try:
        inspected = _from_inspector(project, name, engine, entry["components"]["env"]["builder"])
        return {**description, "source": "TensorRT engine inspector", **inspected}
    except BuildError as exc:
        network = facts.get("network") or {}
        return {
            **description,
            "source": f"lock (build-time network summary); {exc}",
            "io": {"inputs": network.get("inputs"), "outputs": network.get("outputs")},
            "layers": network.get("layers"),
            "precisions": network.get("precisions"),
        }
