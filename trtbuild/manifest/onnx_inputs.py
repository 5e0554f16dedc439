"""Check a model's declared inputs against its ONNX graph, when the ONNX is read.

TensorRT needs a shape for every input: a static ONNX dimension is fixed, and every dynamic one
(``dim_param`` or unset) must be covered by an optimization profile. So: every declared input exists in
the graph, ranks agree, a profile matches each static dimension exactly, and an input with dynamic
dimensions is declared.
"""

from __future__ import annotations

from pathlib import Path

from trtbuild.errors import ManifestError
from trtbuild.manifest.loader import ModelTarget


def onnx_input_dims(onnx_path: Path) -> dict[str, list[int | str]]:
    """Graph inputs (initializers excluded) -> dims; a dynamic dim is its ``dim_param`` or ``"?"``.

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
    return inputs


def check_inputs(target: ModelTarget, inputs: dict[str, list[int | str]]) -> list[str]:
    """Problems between ``target``'s declared inputs and the ONNX's ``inputs``; empty when compatible."""
    problems = []
    onnx_name = target.onnx.name
    profiles = target.spec.profiles()
    for name in target.spec.inputs:
        if name not in inputs:
            problems.append(f"{target.where('inputs', name)}: no input {name!r} in {onnx_name} (inputs: {', '.join(inputs) or 'none'})")
            continue
        dims = inputs[name]
        for index, profile in enumerate(profiles):
            for label, shape in zip(("min", "opt", "max"), profile[name]):
                if len(shape) != len(dims):
                    problems.append(f"{target.where('inputs', name)}: rank {len(shape)} but {onnx_name} has rank {len(dims)} {dims}")
                    break
                for axis, (want, have) in enumerate(zip(shape, dims)):
                    if isinstance(have, int) and want != have:
                        where = f"profile {index} " if len(profiles) > 1 else ""
                        problems.append(
                            f"{target.where('inputs', name)}: {where}{label} {shape}: dimension {axis} is fixed at {have} in {onnx_name}"
                        )
                        break
                else:
                    continue
                break
    for name, dims in inputs.items():
        if name not in target.spec.inputs and any(not isinstance(dim, int) for dim in dims):
            problems.append(f"{target.where('inputs')}: input {name!r} of {onnx_name} has dynamic dims {dims}; declare its shape or profile")
    return problems


def verify_inputs(target: ModelTarget) -> None:
    """Read ``target.onnx`` and check its inputs.

    Raises:
        ManifestError: with every problem found.
    """
    problems = check_inputs(target, onnx_input_dims(target.onnx))
    if problems:
        raise ManifestError(problems)
