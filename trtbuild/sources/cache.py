"""The content-addressed source cache: ``<cache>/sources/<sha256>``, shared by every project.

An entry is put in place by an atomic rename only after its bytes matched the pin, so whatever is at
``<sha256>`` has that hash unless someone edited it; readers verify through the stat cache anyway. Two
projects (or two runs) fetching the same pin race harmlessly: both rename identical bytes into place.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_VARIABLE = "TRTBUILD_CACHE"


def cache_root() -> Path:
    """``$TRTBUILD_CACHE``, else ``$XDG_CACHE_HOME/trtbuild``, else ``~/.cache/trtbuild``."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trtbuild"


def source_path(sha256: str) -> Path:
    """Where the source with content ``sha256`` lives in the cache."""
    return cache_root() / "sources" / sha256
