"""The run's two clocks, standard library only: the no-op fast path imports this first.

``STARTED`` is when the process started, as near as Python lets us see it: the wall time both paths'
summaries report counts from here. ``now_ns`` is the wall clock that the racily-clean rule
(``statsig.RACY_WINDOW_NS``) compares file mtimes with, when a stamp is written or a file is hashed.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-11-22T08:00:00+00:00``), for lock entries."""
    import datetime  # not at import: the no-op fast path never records

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def now_ns() -> int:
    """The wall clock, in nanoseconds since the epoch, that file mtimes are compared with."""
    return time.time_ns()
