"""INT8 Q/DQ as FP32 fake quantization, for the accuracy gate (``emulate``): every ``QuantizeLinear``
becomes ``Clip(Round(x / scale) + zero_point, qmin, qmax)``, every ``DequantizeLinear``
``(q - zero_point) * scale``; int8 weights behind a ``DequantizeLinear`` are folded to their FP32 values
(ONNX operator spec for QuantizeLinear / DequantizeLinear)."""

from __future__ import annotations

from typing import Any

from trtbuild.errors import BuildError
from trtbuild.precision.rewrite import (
    FLOAT,
    INT8,
    INT16,
    UINT8,
    UINT16,
    Rewriter,
    assemble,
    attribute,
    elem_types,
    ranks_of,
)

#: Integer ranges of Q/DQ element types (ONNX QuantizeLinear: saturate to the output type's range).
QUANT_RANGES = {INT8: (-128, 127), UINT8: (0, 255), INT16: (-32768, 32767), UINT16: (0, 65535)}


def _broadcast(rewriter: Rewriter, name: str, axis: int, rank: int | None, dtype: Any, hint: str) -> str:
    """An FP32 initializer of Q/DQ parameter ``name`` shaped to broadcast along ``axis`` of a rank-``rank`` tensor."""

    if name not in rewriter.arrays:
        raise BuildError(f"the accuracy gate cannot emulate Q/DQ parameter {name!r}: it is computed, not a constant")
    array = rewriter.arrays[name].astype(dtype)
    if array.ndim == 1 and array.size > 1:
        if rank is None:
            raise BuildError(f"the accuracy gate cannot emulate per-axis Q/DQ on {hint!r}: its rank is unknown")
        shape = [1] * rank
        shape[axis % rank] = array.size
        array = array.reshape(shape)
    return rewriter.constant(f"{hint}_{name}", array)


def fake_quantize(model: Any) -> tuple[Any, bool]:
    """The model with every Q/DQ pair as FP32 fake quantization; (model, whether any Q/DQ was found)."""
    graph = model.graph
    if not any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node):
        return model, False
    _check_pairs(graph)
    types, ranks = elem_types(model), ranks_of(model)
    rewriter = Rewriter(model)
    float_coded: set[str] = set()  # QuantizeLinear outputs, now FP32 tensors holding integers
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            rewriter.nodes.append(node)
            continue
        if attribute(node, "block_size", 0):
            raise BuildError(f"the accuracy gate cannot emulate blocked quantization (node {node.name!r})")
        if node.op_type == "QuantizeLinear":
            _quantize(rewriter, node, types, ranks.get(node.input[0]))
            float_coded.add(node.output[0])
        elif node.input[0] in rewriter.arrays and node.input[0] not in float_coded:  # int8 weights: fold to FP32
            _fold_dequantize(rewriter, node)
        else:
            _dequantize(rewriter, node, ranks.get(node.input[0]), coded=node.input[0] in float_coded)
    consumers = {name for node in rewriter.nodes for name in node.input} | {output.name for output in graph.output}
    still_used = {name for name in rewriter.initializers if name in consumers}
    return assemble(model, rewriter, keep=still_used), True


def _check_pairs(graph: Any) -> None:
    """Raises ``BuildError`` for a QuantizeLinear whose output feeds anything but a DequantizeLinear."""
    outputs = {value.name for value in graph.output}
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            users = [user.op_type for user in graph.node if node.output[0] in user.input]
            if node.output[0] in outputs or any(user != "DequantizeLinear" for user in users):
                raise BuildError(
                    f"the accuracy gate cannot emulate QuantizeLinear {node.name!r}: its output feeds "
                    "something other than a DequantizeLinear"
                )


def _zero_point(node: Any) -> str | None:
    return node.input[2] if len(node.input) > 2 and node.input[2] else None


def _quantize(rewriter: Rewriter, node: Any, types: dict[str, int], rank: int | None) -> None:
    """QuantizeLinear as ``Clip(Round(x / scale) + zero_point, low, high)`` in FP32, the integers it
    would hold (ONNX's QuantizeLinear: round half to even, saturate to the element type's range)."""
    import numpy as np

    source, scale, zero_point = node.input[0], node.input[1], _zero_point(node)
    axis, hint = attribute(node, "axis", 1), node.name or node.output[0]
    element = types.get(zero_point, UINT8) if zero_point else attribute(node, "output_dtype", 0) or UINT8
    if element not in QUANT_RANGES:
        raise BuildError(f"the accuracy gate cannot emulate QuantizeLinear {hint!r} to element type {element}")
    low, high = QUANT_RANGES[element]
    scaled = rewriter.add("Div", [source, _broadcast(rewriter, scale, axis, rank, np.float32, hint)], hint=hint)
    rounded = rewriter.add("Round", [scaled], hint=hint)
    zero = _broadcast(rewriter, zero_point, axis, rank, np.float32, hint) if zero_point else None
    if zero is not None:
        rounded = rewriter.add("Add", [rounded, zero], hint=hint)
    bounds = [
        rewriter.constant(f"{hint}_min", np.array(low, np.float32)),
        rewriter.constant(f"{hint}_max", np.array(high, np.float32)),
    ]
    rewriter.add("Clip", [rounded, *bounds], output=node.output[0], hint=hint)


def _fold_dequantize(rewriter: Rewriter, node: Any) -> None:
    """DequantizeLinear of a constant (INT8 weights) folded into an FP32 initializer: ``(q - zero) * scale``."""
    import numpy as np
    from onnx import numpy_helper

    source, scale, zero_point, axis = node.input[0], node.input[1], _zero_point(node), attribute(node, "axis", 1)
    values = rewriter.arrays[source].astype(np.float64)
    offset = rewriter.arrays[zero_point].astype(np.float64) if zero_point else 0.0
    factor = rewriter.arrays[scale].astype(np.float64)
    if np.ndim(factor) == 1 and np.size(factor) > 1:
        shape = [1] * values.ndim
        shape[axis % values.ndim] = factor.size
        factor = factor.reshape(shape)
        offset = np.reshape(offset, shape) if np.ndim(offset) == 1 else offset
    dequantized = ((values - offset).astype(np.float32) * factor.astype(np.float32)).astype(np.float32)
    rewriter.initializers[node.output[0]] = numpy_helper.from_array(dequantized, node.output[0])
    rewriter.arrays[node.output[0]] = dequantized


def _dequantize(rewriter: Rewriter, node: Any, rank: int | None, coded: bool) -> None:
    """DequantizeLinear of a tensor as ``(x - zero_point) * scale`` in FP32; ``coded``: ``x`` is a
    fake-quantized FP32 tensor already, else an integer one that is cast first."""
    import numpy as np

    source, scale, zero_point = node.input[0], node.input[1], _zero_point(node)
    axis, hint = attribute(node, "axis", 1), node.name or node.output[0]
    value = source if coded else rewriter.add("Cast", [source], hint=hint, to=FLOAT)
    zero = _broadcast(rewriter, zero_point, axis, rank, np.float32, hint) if zero_point else None
    if zero is not None:
        value = rewriter.add("Sub", [value, zero], hint=hint)
    rewriter.add(
        "Mul", [value, _broadcast(rewriter, scale, axis, rank, np.float32, hint)], output=node.output[0], hint=hint
    )
