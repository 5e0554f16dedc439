"""Finding the project: ``builds.yaml`` in the current folder or the nearest parent, as git and DVC find
their repository. Standard library only: the no-op fast path and ``trtbuild.engine`` use it too."""

from __future__ import annotations

from pathlib import Path

MANIFEST_NAME = "builds.yaml"


def find_manifest(start: Path) -> Path | None:
    """The absolute path of ``builds.yaml`` in ``start`` or its nearest parent folder; ``None`` if none has one."""
    start = Path(start).absolute()
    for folder in (start, *start.parents):
        candidate = folder / MANIFEST_NAME
        if candidate.is_file():
            return candidate
    return None
