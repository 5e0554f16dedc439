"""FP32 ONNX -> INT8 Q/DQ ONNX that TensorRT accepts, by post-training static quantization.

Two quantizers, chosen per model (``calibration.quantizer``), both producing explicit symmetric INT8
Q/DQ (TensorRT developer guide, "Explicit Quantization"):

**modelopt** (the default): NVIDIA ModelOpt's ONNX PTQ, ``modelopt.onnx.quantization.quantize(quantize_mode=
"int8", calibration_eps=["cpu"], high_precision_dtype="fp32")`` — NVIDIA's path for strongly typed TensorRT.
It places Q/DQ where TensorRT fuses them (inputs of Conv, Add, Concat, MaxPool, Resize, ...), keeps the
rest FP32 and calibrates with ``max`` or ``entropy``. Measured on the repo's five models with the
emulating gate (docs/precision.md), entropy beats ONNX Runtime's quantizer on three and ties on two.
Installed without its ``[onnx]`` extra (which pins onnx 1.21, onnxruntime-gpu and cupy): the int8
extra lists the members it imports (onnx-graphsurgeon, onnxslim, lief) beside CPU onnxruntime.

**onnxruntime** (the fallback): ONNX Runtime's ``quantize_static`` in QDQ format, configured for
TensorRT (ONNX Runtime, "Quantize to QDQ for TensorRT"):

- symmetric activations and weights (``ActivationSymmetric``/``WeightSymmetric``): every zero point is 0,
  as TensorRT requires ("TensorRT only supports symmetric quantization");
- signed INT8 for both; per-channel weights;
- the model is normalised first (``validate.normalize``): initializers listed among the graph inputs
  (IR version 3) are not constants to the quantizer ("Expected bias ... to be an initializer") and give
  an output the checker refuses ("... in initializer but not in graph input"), so they leave the inputs,
  and every node gets a unique name;
- models below opset 13 are converted to 13 first (``onnx.version_converter``): per-channel
  ``DequantizeLinear`` needs the ``axis`` attribute that opset 13 introduced;
- only the inputs of ``Conv``, ``MatMul`` and ``Gemm`` are quantized, and biases are not
  (``QuantizeBias: False``): TensorRT fuses Q/DQ around these ops and rejects an INT32
  ``DequantizeLinear`` for biases ("input has type Int32 but must have type ... Int8").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtbuild.precision import validate

#: Bump when the quantization settings change; part of the key.
VERSION = 4
#: quantizer -> the distributions whose versions enter the INT8 key.
QUANTIZER_PACKAGES = {
    "modelopt": ("nvidia-modelopt", "onnx-graphsurgeon", "onnxslim", "onnxruntime", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
}
#: trtbuild's algorithm names -> ModelOpt's ``calibration_method``.
MODELOPT_METHODS = {"minmax": "max", "entropy": "entropy"}
#: The lowest opset with per-channel Q/DQ (the ``axis`` attribute of QuantizeLinear/DequantizeLinear).
PER_CHANNEL_OPSET = 13
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def quantize(
    source: Path,
    target: Path,
    feeds: list[dict[str, Any]],
    algorithm: str,
    scratch: Path,
    quantizer: str = "onnxruntime",
) -> None:
    """Write the Q/DQ version of ``source`` to ``target`` with ``quantizer`` (``modelopt`` or ``onnxruntime``),
    calibrated on ``feeds`` with ``algorithm``; ``scratch`` is an empty folder for intermediate files.

    Raises:
        ModuleNotFoundError: ModelOpt is not installed (``quantizer="modelopt"``).
        Exception: whatever the quantizer raises (the child turns every one into a BuildError).
    """
    if quantizer == "modelopt":
        _quantize_modelopt(source, target, feeds, algorithm, scratch)
    else:
        _quantize_onnxruntime(source, target, feeds, algorithm, scratch)


def _quantize_modelopt(source: Path, target: Path, feeds: list[dict[str, Any]], algorithm: str, scratch: Path) -> None:
    """ModelOpt's ONNX PTQ on a normalised copy in ``scratch`` (it writes intermediate files beside its input)."""
    import numpy as np
    import onnx
    from modelopt.onnx.quantization import quantize as modelopt_quantize

    prepared = _prepared(source, scratch / "prepared.onnx", always=True)
    data = {name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]}
    output = scratch / "quantized.onnx"
    modelopt_quantize(
        onnx_path=str(prepared),
        quantize_mode="int8",
        calibration_data=data,
        calibration_method=MODELOPT_METHODS[algorithm],
        calibration_eps=["cpu"],
        high_precision_dtype="fp32",
        output_path=str(output),
        log_level="WARNING",
    )
    onnx.save_model(onnx.load_model(str(output)), str(target))


def _quantize_onnxruntime(
    source: Path, target: Path, feeds: list[dict[str, Any]], algorithm: str, scratch: Path
) -> None:
    """ONNX Runtime's ``quantize_static``, configured for TensorRT (module docstring).

    ``feeds`` are ``{input name: array}`` dicts for the model's inputs (initializers that were listed as
    inputs are not fed). The target keeps the source's input and output names and shapes.

    Raises:
        ValueError / RuntimeError: from ONNX Runtime when the model cannot be calibrated or quantized;
            other exception types from ONNX Runtime's quantizer or onnx's version converter are possible
            (the child turns every one into a BuildError).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.remaining, None)

    source = _prepared(source, scratch / "prepared.onnx")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    quantize_static(
        str(source),
        str(target),
        Feeds(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=list(QUANTIZED_OPS),
        calibrate_method=methods[algorithm],
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )


def _prepared(source: Path, scratch: Path, always: bool = False) -> Path:
    """``source``, or a normalised (``validate.normalize``) copy at opset >= 13 at ``scratch`` if it needs
    either (or ``always``).

    The copy holds every weight, those the source keeps as external data (``.onnx.data`` beside it)
    included: inline, or, at the 2 GiB protobuf limit, in ``scratch``'s own ``.data`` file.
    """
    import onnx
    from onnx import version_converter

    model = onnx.load_model(str(source))  # external data loaded, relative to the source's folder
    changed = bool(validate.normalize(model))
    opset = max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    if opset < PER_CHANNEL_OPSET:
        model = version_converter.convert_version(model, PER_CHANNEL_OPSET)
        changed = True
    if not changed and not always:
        return source
    large = model.ByteSize() >= onnx.checker.MAXIMUM_PROTOBUF
    onnx.save_model(model, str(scratch), save_as_external_data=large, location=f"{scratch.name}.data")
    return scratch


def zero_points(model: Any) -> dict[str, int]:
    """Every Q/DQ zero-point initializer of ``model`` -> its largest absolute value (all 0 when symmetric)."""
    from onnx import numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if (
            node.op_type in ("QuantizeLinear", "DequantizeLinear")
            and len(node.input) > 2
            and node.input[2] in initializers
        ):
            found[node.input[2]] = int(abs(numpy_helper.to_array(initializers[node.input[2]]).astype("int64")).max())
    return found
