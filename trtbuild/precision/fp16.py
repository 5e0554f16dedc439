"""FP32 ONNX -> FP16 ONNX for strongly typed builders (TensorRT >= 11, TensorRT-RTX).

Strongly typed builders take tensor types from the network, so FP16 must be in the ONNX. The conversion
is onnxconverter-common's ``convert_float_to_float16`` with:

- ``keep_io_types=True``: the model's inputs and outputs stay FP32 (callers' pre/post-processing is
  unchanged; the engine casts at the edges);
- a block list of numerically sensitive ops kept in FP32 (reductions, powers, exponentials and the
  index arithmetic of ``Range``/``CumSum``), with casts inserted around them by the converter.

One fix-up follows. The converter turns ``Constant`` nodes to FP16 but leaves an exporter's own
``Cast(to=FLOAT)`` untouched, so e.g. a YOLO head's ``Cast(Range) + Constant`` anchor grid ends up
FP32 + FP16, which strongly typed builders reject ("ElementWiseOperation SUM must have same input
types"). Every such internal cast is retargeted to FP16 unless it feeds a blocked op or a graph output.
"""

from __future__ import annotations

from typing import Any

#: Ops kept in FP32, on top of onnxconverter-common's DEFAULT_OP_BLOCK_LIST.
SENSITIVE_OPS = ("Pow", "Sqrt", "ReduceMean", "ReduceSum", "ReduceL2", "Exp", "Log", "Range", "CumSum")
#: Changes whenever this module's conversion changes; part of the conversion's key.
VERSION = 1

FLOAT, FLOAT16 = 1, 10


def block_list() -> list[str]:
    """The op types kept in FP32."""
    from onnxconverter_common import float16

    return sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(SENSITIVE_OPS))


def _retarget_internal_casts(model: Any, blocked: set[str]) -> int:
    graph = model.graph
    outputs = {output.name for output in graph.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    changed = 0
    for node in graph.node:
        if node.op_type != "Cast" or node.output[0] in outputs:
            continue
        to = next(attribute for attribute in node.attribute if attribute.name == "to")
        users = consumers.get(node.output[0], [])
        if to.i == FLOAT and users and not any(user.op_type in blocked for user in users):
            to.i = FLOAT16
            changed += 1
    return changed


def convert(model: Any) -> Any:
    """The FP16 version of ``model`` (an ``onnx.ModelProto``), I/O kept FP32.

    Raises:
        ValueError: from onnxconverter-common when the model cannot be converted.
    """
    from onnxconverter_common import float16

    blocked = block_list()
    converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    _retarget_internal_casts(converted, set(blocked))
    return converted
