"""Precision nodes: the model's FP32 ONNX -> ONNX that carries a reduced precision, and the gate.

- ``Fp16Convert``: FP16 ONNX (I/O kept FP32) for strongly typed builders, ``fp16_via: onnx``, or to
  validate an FP16-flag build;
- ``Int8Quantize``: symmetric Q/DQ INT8 ONNX calibrated on real images;
- ``AccuracyGate``: FP32 vs reduced ONNX in ONNX Runtime on validation images; a tolerance breach fails
  the node, so the engine after it is skipped. Its JSON report is kept either way.

Each runs in a child process (``precision.child``) only when its key changed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from trtbuild.errors import BuildError, ManifestError
from trtbuild.graph.nodes import BUILT, FAILED, FRESH, Context, ModelStep, Outcome, record_onnx
from trtbuild.isolation import Produced, run_isolated
from trtbuild.manifest.loader import ModelTarget
from trtbuild.manifest.onnx_inputs import onnx_input_dims
from trtbuild.state.staleness import (
    Assessment,
    accuracy_entry_name,
    assess_accuracy,
    assess_fp16,
    assess_int8,
    fp16_entry_name,
    image_hashes,
    int8_entry_name,
)


def image_input(target: ModelTarget) -> tuple[str, list[int]]:
    """(name, shape with batch 1) of the model's single image input: the declared opt shape, else the ONNX's.

    Raises:
        BuildError: the model has several inputs, or a dynamic one that is not declared.
    """
    declared = target.spec.profiles()[0]
    dims = onnx_input_dims(target.onnx)
    if len(dims) != 1:
        raise BuildError(f"calibration and validation feed one image input; {target.onnx.name} has {list(dims)}")
    name = next(iter(dims))
    shape = list(declared[name][1]) if name in declared else dims[name]
    if not all(isinstance(dim, int) for dim in shape):
        raise BuildError(f"input {name!r} has dynamic dims {shape}; declare its shape under inputs")
    return name, [1, *shape[1:]]


@dataclass
class PrecisionStep(ModelStep):
    """A precision node: assess, then run ``precision.child`` with ``step`` and record the result."""

    step = ""
    verb = ""

    def assess(self, ctx: Context) -> Assessment:
        raise NotImplementedError

    def entry(self) -> str:
        raise NotImplementedError

    def request(self, ctx: Context) -> dict[str, Any]:
        return {"onnx": str(self.target.onnx)}

    def stale_reasons(self, ctx: Context) -> list[str]:
        return self.assess(ctx).reasons

    def run(self, ctx: Context) -> Outcome:
        assessment = self.assess(ctx)
        if assessment.fresh:
            return Outcome(FRESH)
        if assessment.components is None:
            return Outcome(FAILED, assessment.reasons)
        started = time.monotonic()
        try:
            produced = run_isolated(
                "trtbuild.precision.child", {"step": self.step, **self.request(ctx)}, self.produces,
                ctx.project.state_dir / "logs" / f"{self.model}.{self.step}.log", ctx.project.state_dir / "tmp",
            )
        except (BuildError, ManifestError) as exc:
            return Outcome(FAILED, [str(exc)], time.monotonic() - started, getattr(exc, "log_tail", ""))
        return self.finish(ctx, assessment, produced, time.monotonic() - started)

    def finish(self, ctx: Context, assessment: Assessment, produced: Produced, seconds: float) -> Outcome:
        record_onnx(ctx, self.entry(), assessment.components or {}, assessment.key or "", self.produces, produced)
        return Outcome(BUILT, [f"{self.verb}: {reason}" for reason in assessment.reasons], seconds)


@dataclass
class Fp16Convert(PrecisionStep):
    """Convert ``target.onnx`` to ``target.fp16_onnx`` (I/O kept FP32) when stale."""

    step = "fp16"
    verb = "fp16"

    def assess(self, ctx: Context) -> Assessment:
        return assess_fp16(self.target, ctx.project.root, ctx.cache, ctx.lock)

    def entry(self) -> str:
        return fp16_entry_name(self.model)

    def request(self, ctx: Context) -> dict[str, Any]:
        spec = self.target.spec
        if spec.fp16_converter != "autocast":
            return {"onnx": str(self.target.onnx)}
        assert spec.calibration is not None
        return {"onnx": str(self.target.onnx), "converter": "autocast", "calibration": spec.calibration.model_dump(mode="json"),
                **_image_request(self.target, ctx)}


def _image_request(target: ModelTarget, ctx: Context) -> dict[str, Any]:
    name, shape = image_input(target)
    return {"project_root": str(ctx.project.root), "preprocess": target.spec.preprocess.model_dump(mode="json"),
            "input": name, "shape": shape}


@dataclass
class Int8Quantize(PrecisionStep):
    """Quantize ``target.onnx`` to a symmetric Q/DQ ``target.int8_onnx`` from its calibration images."""

    step = "int8"
    verb = "int8"

    def assess(self, ctx: Context) -> Assessment:
        return assess_int8(self.target, ctx.project.root, ctx.cache, ctx.lock)

    def entry(self) -> str:
        return int8_entry_name(self.model)

    def request(self, ctx: Context) -> dict[str, Any]:
        assert self.target.spec.calibration is not None
        return {"onnx": str(self.target.onnx), "calibration": self.target.spec.calibration.model_dump(mode="json"),
                **_image_request(self.target, ctx)}


@dataclass
class AccuracyGate(PrecisionStep):
    """Judge the reduced ONNX against the FP32 ONNX; fail (keeping the report) outside the tolerance."""

    step = "accuracy"
    verb = "accuracy"

    def assess(self, ctx: Context) -> Assessment:
        return assess_accuracy(self.target, ctx.project.root, ctx.cache, ctx.lock, ctx.env)

    def entry(self) -> str:
        return accuracy_entry_name(self.model)

    def request(self, ctx: Context) -> dict[str, Any]:
        spec = self.target.spec
        assert spec.validation is not None
        if spec.calibration is not None:
            root = ctx.project.root
            shared = set(image_hashes(ctx.cache, spec.calibration, root).values()) & set(image_hashes(ctx.cache, spec.validation, root).values())
            if shared:
                raise BuildError(f"{self.target.where('validation')}: validation images must be kept apart from calibration "
                                 f"images; {len(shared)} are in both")
        return {"model": self.model, "precision": spec.precision, "reference": str(self.target.onnx),
                "reduced": str(self.target.reduced_onnx(ctx.env)), "validation": spec.validation.model_dump(mode="json"),
                "head": spec.head.model_dump(mode="json"), "tolerance": spec.tolerance.model_dump(mode="json"),
                **_image_request(self.target, ctx)}

    def finish(self, ctx: Context, assessment: Assessment, produced: Produced, seconds: float) -> Outcome:
        if produced.result["passed"]:
            return super().finish(ctx, assessment, produced, seconds)
        report = json.loads(self.produces.read_text())  # kept for diagnosis, never recorded as passed
        figures = "; ".join(report["failures"])
        return Outcome(FAILED, [f"accuracy gate failed ({ctx.project.relative(self.produces)}): {figures}"], seconds)
