"""Recipe ``tflite``: a TensorFlow Lite model -> ONNX with tflite2onnx, without TensorFlow.

tflite2onnx 0.4.1 cannot convert models whose weights are stored as FP16 behind ``DEQUANTIZE`` ops (as
MediaPipe's are): its layout pass fails before it folds them. So the FP16 constants are folded to FP32
first — each ``DEQUANTIZE`` whose input is a constant FP16 buffer becomes an FP32 constant — by
rewriting the flatbuffer with LiteRT's generated schema (``ai_edge_litert.schema_py_generated``).
tflite2onnx converts NHWC to NCHW: inputs come out as ``[N, C, H, W]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

VERSION = 1
EXTRA = "tflite"
REQUIRES = ("tflite2onnx", "ai_edge_litert", "flatbuffers")
EXPORTERS = ("tflite2onnx", "ai-edge-litert", "onnx")
NEEDS_PIN = False  # a flatbuffer: data only


class Params(BaseModel):
    """Parameters of ``recipe: {name: tflite}``.

    Attributes:
        fold_fp16: fold FP16 weights (``DEQUANTIZE`` of constants) to FP32 before converting.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fold_fp16: bool = True


def fold_fp16_constants(data: bytes) -> tuple[bytes, int]:
    """Replace every ``DEQUANTIZE`` of a constant FP16 tensor by an FP32 constant.

    Returns:
        the rewritten flatbuffer and how many ops were folded.
    """
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    folded = 0
    for subgraph in model.subgraphs:
        kept = []
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            source = subgraph.tensors[op.inputs[0]] if op.inputs is not None and len(op.inputs) else None
            payload = model.buffers[source.buffer].data if source is not None else None
            if (
                max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE
                and source.type == schema.TensorType.FLOAT16
                and payload is not None
                and len(payload)
            ):
                values = np.frombuffer(bytes(bytearray(payload)), dtype=np.float16).astype(np.float32)
                buffer = schema.BufferT()
                buffer.data = np.frombuffer(values.tobytes(), dtype=np.uint8)
                model.buffers.append(buffer)
                subgraph.tensors[op.outputs[0]].buffer = len(model.buffers) - 1
                folded += 1
                continue
            kept.append(op)
        subgraph.operators = kept
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), folded


def export(source: Path, output: Path, params: Params, context: Any) -> None:
    """Convert ``source`` (``.tflite``) to ``output``."""
    import tflite2onnx

    model = context.workdir / "model.tflite"
    data = source.read_bytes()
    model.write_bytes(fold_fp16_constants(data)[0] if params.fold_fp16 else data)
    tflite2onnx.convert(str(model), str(output))
