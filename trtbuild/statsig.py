"""Stat signatures: ``[inode, size, mtime_ns]``, as git and DVC compare them, and git's racily-clean window.

A signature vouches for a file's content only if its mtime is older than the moment the content was read
by more than ``RACY_WINDOW_NS`` (git's "racily clean" rule, Documentation/technical/racy-git.txt), so a
write in the same instant as the read is never missed. The stat cache (``state.statcache``) and the fresh
stamp (``state.freshstamp`` writes it, ``fastpath`` checks it) both use it. Its own module, standard
library only and a few lines long, because the no-op fast path compiles and imports it on every run.
"""

from __future__ import annotations

import os

#: An mtime closer than this to the moment a file was read is not trusted (coarse file-system timestamps).
RACY_WINDOW_NS = 2_000_000_000


def stat_signature(stat: os.stat_result) -> list[int]:
    """``[inode, size, mtime_ns]`` of a stat result: what must be unchanged for a recorded hash to hold."""
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns]


def signature(path: str) -> list[int] | None:
    """``stat_signature`` of ``path``, or ``None`` when it does not exist (or cannot be stat'ed)."""
    try:
        return stat_signature(os.stat(path))
    except OSError:
        return None
