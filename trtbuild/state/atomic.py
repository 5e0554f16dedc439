"""Crash-safe file replacement: write a temporary file in the target's folder, fsync, rename.

``os.replace`` is atomic on POSIX within one file system, so a reader sees either the old file or the
complete new one; never a prefix. A power loss before the rename leaves only a ``.partial`` file, which
no reader takes for the real thing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The process umask, read once at import (``os.umask`` can only be read by setting it, so not in threads).
UMASK = _read_umask()


def fsync_dir(folder: Path) -> None:
    """fsync a directory so a rename inside it survives a power loss (no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def partial_path(target: Path) -> Iterator[Path]:
    """A unique ``.<name>.<random>.partial`` path beside ``target``; removed again unless renamed.

    Use ``publish(partial, target)`` to put it in place.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX, dir=target.parent)
    os.close(fd)
    partial = Path(name)
    try:
        yield partial
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def publish(partial: Path, target: Path) -> None:
    """fsync ``partial``, give it the mode a plain ``open`` would (``0o666`` less the umask: ``mkstemp``
    makes it 0600, which a service running as another user cannot read), rename it to ``target`` and fsync
    the folder."""
    with open(partial, "rb+") as handle:
        os.fchmod(handle.fileno(), 0o666 & ~UMASK)
        os.fsync(handle.fileno())
    os.replace(partial, target)
    fsync_dir(target.parent)


def write_atomic(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` atomically (temporary file, fsync, rename)."""
    with partial_path(target) as partial:
        partial.write_bytes(data)
        publish(partial, target)


def remove_partials(folder: Path, name: str) -> int:
    """Delete ``.partial`` files an interrupted run left for ``name`` in ``folder``; returns how many."""
    removed = 0
    if folder.is_dir():
        for leftover in folder.glob(f".{name}.*{PARTIAL_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                removed += 1
    return removed
