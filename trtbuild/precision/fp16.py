"""FP32 ONNX -> FP16 ONNX for strongly typed builders (TensorRT >= 11, TensorRT-RTX).

Strongly typed builders take tensor types from the network, so FP16 must be in the ONNX. The conversion
is onnxconverter-common's ``convert_float_to_float16`` with:

- ``keep_io_types=True``: the model's inputs and outputs stay FP32 (callers' pre/post-processing is
  unchanged; the engine casts at the edges);
- a block list of numerically sensitive ops kept in FP32 (reductions, powers, exponentials and the
  index arithmetic of ``Range``/``CumSum``), with casts inserted around them by the converter.

Before it, ``validate.normalize``: initializers leave the graph inputs (IR 3 models) and every node gets
a unique name; the converter fails on both otherwise (see ``trtbuild.precision.validate``).

Two fix-ups follow.

1. The converter turns ``Constant`` nodes to FP16 but leaves an exporter's own ``Cast(to=FLOAT)``
   untouched, so e.g. a YOLO head's ``Cast(Range) + Constant`` anchor grid ends up FP32 + FP16, which
   strongly typed builders reject ("ElementWiseOperation SUM must have same input types"). Every such
   internal cast is retargeted to FP16 unless it feeds a blocked op or a graph output.
2. The converter decides types from shape inference's ``value_info`` and keeps an initializer FP32 when
   any consumer is a blocked op, yet labels its other consumers' outputs FP16 and converts their other
   inputs. YOLO-World's ``logit_scale`` is one initializer read by ``Exp`` and by ``Identity`` nodes
   (PyTorch's exporter shares equal parameters so): the ``Identity`` outputs are labelled FP16 but
   computed FP32 (ONNX Runtime: "Type (tensor(float16)) of output arg ... does not match expected type
   (tensor(float))"), and an FP32 ``Identity`` output read by a ``Mul`` with an FP16 input mixes types.
   ``repair_float_types`` recomputes every tensor's element type in node order with ONNX's own per-node
   inference, and wherever inputs that an op's schema binds to one type parameter mix FP32 and FP16 it
   converts the odd ones out: to FP32 for a blocked op, else to FP16 (an FP32 initializer gets an FP16
   copy clamped like the converter's, any other tensor a ``Cast``). ``value_info`` entries are corrected
   to the recomputed types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtbuild.precision import validate

#: Ops kept in FP32, on top of onnxconverter-common's DEFAULT_OP_BLOCK_LIST.
SENSITIVE_OPS = ("Pow", "Sqrt", "ReduceMean", "ReduceSum", "ReduceL2", "Exp", "Log", "Range", "CumSum")
#: Changes whenever this module's conversion changes; part of the conversion's key.
VERSION = 2

FLOAT, FLOAT16 = 1, 10
#: The converter's clamping of FP32 constants into the FP16 range (its defaults).
MIN_POSITIVE, MAX_FINITE = 1e-7, 1e4


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


class _Types:
    """Element types and shapes of the graph's tensors, as known so far."""

    def __init__(self, model: Any) -> None:
        from onnx import TypeProto

        graph = model.graph
        self.known: dict[str, Any] = {}  # name -> TypeProto
        self.hints = {value.name: value.type for value in graph.value_info}  # the converter's, possibly wrong
        for value in graph.input:
            self.known[value.name] = value.type
        for tensor in graph.initializer:
            proto = TypeProto()
            proto.tensor_type.elem_type = tensor.data_type
            for dim in tensor.dims:
                proto.tensor_type.shape.dim.add().dim_value = dim
            self.known[tensor.name] = proto

    def elem(self, name: str) -> int | None:
        proto = self.known.get(name)
        if proto is None or not proto.HasField("tensor_type"):
            return None
        return proto.tensor_type.elem_type

    def retyped(self, name: str, elem: int) -> Any:
        """A TypeProto for ``name`` with element type ``elem`` and its known (or hinted) shape."""
        from onnx import TypeProto

        proto = TypeProto()
        source = self.known.get(name, self.hints.get(name))
        if source is not None and source.HasField("tensor_type"):
            proto.CopyFrom(source)
        proto.tensor_type.elem_type = elem
        return proto


def _schema(node: Any, opsets: dict[str, int]) -> Any:
    from onnx import defs

    try:
        return defs.get_schema(node.op_type, opsets.get(node.domain, opsets.get("", 1)), node.domain)
    except defs.SchemaError:
        return None  # a custom domain's op: no constraints known


def _constrained_groups(node: Any, schema: Any) -> dict[str, list[int]]:
    """Type parameter (``T``) -> the indices of the node's inputs that the schema binds to it."""
    from onnx.defs import OpSchema

    params = {constraint.type_param_str for constraint in schema.type_constraints}
    formals = list(schema.inputs)
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(node.input):
        if not name or not formals:
            continue
        formal = formals[min(index, len(formals) - 1)]
        if index >= len(formals) and formal.option != OpSchema.FormalParameterOption.Variadic:
            continue
        if formal.option == OpSchema.FormalParameterOption.Variadic and not formal.is_homogeneous:
            continue
        if formal.type_str in params:
            groups.setdefault(formal.type_str, []).append(index)
    return groups


def _infer_outputs(node: Any, schema: Any, types: _Types, opset_imports: Any, ir_version: int) -> dict[str, Any]:
    """ONNX's own inference for one node (``onnx.shape_inference.infer_node_outputs``); {} when it fails."""
    from onnx import shape_inference

    if schema is None or any(name and name not in types.known for name in node.input):
        return {}
    inputs = {name: types.known[name] for name in node.input if name}
    try:
        return shape_inference.infer_node_outputs(
            schema, node, inputs, opset_imports=list(opset_imports), ir_version=ir_version
        )
    except Exception:  # noqa: BLE001 - inference errors of every kind mean "not known here"
        return {}


def _fallback_outputs(node: Any, schema: Any, types: _Types, groups: dict[str, list[int]]) -> dict[str, Any]:
    """Output types by the schema's type parameters when ONNX's inference could not run."""
    found = {}
    formals = list(schema.outputs) if schema is not None else []
    for index, name in enumerate(node.output):
        if not name:
            continue
        formal = formals[min(index, len(formals) - 1)] if formals else None
        bound = groups.get(formal.type_str, []) if formal is not None else []
        elems = {elem for i in bound if (elem := types.elem(node.input[i])) is not None}
        if len(elems) == 1:
            found[name] = types.retyped(name, elems.pop())
        elif name in types.hints:
            found[name] = types.hints[name]
    return found


def repair_float_types(model: Any, blocked: set[str]) -> int:
    """Make every node's FP32/FP16 inputs agree with its schema's type constraints; returns the fixes made.

    Walks the main graph in node order (ONNX requires topological order) recomputing each tensor's type
    with ``onnx.shape_inference.infer_node_outputs``. Where inputs bound to one type parameter mix FLOAT
    and FLOAT16, the inputs of the other type are converted: to FLOAT for ops in ``blocked``, else to
    FLOAT16 (the choice the converter made for the node itself). An FP32
    initializer gets an FP16 copy (values clamped to +-1e4 and 1e-7 as onnxconverter-common does);
    anything else a ``Cast`` inserted before the node. Graph outputs whose computed type differs from the
    declared FLOAT/FLOAT16 get a final ``Cast``. ``value_info`` is corrected to the computed types.
    Subgraph bodies are not entered (their nodes are left as the converter made them).
    """
    from onnx import helper, numpy_helper
    from onnxconverter_common import float16

    graph = model.graph
    opsets = {entry.domain or "": entry.version for entry in model.opset_import}
    opsets.setdefault("ai.onnx", opsets.get("", 1))
    types = _Types(model)
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    taken = {name for node in graph.node for name in (*node.input, *node.output)} | set(initializers)
    taken |= {value.name for value in graph.input} | {node.name for node in graph.node}  # new tensors' and nodes' names
    converted: dict[tuple[str, int], str] = {}
    nodes: list[Any] = []
    fixes = 0

    def fresh(base: str) -> str:
        name, suffix = base, 0
        while name in taken:
            suffix += 1
            name = f"{base}_{suffix}"
        taken.add(name)
        return name

    def as_type(name: str, elem: int, before: str) -> str:
        if (name, elem) in converted:
            return converted[(name, elem)]
        label = "fp16" if elem == FLOAT16 else "fp32"
        source = initializers.get(name)
        if source is not None and source.data_type == FLOAT and elem == FLOAT16:
            copy = numpy_helper.from_array(numpy_helper.to_array(source), fresh(f"{name}_{label}"))
            float16.convert_tensor_float_to_float16(copy, MIN_POSITIVE, MAX_FINITE)
            graph.initializer.append(copy)
            initializers[copy.name] = copy
            types.known[copy.name] = types.retyped(name, elem)
            target = copy.name
        else:
            target = fresh(f"{name}_{label}")
            nodes.append(helper.make_node("Cast", [name], [target], to=elem, name=fresh(f"{before}_cast_{label}")))
            types.known[target] = types.retyped(name, elem)
        converted[(name, elem)] = target
        return target

    for node in list(graph.node):
        schema = _schema(node, opsets)
        groups = _constrained_groups(node, schema) if schema is not None else {}
        for indices in groups.values():
            elems = {types.elem(node.input[i]) for i in indices}
            if not {FLOAT, FLOAT16} <= elems:
                continue
            wanted = FLOAT if node.op_type in blocked else FLOAT16
            for i in indices:
                if types.elem(node.input[i]) in (FLOAT, FLOAT16) and types.elem(node.input[i]) != wanted:
                    node.input[i] = as_type(node.input[i], wanted, node.name)
                    fixes += 1
        nodes.append(node)
        inferred = _infer_outputs(node, schema, types, model.opset_import, model.ir_version)
        if not inferred:
            inferred = _fallback_outputs(node, schema, types, groups)
        for name in node.output:
            if name in inferred:
                types.known[name] = inferred[name]

    producers = {name: node for node in nodes for name in node.output}
    for output in graph.output:
        declared, actual = output.type.tensor_type.elem_type, types.elem(output.name)
        if (
            declared in (FLOAT, FLOAT16)
            and actual in (FLOAT, FLOAT16)
            and actual != declared
            and output.name in producers
        ):
            producer = producers[output.name]
            inner = fresh(f"{output.name}_{'fp16' if actual == FLOAT16 else 'fp32'}")
            producer.output[list(producer.output).index(output.name)] = inner
            for node in nodes:
                for i, name in enumerate(node.input):
                    if name == output.name:
                        node.input[i] = inner
            nodes.append(
                helper.make_node("Cast", [inner], [output.name], to=declared, name=fresh(f"{output.name}_cast"))
            )
            types.known[inner] = types.retyped(output.name, actual)
            fixes += 1
    del graph.node[:]
    graph.node.extend(nodes)

    for value in graph.value_info:
        actual = types.elem(value.name)
        if actual and value.type.HasField("tensor_type") and value.type.tensor_type.elem_type != actual:
            value.type.tensor_type.elem_type = actual
    return fixes


def convert(model: Any) -> Any:
    """The FP16 version of ``model`` (an ``onnx.ModelProto``, left unchanged), I/O kept FP32.

    Input and output names, shapes and FP32 types are kept; weights and internal tensors become FP16
    except around ``block_list()`` ops. See the module's docstring for the steps.

    Raises:
        ValueError: from onnxconverter-common when the model cannot be converted (e.g. it is already
            FP16). Other onnxconverter-common failures surface as their own exception types
            (``AssertionError``, ``KeyError``); the child turns all of them into a BuildError.
    """
    import onnx
    from onnxconverter_common import float16

    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    validate.normalize(prepared)
    blocked = block_list()
    converted = float16.convert_float_to_float16(prepared, keep_io_types=True, op_block_list=blocked)
    _retarget_internal_casts(converted, set(blocked))
    repair_float_types(converted, set(blocked))
    return converted


def convert_autocast(source: Path, feeds: list[dict[str, Any]], scratch: Path) -> Any:
    """The FP16 version of the ONNX at ``source`` by NVIDIA ModelOpt's AutoCast, I/O kept FP32.

    AutoCast (``modelopt.onnx.autocast.convert_to_mixed_precision``) runs the model on ``feeds`` (one
    ``{input: array}`` per image, written as ``.npz`` files into ``scratch``) and keeps in FP32 every node
    whose values leave its safe range (``data_max``, default 512) — what NVIDIA recommends for strongly
    typed TensorRT. Without data it would feed random inputs with dynamic dimensions set to 1, which
    fails on YOLO heads (mismatched Concat dimensions), so calibration images are required.

    Raises:
        ModuleNotFoundError: ModelOpt is not installed.
        Exception: whatever AutoCast raises (the child turns it into a BuildError).
    """
    import numpy as np
    from modelopt.onnx.autocast import convert_to_mixed_precision

    folder = scratch / "calibration"
    folder.mkdir()
    for index, feed in enumerate(feeds):
        np.savez(folder / f"{index:04d}.npz", **feed)
    return convert_to_mixed_precision(
        onnx_path=str(source),
        low_precision_type="fp16",
        keep_io_types=True,
        calibration_data=str(folder),
        providers=["cpu"],
    )
