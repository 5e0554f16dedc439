"""Where trtbuild's files are: the project's ``builds.yaml`` and the shared source cache. Pure functions of
the current folder and the environment, standard library only: the no-op fast path, ``trtbuild.engine``,
the manifest (pins resolve into the cache, outputs may not go there), the confinement rule (``files``:
the cache is never confined) and the fetcher (``sources.pypi``) all ask here, so none of them imports
another's layer for a path.

The project is found as git and DVC find their repository: ``builds.yaml`` in the current folder or the
nearest parent.

The source cache is content-addressed, ``<cache>/sources/<sha256>``, shared by every project. An entry is
put in place by an atomic rename only after its bytes matched the pin, so whatever is at ``<sha256>`` has
that hash unless someone edited it; readers verify through the stat cache anyway. Two projects (or two
runs) fetching the same pin race harmlessly: both rename identical bytes into place.
"""

from __future__ import annotations

import os
from pathlib import Path

MANIFEST_NAME = "builds.yaml"
CACHE_VARIABLE = "TRTBUILD_CACHE"


def find_manifest(start: Path) -> Path | None:
    """The absolute path of ``builds.yaml`` in ``start`` or its nearest parent folder; ``None`` if none has one."""
    start = Path(start).absolute()
    for folder in (start, *start.parents):
        candidate = folder / MANIFEST_NAME
        if candidate.is_file():
            return candidate
    return None


def cache_root() -> Path:
    """The source cache's folder: ``$TRTBUILD_CACHE``, else ``$XDG_CACHE_HOME/trtbuild``, else ``~/.cache/trtbuild``."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trtbuild"


def source_path(sha256: str) -> Path:
    """Where the source with content ``sha256`` lives in the cache."""
    return cache_root() / "sources" / sha256
