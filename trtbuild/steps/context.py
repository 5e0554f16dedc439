"""What every step shares during one run: the context, a step's assessment and the outcome of running it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from trtbuild.manifest.target import Project
from trtbuild.reasons import Reason
from trtbuild.results import BUILT, FAILED, FRESH, INTERRUPTED, PULLED, SKIPPED  # noqa: F401  (the step outcomes, defined once)
from trtbuild.state.lockfile import LockFile
from trtbuild.state.statcache import StatCache

if TYPE_CHECKING:
    from trtbuild.env.device import BuilderDevice


@dataclass
class Outcome:
    """What running a step did.

    Attributes:
        status: ``built``, ``fresh``, ``failed``, ``skipped`` or ``interrupted`` (the run was stopped
            while the step worked).
        reasons: why it was (re)built, or why it failed / was skipped.
        seconds: wall time of the step's work; the runner makes it the step's whole wall time.
        log_tail: the step log's error lines, for failures.
    """

    status: str
    reasons: list[Reason] = field(default_factory=list)
    seconds: float = 0.0
    log_tail: str = ""


@dataclass
class Assessment:
    """The staleness of one step.

    Attributes:
        components: the key components now (``None`` when an input is missing or the step is not keyed).
        key: their key.
        reasons: why the step must run; empty when it is fresh.
    """

    components: dict[str, Any] | None
    key: str | None
    reasons: list[Reason] = field(default_factory=list)

    @property
    def fresh(self) -> bool:
        return not self.reasons


class RemoteCache(Protocol):
    """What a run asks of its remote cache (``steps.remote.Remote``, which imports this module)."""

    push: bool

    def pull_step(self, step: Any, ctx: Context, assessment: Assessment) -> Outcome | None: ...

    def push_step(self, step: Any, ctx: Context, entry: dict[str, Any]) -> None: ...


@dataclass
class Context:
    """What steps share during one run: the project, the environment fingerprint and the state files.

    Attributes:
        stats: the stat cache (file stat -> sha256: ``state.statcache``); the remote cache is ``remote``.
        lock_mutex: serializes lock-file updates from parallel steps.
        assessments: step id -> its assessment in this run (``steps.step.assess``): a step is assessed
            once however often ``plan``, the pre-flight checks, the runner and the stamp ask; the memo is
            emptied whenever a step produces a file, since that can change any later verdict.
        remote: the remote cache stale steps are pulled from and built steps pushed to (``steps.remote``).
        device: the builder device the engines are built on over SSH (``env.device``), or ``None``: here.
    """

    project: Project
    env: dict[str, Any]
    stats: StatCache
    lock: LockFile
    lock_mutex: threading.Lock = field(default_factory=threading.Lock)
    assessments: dict[str, Assessment] = field(default_factory=dict)
    remote: RemoteCache | None = None
    device: BuilderDevice | None = None

    def save_entry(self, step_id: str, entry: dict[str, Any]) -> None:
        """Put ``entry`` under ``step_id`` in the lock and write the lock, one thread at a time.

        Raises:
            WriteError: the lock could not be written.
        """
        with self.lock_mutex:
            self.lock.record(step_id, entry)
            self.lock.save()
