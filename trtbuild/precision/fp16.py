"""FP32 ONNX -> FP16 ONNX for strongly typed builders (TensorRT >= 11, TensorRT-RTX).

Strongly typed builders take tensor types from the network, so FP16 must be in the ONNX. The conversion
is onnxconverter-common's ``convert_float_to_float16`` with:

- ``keep_io_types=True``: the model's inputs and outputs stay FP32 (callers' pre/post-processing is
  unchanged; the engine casts at the edges);
- a block list of numerically sensitive ops kept in FP32 (reductions, powers, exponentials and the
  index arithmetic of ``Range``/``CumSum``), with casts inserted around them by the converter.

Before it, ``validate.normalize``: initializers leave the graph inputs (IR 3 models) and every node gets
a unique name; the converter fails on both otherwise (see ``trtbuild.precision.validate``).

No constant changes silently (``trtbuild.precision.fp16_values``): the converter stores constants with
FP16's own limits instead of its defaults (which clamp to +-1e4), every node that reads a constant FP16
cannot hold (beyond 65504, or a whole tensor in the subnormal range) is kept FP32 through the
converter's ``node_block_list``, and after the conversion every FP16 constant is compared with the FP32
value it came from; any other change fails the step naming the tensor and its value.

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
from typing import Any, NamedTuple

from trtbuild.errors import BuildError
from trtbuild.precision import fp16_values, validate

#: Ops kept in FP32, on top of onnxconverter-common's DEFAULT_OP_BLOCK_LIST.
SENSITIVE_OPS = ("Pow", "Sqrt", "ReduceMean", "ReduceSum", "ReduceL2", "Exp", "Log", "Range", "CumSum")
#: Changes whenever this module's conversion changes; part of the conversion's key.
VERSION = 3

FLOAT, FLOAT16 = 1, 10


def block_list() -> list[str]:
    """The op types kept in FP32."""
    from onnxconverter_common import float16

    return sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(SENSITIVE_OPS))


def already_fp16(model: Any) -> str:
    """What makes ``model`` (an ``onnx.ModelProto``) an FP16 model already, or ``""`` when nothing does.

    FP16 already: it stores FP16 weights (initializers or ``Constant`` tensors of the main graph), or a
    graph input or output is FP16 (a model converted without FP32 I/O). Such a model is built as it is:
    the FP16 step writes it unchanged, since converting again is refused by onnxconverter-common
    ("already converted to float16") and could only re-round what is FP16 already. A model whose only
    FP16 is a ``Cast`` inside an FP32 graph is not FP16: it is converted (and onnxconverter-common refuses).

    Returns:
        e.g. ``"12 FP16 weights, FP16 inputs ['input']"``.
    """
    graph = model.graph
    weights = sum(tensor.data_type == FLOAT16 for tensor in graph.initializer)
    weights += sum(
        attribute.t.data_type == FLOAT16
        for node in graph.node
        if node.op_type == "Constant"
        for attribute in node.attribute
        if attribute.HasField("t")
    )
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [
        value.name
        for value in graph.input
        if value.name not in initializers and value.type.tensor_type.elem_type == FLOAT16
    ]
    outputs = [value.name for value in graph.output if value.type.tensor_type.elem_type == FLOAT16]
    found = [f"{weights} FP16 weights"] if weights else []
    found += [f"FP16 inputs {inputs}"] if inputs else []
    found += [f"FP16 outputs {outputs}"] if outputs else []
    return ", ".join(found)


def _blocks(node: Any, blocked: set[str], nodes: set[str]) -> bool:
    """Whether ``node`` stays FP32: its op type is in ``blocked`` or its name in ``nodes``."""
    return node.op_type in blocked or node.name in nodes


def _retarget_internal_casts(model: Any, blocked: set[str], nodes: set[str]) -> int:
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
        if (
            to.i == FLOAT
            and users
            and not _blocks(node, blocked, nodes)
            and not any(_blocks(user, blocked, nodes) for user in users)
        ):
            to.i = FLOAT16
            changed += 1
    return changed


def _skip_fp16_round_trips(model: Any, nodes: set[str]) -> int:
    """Let FP32 readers of a kept node's output read it directly, not through ``Cast`` to FP16 and back.

    onnxconverter-common casts every output of a blocked node to FP16 and casts it back to FP32 before
    each blocked reader, so a ``Constant`` kept FP32 because FP16 cannot hold it (``nodes``) would still
    reach its FP32 readers as inf. Such a ``Cast(to=FLOAT)`` of a ``Cast(to=FLOAT16)`` of a kept node's
    output is pointed at the FP32 output itself (a Cast to the same type is an identity); returns how many.
    """
    graph = model.graph
    producers = {name: node for node in graph.node for name in node.output}
    skipped = 0
    for node in graph.node:
        inner = producers.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if inner is None or inner.op_type != "Cast" or not inner.input:
            continue
        origin = producers.get(inner.input[0])
        if origin is None or origin.name not in nodes:
            continue
        to = {attribute.name: attribute.i for attribute in node.attribute}.get("to")
        inner_to = {attribute.name: attribute.i for attribute in inner.attribute}.get("to")
        if to == FLOAT and inner_to == FLOAT16:
            node.input[0] = inner.input[0]
            skipped += 1
    read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    unread = [node for node in graph.node if node.op_type == "Cast" and not set(node.output) & read]
    for node in unread:  # the casts to FP16 nothing reads any more
        graph.node.remove(node)
    return skipped


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


def repair_float_types(model: Any, blocked: set[str], kept: frozenset[str] = frozenset()) -> int:
    """Make every node's FP32/FP16 inputs agree with its schema's type constraints; returns the fixes made.

    Walks the main graph in node order (ONNX requires topological order) recomputing each tensor's type
    with ``onnx.shape_inference.infer_node_outputs``. Where inputs bound to one type parameter mix FLOAT
    and FLOAT16, the inputs of the other type are converted: to FLOAT for ops in ``blocked``, else to
    FLOAT16 (the choice the converter made for the node itself); ``kept`` names nodes kept FP32 like
    ``blocked`` op types. An FP32 initializer gets an FP16 copy (stored as the converter stores it,
    ``fp16_values.as_converter_stores``); anything else a ``Cast`` inserted before the node. Graph
    outputs whose computed type differs from the declared FLOAT/FLOAT16 get a final ``Cast``.
    ``value_info`` is corrected to the computed types.
    Subgraph bodies are not entered (their nodes are left as the converter made them).
    """
    from onnx import helper, numpy_helper

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
            stored = fp16_values.as_converter_stores(numpy_helper.to_array(source))
            copy = numpy_helper.from_array(stored, fresh(f"{name}_{label}"))
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
            wanted = FLOAT if _blocks(node, blocked, set(kept)) else FLOAT16
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


class Conversion(NamedTuple):
    """What ``convert`` made.

    Attributes:
        model: the FP16 ``onnx.ModelProto``.
        unheld: the constants FP16 cannot hold (``fp16_values.unheld``), for the step's log.
        kept: the names of the nodes kept FP32 for them.
    """

    model: Any
    unheld: list[fp16_values.Change]
    kept: set[str]


def convert(model: Any) -> Conversion:
    """The FP16 version of ``model`` (an ``onnx.ModelProto``, left unchanged), I/O kept FP32.

    Input and output names, shapes and FP32 types are kept; weights and internal tensors become FP16
    except around ``block_list()`` ops and the nodes that read a constant FP16 cannot hold
    (``fp16_values.unheld``: beyond 65504, or whose whole scale is subnormal), which stay FP32. The
    converter stores constants with FP16's own limits (``max_finite_val=65504``, ``min_positive_val=2**-24``)
    instead of its defaults (1e4, 1e-7), which would clamp e.g. a weight of 30000 to 10000. See the
    module's docstring for the steps.

    Raises:
        ValueError: from onnxconverter-common when the model cannot be converted (e.g. it is already
            FP16). Other onnxconverter-common failures surface as their own exception types
            (``AssertionError``, ``KeyError``); the child turns all of them into a BuildError.
        BuildError: the converted model stores a constant whose value is not the source's up to FP16
            rounding (``check_values``).
    """
    import onnx
    from onnxconverter_common import float16

    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    validate.normalize(prepared)
    source = onnx.ModelProto()
    source.CopyFrom(prepared)
    blocked = block_list()
    unheld, kept = fp16_values.unheld(prepared)
    converted = float16.convert_float_to_float16(
        prepared,
        min_positive_val=fp16_values.MIN_POSITIVE,
        max_finite_val=fp16_values.MAX_FINITE,
        keep_io_types=True,
        op_block_list=blocked,
        node_block_list=sorted(kept),
    )
    _retarget_internal_casts(converted, set(blocked), kept)
    _skip_fp16_round_trips(converted, kept)
    repair_float_types(converted, set(blocked), frozenset(kept))
    check_values(source, converted)
    return Conversion(converted, unheld, kept)


def check_values(source: Any, converted: Any) -> None:
    """Refuse a conversion that changed a constant beyond FP16 rounding.

    Args:
        source: the FP32 ``onnx.ModelProto`` the conversion read (normalised: unique node names).
        converted: what the conversion made of it.

    Raises:
        BuildError: naming every changed tensor, its node and value (``fp16_values.changes``), at most five.
    """
    changed = fp16_values.changes(source, converted)
    if changed:
        listed = "; ".join(change.describe() for change in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise BuildError(
            f"FP16 conversion changed {len(changed)} constants beyond FP16 rounding: {listed}{more}; "
            "keep their nodes in FP32 or rescale the network"
        )


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
