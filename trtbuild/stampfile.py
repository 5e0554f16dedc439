"""The fresh stamp's format, shared by its writer (``state.freshstamp``, after a run in which every model
ended fresh or built) and its reader (``fastpath``, on the next ``trtbuild all``). Standard library only:
the no-op fast path imports it.

A stamp is ``.trtbuild/fresh.<manifest>.<device or auto>.json``::

    {"schema": 2, "written_at": ns, "environment": {"python": {...}, "variables": {...}},
     "files": {name: [inode, size, mtime_ns] | null}, "engines": {model: engine path}}

``files`` maps every file whose change could make a model stale to its ``files.signature`` (``null``:
absent); names inside the project are relative to its root (``stamp_name``), so a copied project checks
its own files. ``written_at`` is ``clock.now_ns`` when it was written: a file whose mtime is within
``statsig.RACY_WINDOW_NS`` of it is not vouched for.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

STAMP_SCHEMA = 2  # 2: paths inside the project relative to its root
#: The variables that steer trtbuild: a stamp holds only while they are as they were.
VARIABLES = ("TRTBUILD_SYSROOT", "TRTBUILD_BUILDER", "TRTBUILD_CACHE", "XDG_CACHE_HOME", "POLYGRAPHY_USE_TENSORRT_RTX")


def stamp_path(manifest: Path, device: str | None) -> Path:
    """Where the fresh stamp of ``manifest`` with the requested ``device`` (``None``: detected) lives."""
    return manifest.parent / ".trtbuild" / f"fresh.{manifest.name}.{device or 'auto'}.json"


def stamp_name(path: Path, root: Path) -> str:
    """How the stamp names ``path``: relative to ``root`` (POSIX) inside the project, else absolute."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def environment() -> dict[str, Any]:
    """The process facts a stamp is valid for: interpreter and trtbuild's variables."""
    python = {"prefix": sys.prefix, "interpreter": os.path.realpath(sys.executable)}  # python == python3 in a venv
    return {"python": python, "variables": {name: os.environ.get(name) for name in VARIABLES}}


def is_int(value: Any) -> bool:
    """Whether a parsed JSON value is an integer (``bool`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def stamp_problem(stamp: Any) -> str | None:
    """What is wrong with the shape of a parsed stamp, or ``None`` when it has the shape ``write_stamp``
    gives it (the module docstring). Plain type checks: the fast path stays standard-library-only."""
    if not isinstance(stamp, dict):
        return "not a JSON object"
    if not is_int(stamp.get("schema")):
        return "schema: not an integer"
    if stamp["schema"] != STAMP_SCHEMA:
        return None  # another version's stamp: outdated, not damaged
    if not is_int(stamp.get("written_at")):
        return "written_at: not an integer"
    if not isinstance(stamp.get("environment"), dict):
        return "environment: not a mapping"
    files = stamp.get("files")
    if not isinstance(files, dict):
        return "files: not a mapping"
    for name, recorded in files.items():  # ``type(x) is int``: no bools, and fast over 30,000 files
        if recorded is not None and not (
            type(recorded) is list
            and len(recorded) == 3
            and type(recorded[0]) is int
            and type(recorded[1]) is int
            and type(recorded[2]) is int
        ):
            return f"files.{name}: not [inode, size, mtime_ns] or null"
    engines = stamp.get("engines")
    if not isinstance(engines, dict) or not all(isinstance(path, str) and path for path in engines.values()):
        return "engines: not a mapping of model -> engine path"
    return None


def read_stamp(manifest: Path, device: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The stamp for ``manifest``/``device`` and what is wrong with it.

    Returns:
        ``(stamp, None)`` when it is well formed (its files not yet checked); ``(None, None)`` when there
        is none or it is another version's; ``(None, problem)`` when it is damaged (not JSON, wrong shape):
        the caller warns once and takes the full path, which rewrites it.
    """
    path = stamp_path(manifest, device)
    try:
        text = path.read_bytes()
    except OSError:
        return None, None
    try:
        stamp = json.loads(text)
    except ValueError as exc:
        return None, f"not JSON ({exc})"
    problem = stamp_problem(stamp)
    if problem is not None or stamp.get("schema") != STAMP_SCHEMA:
        return None, problem
    return stamp, None
