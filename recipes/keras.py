"""Recipe ``keras``: a Keras ``.h5``/``.hdf5`` model -> ONNX through Keras 3 on the torch backend.

No TensorFlow: ``KERAS_BACKEND=torch`` makes the loaded Keras model a ``torch.nn.Module``, which
``torch.onnx.export(..., dynamo=True)`` exports (torch.export, then ONNX via onnxscript). Keras layouts
are kept: an image model's input stays NHWC.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

VERSION = 1
EXTRA = "keras"
REQUIRES = ("keras", "torch", "onnxscript", "h5py")
EXPORTERS = ("keras", "torch", "onnxscript", "onnx")
NEEDS_PIN = True  # Keras files may hold Lambda layers (code)


class Params(BaseModel):
    """Parameters of ``recipe: {name: keras, ...}``.

    Attributes:
        input_name: the ONNX input's name.
        output_names: the ONNX outputs' names, in the model's output order.
        dynamic_batch: export axis 0 as a dynamic ``batch`` dimension (up to ``max_batch``).
        max_batch: the largest batch the dynamic axis admits.
        opset: ONNX opset (the dynamo exporter needs >= 18).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_name: str = "input"
    output_names: list[str] = ["output"]
    dynamic_batch: bool = True
    max_batch: int = Field(64, ge=2)
    opset: int = Field(18, ge=18, le=23)


def export(source: Path, output: Path, params: Params, context: Any) -> None:
    """Export ``source`` (a pinned Keras HDF5 file) to ``output``."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    import torch

    checkpoint = context.workdir / "model.h5"  # Keras picks the loader from the suffix
    shutil.copyfile(source, checkpoint)
    model = keras.models.load_model(str(checkpoint), compile=False, safe_mode=True)

    class Wrapped(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> Any:
            return self.inner(x)

    shape = [2 if params.dynamic_batch else 1, *model.inputs[0].shape[1:]]  # batch 2: not specialised to 1
    dynamic = ({0: torch.export.Dim("batch", min=1, max=params.max_batch)},) if params.dynamic_batch else None
    torch.onnx.export(
        Wrapped(model).eval(),
        (torch.zeros(shape),),
        str(output),
        dynamo=True,
        external_data=False,
        input_names=[params.input_name],
        output_names=params.output_names,
        dynamic_shapes=dynamic,
        opset_version=params.opset,
    )
