"""FP16 storage emulated in FP32, for the accuracy gate (``emulate``): every FP16 tensor computed in FP32
from FP16-rounded inputs and rounded to FP16 where it is produced, with a probe per rounded tensor."""

from __future__ import annotations

from typing import Any

from trtbuild.precision.rewrite import FLOAT, FLOAT16, Rewriter, assemble, check_no_subgraphs, elem_types

#: The largest finite FP16 value; values at or above 65520 round to inf (IEEE 754 binary16).
FP16_MAX = 65504.0
PROBE_PREFIX = "trtbuild_fp16_probe:"
#: The node a probe names for an FP16 graph input (rounded where it enters).
GRAPH_INPUT = "(graph input)"
#: Per probe, in this order: peak |x| before rounding, values that became inf, values flushed to 0, values.
PROBE_FIELDS = ("peak", "overflow", "underflow", "size")


def _as_fp32_tensor(tensor: Any) -> Any:
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name)


def fp16_storage(model: Any) -> tuple[Any, dict[str, tuple[str, str]]]:
    """The model with FP16 tensors computed in FP32 and rounded to FP16 where produced, plus its probes."""
    import numpy as np
    from onnx import TensorProto, helper

    types = elem_types(model)
    half = {name for name, element in types.items() if element == FLOAT16}
    if not half:
        return model, {}
    check_no_subgraphs(model)
    rewriter = Rewriter(model)
    for name in list(rewriter.initializers):
        if rewriter.initializers[name].data_type == FLOAT16:
            rewriter.initializers[name] = _as_fp32_tensor(rewriter.initializers[name])
            rewriter.arrays[name] = rewriter.arrays[name].astype(np.float32)
    rounding = _HalfRounding(rewriter)
    half_inputs = [
        value.name for value in model.graph.input if value.name in half and value.name not in rewriter.initializers
    ]
    renamed = {name: rewriter.fresh(f"{name}_fp16") for name in half_inputs}
    for name, rounded_input in renamed.items():  # an FP16 input takes FP32 and is rounded where it enters
        rounding.probes[rounding.round(name, rounded_input, GRAPH_INPUT)] = (GRAPH_INPUT, name)
    for node in model.graph.node:
        node = _fp32_node(node)
        for index, name in enumerate(node.input):
            if name in renamed:
                node.input[index] = renamed[name]
        outputs = list(node.output)
        rounded = [index for index, name in enumerate(outputs) if name in half]
        for index in rounded:
            node.output[index] = rewriter.fresh(f"{outputs[index]}_fp32")
        rewriter.nodes.append(node)
        for index in rounded:
            rounding.round(node.output[index], outputs[index], node.name or node.op_type)
    emulated = assemble(model, rewriter, keep=set(rewriter.initializers))
    for value in (*emulated.graph.input, *emulated.graph.output):
        if value.name not in rewriter.initializers and value.type.tensor_type.elem_type == FLOAT16:
            value.type.tensor_type.elem_type = FLOAT
    for probe in rounding.probes:
        emulated.graph.output.append(helper.make_tensor_value_info(probe, TensorProto.FLOAT, [len(PROBE_FIELDS)]))
    return emulated, rounding.probes


class _HalfRounding:
    """Adds, for one FP32 tensor, its rounding to FP16 and a probe output of ``PROBE_FIELDS``: the peak
    |value| before rounding, how many values overflowed to inf, how many underflowed to 0, the count."""

    def __init__(self, rewriter: Rewriter) -> None:
        import numpy as np

        self.rewriter = rewriter
        self.probes: dict[str, tuple[str, str]] = {}
        self.flat_shape = rewriter.constant("flat", np.array([-1], np.int64))
        self.one = rewriter.constant("one", np.array([1], np.int64))
        self.zero = rewriter.constant("zero", np.array(0, np.float32))

    def round(self, raw: str, rounded: str, node_name: str) -> str:
        """``rounded`` := FP32(FP16(``raw``)); returns the probe's name (recorded in ``probes``)."""
        add = self.rewriter.add
        as_half = add("Cast", [raw], hint=rounded, to=FLOAT16)
        add("Cast", [as_half], output=rounded, hint=rounded, to=FLOAT)
        flat_raw = add("Reshape", [raw, self.flat_shape], hint=rounded)
        flat = add("Reshape", [rounded, self.flat_shape], hint=rounded)
        peak = add("ReduceMax", [add("Abs", [flat_raw], hint=rounded)], hint=rounded, keepdims=0)
        overflow = self._became(flat, flat_raw, "IsInf", [], rounded)
        underflow = self._became(flat, flat_raw, "Equal", [self.zero], rounded)
        size = add("Cast", [add("Size", [flat], hint=rounded)], hint=rounded, to=FLOAT)
        parts = [
            add("Reshape", [peak, self.one], hint=rounded),
            self._count(overflow, rounded),
            self._count(underflow, rounded),
            add("Reshape", [size, self.one], hint=rounded),
        ]
        probe = add("Concat", parts, output=self.rewriter.fresh(f"{PROBE_PREFIX}{rounded}"), hint=rounded, axis=0)
        self.probes[probe] = (node_name, rounded)
        return probe

    def _became(self, flat: str, flat_raw: str, op: str, operands: list[str], hint: str) -> str:
        """Where the rounded value is ``op`` (inf, 0) and the value before rounding was not."""
        add = self.rewriter.add
        raw_was = add("Not", [add(op, [flat_raw, *operands], hint=hint)], hint=hint)
        return add("And", [add(op, [flat, *operands], hint=hint), raw_was], hint=hint)

    def _count(self, mask: str, hint: str) -> str:
        add = self.rewriter.add
        total = add("ReduceSum", [add("Cast", [mask], hint=hint, to=FLOAT)], hint=hint, keepdims=0)
        return add("Reshape", [total, self.one], hint=hint)


def _fp32_node(node: Any) -> Any:
    """A copy of ``node`` that computes in FP32 where it would produce FP16 (casts, constants, dtypes)."""
    from onnx import AttributeProto

    copy = type(node)()
    copy.CopyFrom(node)
    for attribute in copy.attribute:
        if attribute.type == AttributeProto.TENSOR and attribute.t.data_type == FLOAT16:
            attribute.t.CopyFrom(_as_fp32_tensor(attribute.t))
        elif (
            attribute.name in ("to", "dtype", "output_dtype")
            and attribute.type == AttributeProto.INT
            and attribute.i == FLOAT16
        ):
            attribute.i = FLOAT
    return copy
