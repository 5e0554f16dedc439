"""Recipe ``ultralytics``: an Ultralytics YOLO checkpoint (detect, pose, ...) -> ONNX, fully offline.

Uses Ultralytics' own exporter (``YOLO(model).export(format="onnx")``), so heads and post-processing
layouts are exactly what Ultralytics deploys: detect ``[N, 4 + classes, anchors]``, pose
``[N, 4 + 1 + 3 * 17, anchors]``. Offline: ``YOLO_OFFLINE=1``, no automatic pip installs, settings
``sync=False``, ``simplify=False`` (onnxslim would be fetched otherwise), a private config folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

VERSION = 1
EXTRA = "ultralytics"
REQUIRES = ("torch", "ultralytics")
EXPORTERS = ("torch", "ultralytics", "onnx")
NEEDS_PIN = True  # .pt checkpoints are pickles


class Params(BaseModel):
    """Parameters of ``recipe: {name: ultralytics, ...}``.

    Attributes:
        imgsz: the square input size in pixels (multiple of the model's stride, 32).
        opset: ONNX opset.
        dynamic: dynamic batch, height and width axes (Ultralytics' ``dynamic=True``); a profile fixes them.
        batch: the static batch size when not dynamic.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    imgsz: int = Field(640, gt=0, multiple_of=32)
    opset: int = Field(17, ge=11, le=21)
    dynamic: bool = False
    batch: int = Field(1, ge=1)


def _offline(config_dir: Path) -> None:
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)


def export(source: Path, output: Path, params: Params, context: Any) -> None:
    """Export ``source`` (a pinned ``.pt``) to ``output``."""
    _offline(context.workdir / "config")
    from ultralytics import YOLO, settings

    settings.update({"sync": False})
    checkpoint = context.workdir / "model.pt"  # Ultralytics infers the format from the suffix
    shutil.copyfile(source, checkpoint)
    exported = YOLO(str(checkpoint)).export(
        format="onnx",
        imgsz=params.imgsz,
        opset=params.opset,
        dynamic=params.dynamic,
        batch=params.batch,
        simplify=False,
        half=False,
        device="cpu",
    )
    shutil.move(str(exported), output)
