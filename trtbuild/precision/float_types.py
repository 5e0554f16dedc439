"""Every node's FP32 / FP16 inputs made to agree with its schema's type constraints, after a converter
labelled tensors FP16 that are computed FP32 (``fp16`` fix-up 2): the tensors' element types recomputed
in node order with ONNX's own per-node inference, the odd inputs out converted."""

from __future__ import annotations

from typing import Any

from trtbuild.precision import fp16_values

FLOAT, FLOAT16 = 1, 10


def blocks(node: Any, blocked: set[str], nodes: set[str]) -> bool:
    """Whether ``node`` stays FP32: its op type is in ``blocked`` or its name in ``nodes``."""
    return node.op_type in blocked or node.name in nodes


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
    repair = _Repair(model)
    for node in list(model.graph.node):
        repair.node(node, blocked, kept)
    repair.cast_outputs()
    del model.graph.node[:]
    model.graph.node.extend(repair.nodes)
    for value in model.graph.value_info:
        actual = repair.types.elem(value.name)
        if actual and value.type.HasField("tensor_type") and value.type.tensor_type.elem_type != actual:
            value.type.tensor_type.elem_type = actual
    return repair.fixes


class _Repair:
    """``repair_float_types``' state: the graph's nodes as rebuilt, the tensors' types as computed, the
    converted copies made (one per tensor and type) and the names taken."""

    def __init__(self, model: Any) -> None:
        self.model, self.graph = model, model.graph
        self.opsets = {entry.domain or "": entry.version for entry in model.opset_import}
        self.opsets.setdefault("ai.onnx", self.opsets.get("", 1))
        self.types = _Types(model)
        self.initializers = {tensor.name: tensor for tensor in self.graph.initializer}
        taken = {name for node in self.graph.node for name in (*node.input, *node.output)} | set(self.initializers)
        self.taken = taken | {value.name for value in self.graph.input} | {node.name for node in self.graph.node}
        self.converted: dict[tuple[str, int], str] = {}
        self.nodes: list[Any] = []
        self.fixes = 0

    def fresh(self, base: str) -> str:
        """``base``, or ``base_N``: a name no tensor or node has."""
        name, suffix = base, 0
        while name in self.taken:
            suffix += 1
            name = f"{base}_{suffix}"
        self.taken.add(name)
        return name

    def as_type(self, name: str, elem: int, before: str) -> str:
        """Tensor ``name`` as ``elem``: an FP16 copy of an FP32 initializer, else a ``Cast`` before node ``before``."""
        from onnx import helper, numpy_helper

        if (name, elem) in self.converted:
            return self.converted[(name, elem)]
        label = "fp16" if elem == FLOAT16 else "fp32"
        source = self.initializers.get(name)
        if source is not None and source.data_type == FLOAT and elem == FLOAT16:
            stored = fp16_values.as_converter_stores(numpy_helper.to_array(source))
            copy = numpy_helper.from_array(stored, self.fresh(f"{name}_{label}"))
            self.graph.initializer.append(copy)
            self.initializers[copy.name] = copy
            self.types.known[copy.name] = self.types.retyped(name, elem)
            target = copy.name
        else:
            target = self.fresh(f"{name}_{label}")
            cast = helper.make_node("Cast", [name], [target], to=elem, name=self.fresh(f"{before}_cast_{label}"))
            self.nodes.append(cast)
            self.types.known[target] = self.types.retyped(name, elem)
        self.converted[(name, elem)] = target
        return target

    def node(self, node: Any, blocked: set[str], kept: frozenset[str]) -> None:
        """Convert ``node``'s mixed FLOAT/FLOAT16 inputs of one type parameter, then record its outputs' types."""
        schema = _schema(node, self.opsets)
        groups = _constrained_groups(node, schema) if schema is not None else {}
        for indices in groups.values():
            elems = {self.types.elem(node.input[i]) for i in indices}
            if not {FLOAT, FLOAT16} <= elems:
                continue
            wanted = FLOAT if blocks(node, blocked, set(kept)) else FLOAT16
            for i in indices:
                if self.types.elem(node.input[i]) in (FLOAT, FLOAT16) and self.types.elem(node.input[i]) != wanted:
                    node.input[i] = self.as_type(node.input[i], wanted, node.name)
                    self.fixes += 1
        self.nodes.append(node)
        inferred = _infer_outputs(node, schema, self.types, self.model.opset_import, self.model.ir_version)
        if not inferred:
            inferred = _fallback_outputs(node, schema, self.types, groups)
        for name in node.output:
            if name in inferred:
                self.types.known[name] = inferred[name]

    def cast_outputs(self) -> None:
        """A final ``Cast`` for each graph output whose computed type is not the declared FLOAT/FLOAT16."""
        from onnx import helper

        producers = {name: node for node in self.nodes for name in node.output}
        for output in self.graph.output:
            declared, actual = output.type.tensor_type.elem_type, self.types.elem(output.name)
            floats = declared in (FLOAT, FLOAT16) and actual in (FLOAT, FLOAT16)
            if not floats or actual == declared or output.name not in producers:
                continue
            assert actual is not None
            producer = producers[output.name]
            inner = self.fresh(f"{output.name}_{'fp16' if actual == FLOAT16 else 'fp32'}")
            producer.output[list(producer.output).index(output.name)] = inner
            for node in self.nodes:
                for i, name in enumerate(node.input):
                    if name == output.name:
                        node.input[i] = inner
            self.nodes.append(
                helper.make_node("Cast", [inner], [output.name], to=declared, name=self.fresh(f"{output.name}_cast"))
            )
            self.types.known[inner] = self.types.retyped(output.name, actual)
            self.fixes += 1
