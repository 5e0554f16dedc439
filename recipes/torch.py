"""Recipe ``torch``: a PyTorch ``nn.Module`` class plus a pinned state-dict checkpoint -> ONNX.

``module: "package.module:Class"`` is imported from the installed packages or from the project's own
``recipes/`` folder; the checkpoint is loaded with ``torch.load(weights_only=True)`` (no arbitrary
unpickling) into a fresh instance, and ``torch.onnx.export`` writes the ONNX with the given names and
dynamic axes (TorchScript-based exporter, ``dynamo=False``: stable names for dynamic axes).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

VERSION = 1
EXTRA = "torch"
REQUIRES = ("torch",)
EXPORTERS = ("torch", "onnx")
NEEDS_PIN = True  # checkpoints are pickles


class Params(BaseModel):
    """Parameters of ``recipe: {name: torch, ...}``.

    Attributes:
        module: ``"package.module:Class"`` of the network.
        init_args: keyword arguments for the class.
        state_dict_key: where the state dict sits in the checkpoint (``None``: the checkpoint is it).
        inputs: input name -> example shape, in ``forward``'s argument order.
        output_names: names of ``forward``'s outputs, in order.
        dynamic_axes: tensor name -> {axis: name}, e.g. ``{input: {0: batch}}``.
        opset: ONNX opset.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    module: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    init_args: dict[str, Any] = {}
    state_dict_key: str | None = None
    inputs: dict[str, list[int]] = Field(min_length=1)
    output_names: list[str] = Field(min_length=1)
    dynamic_axes: dict[str, dict[int, str]] = {}
    opset: int = Field(17, ge=11, le=21)


def _network_class(path: str, project_root: Path) -> Any:
    module_name, class_name = path.split(":")
    sys.path.append(str(project_root / "recipes"))  # last: never shadows an installed package
    try:
        return getattr(importlib.import_module(module_name), class_name)
    finally:
        sys.path.remove(str(project_root / "recipes"))


def export(source: Path, output: Path, params: Params, context: Any) -> None:
    """Export ``params.module`` with the weights of ``source`` to ``output``."""
    import torch

    network = _network_class(params.module, context.project_root)(**params.init_args)
    checkpoint = torch.load(str(source), map_location="cpu", weights_only=True)
    network.load_state_dict(checkpoint[params.state_dict_key] if params.state_dict_key else checkpoint)
    network.eval()
    examples = tuple(torch.zeros(shape) for shape in params.inputs.values())
    torch.onnx.export(
        network,
        examples,
        str(output),
        dynamo=False,
        input_names=list(params.inputs),
        output_names=params.output_names,
        dynamic_axes=params.dynamic_axes or None,
        opset_version=params.opset,
    )
