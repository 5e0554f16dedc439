"""Check a model's declared inputs against its ONNX graph, when the ONNX is read.

TensorRT needs a shape for every input: a static ONNX dimension is fixed, and every dynamic one
(``dim_param`` or unset) must be covered by an optimization profile. So: every declared input exists in
the graph, ranks agree, a profile matches each static dimension exactly, and an input with dynamic
dimensions is declared.

Shape-tensor inputs — integer inputs whose *values* an op takes as a shape, sizes or indices (Expand's
``shape``, Reshape's ``shape``, Slice's ``starts``...) — are different: a TensorRT optimization profile
takes their values (``IOptimizationProfile::setShapeValues``; Polygraphy's ``Profile.add`` passes min/opt/max
as values for them). Their declared min/opt/max are those values, one per element, so every shape-tensor
input must be declared and its lists must have as many entries as the tensor has elements.
"""

from __future__ import annotations

from pathlib import Path

from trtbuild.errors import ManifestError
from trtbuild.manifest.target import ModelTarget

#: op type -> indices of the inputs TensorRT reads as shape tensors (values, not data).
SHAPE_OPERANDS = {
    "Expand": (1,),
    "Reshape": (1,),
    "ConstantOfShape": (0,),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Resize": (2, 3),
    "Pad": (1,),
    "Unsqueeze": (1,),
    "Squeeze": (1,),
    "TopK": (1,),
    "Range": (0, 1, 2),
}
INTEGER_TYPES = (6, 7)  # INT32, INT64


def onnx_input_dims(onnx_path: Path) -> dict[str, list[int | str]]:
    """Graph inputs (initializers excluded) -> dims; a dynamic dim is its ``dim_param`` or ``"?"``.

    Raises:
        ManifestError: the file is not a readable ONNX model.
    """
    return read_onnx_inputs(onnx_path)[0]


def read_onnx_inputs(onnx_path: Path) -> tuple[dict[str, list[int | str]], dict[str, str]]:
    """(input -> dims as ``onnx_input_dims``, shape-tensor input -> the operand that makes it one, e.g.
    ``Expand 'grow' input 1``). Shape tensors are integer inputs fed, directly or through a ``Cast``, to an
    operand in ``SHAPE_OPERANDS``.

    Raises:
        ManifestError: the file is not a readable ONNX model.
    """
    import onnx

    try:
        model = onnx.load_model(str(onnx_path), load_external_data=False)
    except Exception as exc:  # DecodeError, ValueError, ... for bytes that are not ONNX
        raise ManifestError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs: dict[str, list[int | str]] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims: list[int | str] = []
        for dim in value.type.tensor_type.shape.dim:
            dims.append(dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else (dim.dim_param or "?"))
        inputs[value.name] = dims
    integer = {
        value.name
        for value in model.graph.input
        if value.name in inputs and value.type.tensor_type.elem_type in INTEGER_TYPES and len(inputs[value.name]) <= 1
    }
    aliases = {name: name for name in integer}
    for node in model.graph.node:  # a Cast of a shape tensor is one too
        if node.op_type == "Cast" and node.input and node.input[0] in aliases:
            aliases[node.output[0]] = aliases[node.input[0]]
    shape_tensors: dict[str, str] = {}
    for node in model.graph.node:
        for index in SHAPE_OPERANDS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] in aliases:
                shape_tensors.setdefault(
                    aliases[node.input[index]], f"{node.op_type} {node.name or node.output[0]!r} input {index}"
                )
    return inputs, shape_tensors


def _check_shape_values(target: ModelTarget, name: str, dims: list[int | str], operand: str) -> list[str]:
    onnx_name = target.onnx.name
    if name not in target.spec.inputs:
        return [
            f"{target.where('inputs')}: input {name!r} of {onnx_name} is a shape tensor ({operand}): "
            f"a profile takes its values; declare inputs.{name} as {{min: [...], opt: [...], max: [...]}} values"
        ]
    count = dims[0] if dims else 1
    for profile in target.spec.profiles():
        for label, values in zip(("min", "opt", "max"), profile[name]):
            if isinstance(count, int) and len(values) != count:
                return [
                    f"{target.where('inputs', name)}: {label} {values}: {name!r} is a shape tensor ({operand}) of "
                    f"{count} values in {onnx_name}; give {count} values, not a shape"
                ]
    return []


def check_inputs(
    target: ModelTarget, inputs: dict[str, list[int | str]], shape_tensors: dict[str, str] | None = None
) -> list[str]:
    """Problems between ``target``'s declared inputs and the ONNX's ``inputs`` (``shape_tensors``: see
    ``read_onnx_inputs``); empty when compatible."""
    problems = []
    onnx_name = target.onnx.name
    profiles = target.spec.profiles()
    shape_tensors = shape_tensors or {}
    for name, operand in shape_tensors.items():
        problems += _check_shape_values(target, name, inputs[name], operand)
    for name in target.spec.inputs:
        if name not in inputs:
            problems.append(
                f"{target.where('inputs', name)}: no input {name!r} in {onnx_name} "
                f"(inputs: {', '.join(inputs) or 'none'})"
            )
            continue
        if name in shape_tensors:
            continue
        dims = inputs[name]
        for index, profile in enumerate(profiles):
            for label, shape in zip(("min", "opt", "max"), profile[name]):
                if len(shape) != len(dims):
                    problems.append(
                        f"{target.where('inputs', name)}: rank {len(shape)} but {onnx_name} has rank {len(dims)} {dims}"
                    )
                    break
                for axis, (want, have) in enumerate(zip(shape, dims)):
                    if isinstance(have, int) and want != have:
                        where = f"profile {index} " if len(profiles) > 1 else ""
                        problems.append(
                            f"{target.where('inputs', name)}: {where}{label} {shape}: "
                            f"dimension {axis} is fixed at {have} in {onnx_name}"
                        )
                        break
                else:
                    continue
                break
    for name, dims in inputs.items():
        if (
            name not in target.spec.inputs
            and name not in shape_tensors
            and any(not isinstance(dim, int) for dim in dims)
        ):
            problems.append(
                f"{target.where('inputs')}: input {name!r} of {onnx_name} has dynamic dims {dims}; "
                "declare its shape or profile"
            )
    return problems


def verify_inputs(target: ModelTarget) -> None:
    """Read ``target.onnx`` and check its inputs.

    Raises:
        ManifestError: with every problem found.
    """
    problems = check_inputs(target, *read_onnx_inputs(target.onnx))
    if problems:
        raise ManifestError(problems)
