"""The engine node: ONNX -> serialized TensorRT engine (plan), built only when stale."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtbuild.errors import BuildError
from trtbuild.graph.nodes import BUILT, FAILED, FRESH, Context, ModelStep, Outcome, save_entry, utc_now
from trtbuild.isolation import Produced, run_isolated
from trtbuild.manifest.loader import ModelTarget
from trtbuild.state.staleness import assess


def engine_request(target: ModelTarget, env: dict[str, Any], settings: dict[str, Any], timing_cache: Path) -> dict[str, Any]:
    """The builder child's request for ``target`` with ``settings`` (``state.keys.build_settings``).

    ``timing_cache`` is shared by the project's builds (and audit rebuilds), so the same GPU picks the
    same tactics; it is an accelerator, not part of any key.
    """
    return {
        "flavour": env["builder"],
        "timing_cache": str(timing_cache),
        "onnx": str(target.engine_onnx(env)),
        "plugins": [str(path) for path in target.plugins],
        "plugin_sha256": list(target.plugin_sha256),
        **settings,
    }


@dataclass
class EngineBuild(ModelStep):
    """Build ``target``'s engine from its ONNX when its assessment says it is stale."""

    verb = ""

    def stale_reasons(self, ctx: Context) -> list[str]:
        return assess(self.target, ctx.project.root, ctx.cache, ctx.lock, ctx.env).reasons

    def run(self, ctx: Context) -> Outcome:
        started = time.monotonic()
        assessment = assess(self.target, ctx.project.root, ctx.cache, ctx.lock, ctx.env)
        if assessment.fresh:
            return Outcome(FRESH)
        if assessment.components is None:
            return Outcome(FAILED, assessment.reasons)
        try:
            built = run_isolated(
                "trtbuild.builder.child", engine_request(self.target, ctx.env, assessment.components["settings"], ctx.project.timing_cache),
                self.target.engine,
                ctx.project.state_dir / "logs" / f"{self.model}.log", ctx.project.state_dir / "tmp",
            )
        except BuildError as exc:
            return Outcome(FAILED, [str(exc)], time.monotonic() - started, exc.log_tail)
        self._record(ctx, assessment.components, assessment.key or "", built)
        return Outcome(BUILT, assessment.reasons, time.monotonic() - started)

    def _record(self, ctx: Context, components: dict[str, Any], key: str, built: Produced) -> None:
        entry = {
            "key": key,
            "components": components,
            "engine": {"path": ctx.project.relative(self.target.engine), "sha256": built.sha256, "size": built.size},
            "build_seconds": round(built.result["seconds"], 3),
            "builder": built.result["builder"],
            "network": built.result.get("network"),
            "built_at": utc_now(),
        }
        save_entry(ctx, ctx.lock.entries, self.model, entry)
