"""The engine's arithmetic, emulated in plain FP32 graphs, so the accuracy gate says the same on every CPU.

ONNX Runtime is not the engine. Run as it is, it decides verdicts by host kernels:

- its CPU provider computes an FP16 graph in FP32 (FP16 nodes are cast up), so an FP16 activation above
  65504 never becomes inf and nothing is ever flushed to zero;
- its default graph optimizations fuse ``DequantizeLinear -> Conv -> QuantizeLinear`` into its own int8
  kernels (``QLinearConv``), chosen per instruction set: on an AVX2-only CPU the u8s8 kernels saturate
  int16 intermediates, so the same Q/DQ ONNX scores differently on AVX2, AVX-512 and aarch64 hosts.

``emulate`` rewrites a reduced-precision ONNX into an FP32-only graph that performs the arithmetic a
strongly typed TensorRT engine performs, op by op, with nothing left for a host kernel to decide:

- **FP16 storage** (``fp16-storage``): every FP16 tensor is computed in FP32 from FP16-rounded inputs and
  rounded to FP16 where it is produced (``Cast`` to FLOAT16 and back), FP16 initializers become their exact
  FP32 values, tensors kept FP32 by the conversion stay FP32; an FP16 graph input (a model converted
  without FP32 I/O) is declared FP32 and rounded to FP16 where it enters, so the FP32 images fed give
  what the engine computes from them cast to FP16. This is TensorRT's FP16 layer contract
  (FP16 in, FP16 out, accumulation at least as wide as FP16) with FP32 accumulation, the tensor-core
  case. For every rounded tensor a probe output reports its peak magnitude and how many values
  overflowed to inf or were flushed to zero by the rounding, so the gate can name the node.
- **INT8 fake quantization** (``int8-fake-quant``): every ``QuantizeLinear`` becomes
  ``Clip(Round(x / scale) + zero_point, qmin, qmax)`` and every ``DequantizeLinear``
  ``(q - zero_point) * scale``, in FP32 (ONNX operator spec for both; ``Round`` is round-half-to-even as
  QuantizeLinear and TensorRT's IQuantizeLayer specify); int8 weights behind a ``DequantizeLinear`` are
  folded to their FP32 values. Everything else computes in FP32, as TensorRT's int8 kernels (int32
  accumulation of exact int8 products) do up to FP32 rounding. This is "fake quantization" (Jacob et al.,
  "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", 2018).

Sessions over the result are created with graph optimizations off (``session``), so ONNX Runtime runs
exactly these ops. The remaining host dependence is FP32 summation order inside Conv/MatMul, a few ulps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trtbuild.errors import BuildError

FLOAT, INT8, UINT8, INT16, UINT16, FLOAT16 = 1, 3, 2, 5, 4, 10
#: Integer ranges of Q/DQ element types (ONNX QuantizeLinear: saturate to the output type's range).
QUANT_RANGES = {INT8: (-128, 127), UINT8: (0, 255), INT16: (-32768, 32767), UINT16: (0, 65535)}
#: The largest finite FP16 value; values at or above 65520 round to inf (IEEE 754 binary16).
FP16_MAX = 65504.0
#: The lowest opset whose Q/DQ carry ``axis`` and whose Clip takes min/max as inputs.
MIN_OPSET = 13
PROBE_PREFIX = "trtbuild_fp16_probe:"
#: The node a probe names for an FP16 graph input (rounded where it enters).
GRAPH_INPUT = "(graph input)"
#: Per probe, in this order: peak |x| before rounding, values that became inf, values flushed to 0, values.
PROBE_FIELDS = ("peak", "overflow", "underflow", "size")

FP16_STORAGE = "fp16-storage"
INT8_FAKE_QUANT = "int8-fake-quant"
FP32 = "fp32"
DESCRIPTIONS = {
    FP16_STORAGE: "FP16 storage emulated: every FP16 tensor rounded to FP16 where it is produced, computed in FP32",
    INT8_FAKE_QUANT: "INT8 Q/DQ emulated as fake quantization in FP32 (round half to even, saturate), no int8 kernels",
    FP32: "FP32, as the model is",
}


@dataclass
class Emulated:
    """An FP32-only model that computes what the reduced-precision engine computes.

    Attributes:
        model: the rewritten ``onnx.ModelProto``; its first outputs are the original ones, in order.
        kinds: the emulations applied (``fp16-storage``, ``int8-fake-quant``), empty for a plain FP32 model.
        probes: probe output name -> (node name, tensor name) of an FP16-rounded tensor; each probe is a
            float vector ``[peak, overflow, underflow, size]`` (``PROBE_FIELDS``).
    """

    model: Any
    kinds: list[str] = field(default_factory=list)
    probes: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """One line per emulation applied, for reports."""
        return "; ".join(DESCRIPTIONS[kind] for kind in self.kinds or [FP32])


class _Rewriter:
    """Builds the emulated graph node by node; names it adds never collide with the model's."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.graph = model.graph
        self.nodes: list[Any] = []
        self.initializers = {tensor.name: tensor for tensor in self.graph.initializer}
        self.arrays = {name: numpy_helper.to_array(tensor) for name, tensor in self.initializers.items()}
        self.used = {name for node in self.graph.node for name in (*node.input, *node.output)}
        self.used |= set(self.initializers) | {value.name for value in self.graph.input}
        self._counter = 0

    def fresh(self, hint: str) -> str:
        """A tensor or node name not used anywhere in the graph yet."""
        while True:
            self._counter += 1
            name = f"{hint}__emu{self._counter}"
            if name not in self.used:
                self.used.add(name)
                return name

    def constant(self, hint: str, array: Any) -> str:
        """Add ``array`` as an initializer; returns its name."""
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.initializers[name] = numpy_helper.from_array(array, name)
        self.arrays[name] = array
        return name

    def add(self, op: str, inputs: list[str], output: str | None = None, hint: str = "t", **attributes: Any) -> str:
        """Append a node; returns its output's name."""
        from onnx import helper

        output = output or self.fresh(hint)
        self.nodes.append(helper.make_node(op, inputs, [output], name=self.fresh(f"{hint}_{op}"), **attributes))
        return output


def _opset(model: Any) -> int:
    return max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def _elem_types(model: Any) -> dict[str, int]:
    """Tensor name -> ONNX element type, from the graph and ONNX shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {tensor.name: tensor.data_type for tensor in model.graph.initializer}
    for value in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):  # the graph's I/O win
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    return types


def _ranks(model: Any) -> dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {tensor.name: len(tensor.dims) for tensor in model.graph.initializer}
    for value in (*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _check_no_subgraphs(model: Any) -> None:
    from onnx import AttributeProto

    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                raise BuildError(
                    f"the accuracy gate cannot emulate node {node.name or node.op_type!r}: "
                    f"{node.op_type} carries a subgraph"
                )


# ---------------------------------------------------------------------------------------------- INT8


def _broadcast(rewriter: _Rewriter, name: str, axis: int, rank: int | None, dtype: Any, hint: str) -> str:
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


def _fake_quantize(model: Any) -> tuple[Any, bool]:
    """The model with every Q/DQ pair as FP32 fake quantization; (model, whether any Q/DQ was found)."""
    graph = model.graph
    if not any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node):
        return model, False
    _check_pairs(graph)
    types, ranks = _elem_types(model), _ranks(model)
    rewriter = _Rewriter(model)
    float_coded: set[str] = set()  # QuantizeLinear outputs, now FP32 tensors holding integers
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            rewriter.nodes.append(node)
            continue
        if _attribute(node, "block_size", 0):
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
    return _assemble(model, rewriter, keep=still_used), True


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


def _quantize(rewriter: _Rewriter, node: Any, types: dict[str, int], rank: int | None) -> None:
    """QuantizeLinear as ``Clip(Round(x / scale) + zero_point, low, high)`` in FP32, the integers it
    would hold (ONNX's QuantizeLinear: round half to even, saturate to the element type's range)."""
    import numpy as np

    source, scale, zero_point = node.input[0], node.input[1], _zero_point(node)
    axis, hint = _attribute(node, "axis", 1), node.name or node.output[0]
    element = types.get(zero_point, UINT8) if zero_point else _attribute(node, "output_dtype", 0) or UINT8
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


def _fold_dequantize(rewriter: _Rewriter, node: Any) -> None:
    """DequantizeLinear of a constant (INT8 weights) folded into an FP32 initializer: ``(q - zero) * scale``."""
    import numpy as np
    from onnx import numpy_helper

    source, scale, zero_point, axis = node.input[0], node.input[1], _zero_point(node), _attribute(node, "axis", 1)
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


def _dequantize(rewriter: _Rewriter, node: Any, rank: int | None, coded: bool) -> None:
    """DequantizeLinear of a tensor as ``(x - zero_point) * scale`` in FP32; ``coded``: ``x`` is a
    fake-quantized FP32 tensor already, else an integer one that is cast first."""
    import numpy as np

    source, scale, zero_point = node.input[0], node.input[1], _zero_point(node)
    axis, hint = _attribute(node, "axis", 1), node.name or node.output[0]
    value = source if coded else rewriter.add("Cast", [source], hint=hint, to=FLOAT)
    zero = _broadcast(rewriter, zero_point, axis, rank, np.float32, hint) if zero_point else None
    if zero is not None:
        value = rewriter.add("Sub", [value, zero], hint=hint)
    rewriter.add(
        "Mul", [value, _broadcast(rewriter, scale, axis, rank, np.float32, hint)], output=node.output[0], hint=hint
    )


# ---------------------------------------------------------------------------------------------- FP16


def _as_fp32_tensor(tensor: Any) -> Any:
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name)


def _fp16_storage(model: Any) -> tuple[Any, dict[str, tuple[str, str]]]:
    """The model with FP16 tensors computed in FP32 and rounded to FP16 where produced, plus its probes."""
    import numpy as np
    from onnx import TensorProto, helper

    types = _elem_types(model)
    half = {name for name, element in types.items() if element == FLOAT16}
    if not half:
        return model, {}
    _check_no_subgraphs(model)
    rewriter = _Rewriter(model)
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
    emulated = _assemble(model, rewriter, keep=set(rewriter.initializers))
    for value in (*emulated.graph.input, *emulated.graph.output):
        if value.name not in rewriter.initializers and value.type.tensor_type.elem_type == FLOAT16:
            value.type.tensor_type.elem_type = FLOAT
    for probe in rounding.probes:
        emulated.graph.output.append(helper.make_tensor_value_info(probe, TensorProto.FLOAT, [len(PROBE_FIELDS)]))
    return emulated, rounding.probes


class _HalfRounding:
    """Adds, for one FP32 tensor, its rounding to FP16 and a probe output of ``PROBE_FIELDS``: the peak
    |value| before rounding, how many values overflowed to inf, how many underflowed to 0, the count."""

    def __init__(self, rewriter: _Rewriter) -> None:
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


# ---------------------------------------------------------------------------------------------- both


def _assemble(model: Any, rewriter: _Rewriter, keep: set[str]) -> Any:
    """A copy of ``model`` with the rewriter's nodes and the initializers in ``keep``; value_info dropped
    (element types changed), ONNX Runtime infers it again."""
    from onnx import ModelProto

    emulated = ModelProto()
    emulated.CopyFrom(model)
    graph = emulated.graph
    del graph.node[:]
    graph.node.extend(rewriter.nodes)
    del graph.initializer[:]
    graph.initializer.extend(tensor for name, tensor in rewriter.initializers.items() if name in keep)
    del graph.value_info[:]
    initializer_names = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializer_names or value.name in keep]
    del graph.input[:]
    graph.input.extend(inputs)
    return emulated


def emulate(model: Any) -> Emulated:
    """Rewrite ``model`` (a reduced-precision ``onnx.ModelProto``: FP16 tensors and/or INT8 Q/DQ) into an
    FP32-only model computing what the engine computes; see the module docstring.

    Shapes are unchanged: the emulated model takes the same inputs, all FP32 (an FP16 input is declared
    FP32 and rounded to FP16 where it enters, with a probe), and gives the same outputs first, all FP32,
    then one ``[4]`` probe per FP16-rounded tensor. Models below opset 13 are converted to 13 first.

    Raises:
        BuildError: a construct the emulation does not cover (subgraphs with FP16 tensors, computed Q/DQ
            scales, blocked quantization, a QuantizeLinear not followed by a DequantizeLinear).
    """
    from onnx import ModelProto, version_converter

    given, model = model, ModelProto()
    model.CopyFrom(given)
    del model.graph.value_info[:]  # derived data, and converters leave stale types in it; inferred again below
    if _opset(model) < MIN_OPSET:
        model = version_converter.convert_version(model, MIN_OPSET)
    kinds = []
    model, quantized = _fake_quantize(model)
    if quantized:
        kinds.append(INT8_FAKE_QUANT)
    model, probes = _fp16_storage(model)
    if probes:
        kinds.insert(0, FP16_STORAGE)
    return Emulated(model=model, kinds=kinds, probes=probes)


def session(model: Any) -> Any:
    """An ONNX Runtime CPU session over ``model`` (a ``ModelProto`` or a path) with graph optimizations
    off, so it runs exactly the graph's ops: no fusion into ONNX Runtime's own int8 or FP16 kernels
    (``GraphOptimizationLevel.ORT_DISABLE_ALL``, ONNX Runtime "Graph Optimizations")."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
