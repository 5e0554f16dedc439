"""Which steps a model needs on a given builder: decisions of (model settings, environment), not manifest data.

``env`` is the environment fingerprint (``env.fingerprint``); its ``builder`` and ``builder_version``
decide whether the builder is strongly typed (``builder.compat``), i.e. whether FP16 must be in the ONNX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtbuild.builder.compat import strongly_typed
from trtbuild.manifest.target import ModelTarget


def uses_fp16_onnx(target: ModelTarget, env: dict[str, Any]) -> bool:
    """Whether the engine is built from the FP16 conversion: ``fp16_via: onnx``, or ``auto`` on a strongly
    typed builder (TensorRT >= 11, TensorRT-RTX), which has no FP16 flag."""
    if target.spec.precision != "fp16":
        return False
    via = target.spec.fp16_via
    return via == "onnx" or (via == "auto" and strongly_typed(env["builder"], env.get("builder_version")))


def needs_fp16_onnx(target: ModelTarget, env: dict[str, Any]) -> bool:
    """Whether an FP16 conversion is made: to build from, or to validate an FP16-flag build with."""
    spec = target.spec
    return uses_fp16_onnx(target, env) or (
        spec.precision == "fp16" and spec.validation is not None and spec.gate == "check"
    )


def gated(target: ModelTarget, env: dict[str, Any]) -> bool:
    """Whether an accuracy gate stands before the engine (INT8 always; FP16 when validation is given),
    unless the model says ``gate: skip``."""
    if target.spec.gate == "skip":
        return False
    return target.spec.precision == "int8" or (needs_fp16_onnx(target, env) and target.spec.validation is not None)


def reduced_onnx(target: ModelTarget) -> Path:
    """The reduced-precision ONNX the accuracy gate judges (Q/DQ INT8 or FP16)."""
    return target.int8_onnx if target.spec.precision == "int8" else target.fp16_onnx


def engine_onnx(target: ModelTarget, env: dict[str, Any]) -> Path:
    """The ONNX the engine is built from: the Q/DQ ONNX, the FP16 conversion, or the model's ONNX."""
    if target.spec.precision == "int8":
        return target.int8_onnx
    return target.fp16_onnx if uses_fp16_onnx(target, env) else target.onnx
