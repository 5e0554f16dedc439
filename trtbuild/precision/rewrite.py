"""Rewriting an ONNX graph node by node, for the accuracy gate's emulations (``emulate``): fresh names that
never collide with the model's, the tensors' element types and ranks, the rewritten model assembled."""

from __future__ import annotations

from typing import Any

from trtbuild.errors import BuildError

#: ONNX ``TensorProto`` element types the emulations read and write.
FLOAT, INT8, UINT8, INT16, UINT16, FLOAT16 = 1, 3, 2, 5, 4, 10


class Rewriter:
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


def opset_of(model: Any) -> int:
    """The model's default-domain opset."""
    return max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def elem_types(model: Any) -> dict[str, int]:
    """Tensor name -> ONNX element type, from the graph and ONNX shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {tensor.name: tensor.data_type for tensor in model.graph.initializer}
    for value in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):  # the graph's I/O win
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    return types


def ranks_of(model: Any) -> dict[str, int]:
    """Tensor name -> rank, from the graph and ONNX shape inference (tensors of unknown rank left out)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {tensor.name: len(tensor.dims) for tensor in model.graph.initializer}
    for value in (*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks


def attribute(node: Any, name: str, default: Any) -> Any:
    """The value of ``node``'s attribute ``name``, ``default`` when it has none."""
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def check_no_subgraphs(model: Any) -> None:
    """Raises ``BuildError`` naming the first node that carries a subgraph (If, Loop, Scan)."""
    from onnx import AttributeProto

    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                raise BuildError(
                    f"the accuracy gate cannot emulate node {node.name or node.op_type!r}: "
                    f"{node.op_type} carries a subgraph"
                )


def assemble(model: Any, rewriter: Rewriter, keep: set[str]) -> Any:
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
