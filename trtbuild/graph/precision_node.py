"""Precision nodes: the model's FP32 ONNX -> an ONNX that carries the precision (FP16 now).

Used where the builder is strongly typed (TensorRT >= 11, TensorRT-RTX) or the manifest asks for it
(``fp16_via: onnx``). The conversion runs in a child process (``precision.child``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from trtbuild.errors import BuildError
from trtbuild.graph.nodes import ModelStep, BUILT, FAILED, FRESH, Context, Outcome, record_onnx
from trtbuild.isolation import run_isolated
from trtbuild.state.staleness import assess_fp16, fp16_entry_name


@dataclass
class Fp16Convert(ModelStep):
    """Convert ``target.onnx`` to ``target.fp16_onnx`` (I/O kept FP32) when stale."""

    def run(self, ctx: Context) -> Outcome:
        assessment = assess_fp16(self.target, ctx.cache, ctx.lock)
        if assessment.fresh:
            return Outcome(FRESH)
        if assessment.components is None:
            return Outcome(FAILED, assessment.reasons)
        started = time.monotonic()
        try:
            produced = run_isolated(
                "trtbuild.precision.child", {"onnx": str(self.target.onnx)}, self.produces,
                ctx.project.state_dir / "logs" / f"{self.model}.fp16.log", ctx.project.state_dir / "tmp",
            )
        except BuildError as exc:
            return Outcome(FAILED, [str(exc)], time.monotonic() - started, exc.log_tail)
        record_onnx(ctx, fp16_entry_name(self.model), assessment.components, assessment.key or "", self.produces, produced)
        return Outcome(BUILT, [f"fp16: {reason}" for reason in assessment.reasons], time.monotonic() - started)
