"""FP32 ONNX -> INT8 Q/DQ ONNX that TensorRT accepts, by post-training static quantization.

ONNX Runtime's ``quantize_static`` in QDQ format, configured for TensorRT's explicit quantization
(TensorRT developer guide, "Explicit Quantization"; ONNX Runtime, "Quantize to QDQ for TensorRT"):

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

The NVIDIA ModelOpt ONNX quantizer would be the first choice, but ``nvidia-modelopt[onnx]`` pins
onnx 1.21 and onnxruntime-gpu/cupy, which do not install on the CPU-only machines trtbuild is tested on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtbuild.precision import validate

#: Bump when the quantization settings change; part of the key.
VERSION = 3
#: The lowest opset with per-channel Q/DQ (the ``axis`` attribute of QuantizeLinear/DequantizeLinear).
PER_CHANNEL_OPSET = 13
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def quantize(source: Path, target: Path, feeds: list[dict[str, Any]], algorithm: str, scratch: Path) -> None:
    """Write the Q/DQ version of ``source`` to ``target``, calibrated on ``feeds`` with ``algorithm``;
    ``scratch`` is an empty folder for the normalised, opset-converted copy.

    ``feeds`` are ``{input name: array}`` dicts for the model's inputs (initializers that were listed as
    inputs are not fed). The target keeps the source's input and output names and shapes.

    Raises:
        ValueError / RuntimeError: from ONNX Runtime when the model cannot be calibrated or quantized;
            other exception types from ONNX Runtime's quantizer or onnx's version converter are possible
            (the child turns every one into a BuildError).
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.remaining, None)

    source = _prepared(source, scratch / "prepared.onnx")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    quantize_static(
        str(source), str(target), Feeds(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
        op_types_to_quantize=list(QUANTIZED_OPS), calibrate_method=methods[algorithm],
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )


def _prepared(source: Path, scratch: Path) -> Path:
    """``source``, or a normalised (``validate.normalize``) copy at opset >= 13 in ``scratch`` if it needs either."""
    import onnx
    from onnx import version_converter

    model = onnx.load_model(str(source))
    changed = bool(validate.normalize(model))
    opset = max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    if opset < PER_CHANNEL_OPSET:
        model = version_converter.convert_version(model, PER_CHANNEL_OPSET)
        changed = True
    if not changed:
        return source
    onnx.save_model(model, str(scratch))
    return scratch


def zero_points(model: Any) -> dict[str, int]:
    """Every Q/DQ zero-point initializer of ``model`` -> its largest absolute value (all 0 when symmetric)."""
    from onnx import numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2] in initializers:
            found[node.input[2]] = int(abs(numpy_helper.to_array(initializers[node.input[2]]).astype("int64")).max())
    return found
