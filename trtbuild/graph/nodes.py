"""What every node of the build graph shares: the run context, the outcome, the node protocol.

Node kinds, one module each: ``graph.sources`` (a local source file, a file fetched from a PyPI wheel),
``graph.export_node`` (source -> ONNX through a recipe), ``graph.engine_node`` (ONNX -> engine). Later
kinds (calibration, Q/DQ ONNX, accuracy reports) follow the same protocol.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trtbuild.manifest.loader import ModelTarget, Project
from trtbuild.state.lockfile import LockFile
from trtbuild.state.statcache import StatCache

from trtbuild.results import BUILT, FAILED, FRESH, INTERRUPTED, SKIPPED  # noqa: F401  (the node outcomes, defined once)


@dataclass
class Outcome:
    """What running a node did.

    Attributes:
        status: ``built``, ``fresh``, ``failed``, ``skipped`` or ``interrupted`` (the run was stopped
            while the node worked).
        reasons: why it was (re)built, or why it failed / was skipped.
        seconds: wall time of the node's work; the runner makes it the node's whole wall time.
        log_tail: the builder log's error lines, for failures.
    """

    status: str
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    log_tail: str = ""


@dataclass
class Context:
    """What nodes share during one run: the project, the environment fingerprint and the state files.

    ``lock_mutex`` serializes lock-file updates from parallel builds.
    """

    project: Project
    env: dict[str, Any]
    cache: StatCache
    lock: LockFile
    lock_mutex: threading.Lock = field(default_factory=threading.Lock)


class Node(Protocol):
    """A graph node: ``id`` is ``kind:relative/path`` of the artefact it produces.

    ``stale_reasons`` says why ``run`` would do work, without doing it (``trtbuild plan``); ``verb``
    prefixes those reasons (``export: source changed``), empty for the engine itself.
    """

    id: str
    model: str
    produces: Path
    consumes: tuple[Path, ...]
    verb: str

    def stale_reasons(self, ctx: Context) -> list[str]: ...

    def run(self, ctx: Context) -> Outcome: ...


@dataclass
class ModelStep:
    """The fields of a node that produces one artefact of one model (export, conversion, engine)."""

    id: str
    model: str
    produces: Path
    consumes: tuple[Path, ...]
    target: ModelTarget


def step_name(node: Node) -> str:
    """The kind of step a node is, as progress lines and ``--json`` name it: the prefix of its id
    (``fetch``, ``source``, ``export``, ``fp16``, ``int8``, ``accuracy``, ``engine``)."""
    return node.id.split(":", 1)[0]


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second, for lock entries."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")




def record_onnx(ctx: Context, entry: str, components: dict[str, Any], key: str, path: Path, produced: Any) -> None:
    """Record an ONNX trtbuild produced (export or conversion) in the lock's ``exports`` section.

    Args:
        produced: the ``isolation.Produced`` of the step (sha256, size, result with ``seconds``).
    """
    record = {
        "key": key,
        "components": components,
        "onnx": {"path": ctx.project.relative(path), "sha256": produced.sha256, "size": produced.size},
        "export_seconds": round(produced.result["seconds"], 3),
        "exported_at": utc_now(),
    }
    save_entry(ctx, ctx.lock.exports, entry, record)


def save_entry(ctx: Context, section: dict[str, Any], name: str, entry: dict[str, Any]) -> None:
    """Put ``entry`` under ``name`` in a section of the lock and write the lock, one thread at a time."""
    with ctx.lock_mutex:
        section[name] = entry
        ctx.lock.save()
