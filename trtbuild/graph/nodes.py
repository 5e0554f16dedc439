"""The nodes of the build graph: one per artefact, each knowing what it consumes and produces.

- ``OnnxFile``: an ONNX file the manifest names (checked, never built).
- ``EngineBuild``: ONNX -> engine, built only when stale.

Later node kinds (export recipes, calibration, Q/DQ ONNX, accuracy reports) follow the same protocol.
"""

from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trtbuild.isolation import Produced, run_isolated
from trtbuild.errors import BuildError
from trtbuild.manifest.loader import ModelTarget, Project
from trtbuild.state.lockfile import LockFile
from trtbuild.state.staleness import assess
from trtbuild.state.statcache import StatCache

#: Node outcomes.
BUILT, FRESH, FAILED, SKIPPED = "built", "fresh", "failed", "skipped"


@dataclass
class Outcome:
    """What running a node did.

    Attributes:
        status: ``built``, ``fresh``, ``failed`` or ``skipped``.
        reasons: why it was (re)built, or why it failed / was skipped.
        seconds: wall time of the node's work.
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
    """A graph node: ``id`` is ``kind:relative/path`` of the artefact it produces."""

    id: str
    model: str
    produces: Path
    consumes: tuple[Path, ...]

    def run(self, ctx: Context) -> Outcome: ...


@dataclass
class OnnxFile:
    """An ONNX file given by path in the manifest; running it checks that it exists."""

    id: str
    model: str
    produces: Path
    consumes: tuple[Path, ...] = ()

    def run(self, ctx: Context) -> Outcome:
        if not self.produces.is_file():
            return Outcome(FAILED, [f"source {ctx.project.relative(self.produces)} does not exist"])
        return Outcome(FRESH)


@dataclass
class EngineBuild:
    """Build ``target``'s engine from its ONNX when its assessment says it is stale."""

    id: str
    model: str
    produces: Path
    consumes: tuple[Path, ...]
    target: ModelTarget

    def run(self, ctx: Context) -> Outcome:
        started = time.monotonic()
        assessment = assess(self.target, ctx.project.root, ctx.cache, ctx.lock, ctx.env)
        if assessment.fresh:
            return Outcome(FRESH)
        if assessment.components is None:
            return Outcome(FAILED, assessment.reasons)
        try:
            built = run_isolated(
                "trtbuild.builder.child", self._request(ctx, assessment.components), self.target.engine,
                ctx.project.state_dir / "logs" / f"{self.model}.log", ctx.project.state_dir / "tmp",
            )
        except BuildError as exc:
            return Outcome(FAILED, [str(exc)], time.monotonic() - started, exc.log_tail)
        self._record(ctx, assessment.components, assessment.key or "", built)
        return Outcome(BUILT, assessment.reasons, time.monotonic() - started)

    def _request(self, ctx: Context, components: dict[str, Any]) -> dict[str, Any]:
        return {
            "flavour": ctx.env["builder"],
            "onnx": str(self.target.onnx),
            "plugins": [str(path) for path in self.target.plugins],
            **components["settings"],
        }

    def _record(self, ctx: Context, components: dict[str, Any], key: str, built: Produced) -> None:
        entry = {
            "key": key,
            "components": components,
            "engine": {"path": ctx.project.relative(self.target.engine), "sha256": built.sha256, "size": built.size},
            "build_seconds": round(built.result["seconds"], 3),
            "builder": built.result["builder"],
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        with ctx.lock_mutex:
            ctx.lock.set(self.model, entry)
            ctx.lock.save()


def nodes_for(target: ModelTarget, project: Project) -> tuple[OnnxFile, EngineBuild]:
    """The source and engine nodes of one model."""
    source = OnnxFile(id=f"onnx:{project.relative(target.onnx)}", model=target.name, produces=target.onnx)
    engine = EngineBuild(
        id=f"engine:{project.relative(target.engine)}",
        model=target.name,
        produces=target.engine,
        consumes=(target.onnx,),
        target=target,
    )
    return source, engine

