"""A model's precision fields in the manifest (pydantic, pure data): the samples calibration and the
accuracy gate feed (``calibration:``, ``validation:``), how images become tensors (``preprocess:``), what
the outputs mean (``head:``) and the gate's bounds (``tolerance:``). The precision child parses its
requests with these.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from trtbuild.manifest.strict import Strict as _Strict


class ImageSet(_Strict):
    """Images: one glob or a list of globs, relative to the manifest or inside an installed package
    (``{package: skimage, glob: [data/astronaut.png, data/coffee.png]}``: photos that ship with a
    package, no download)."""

    glob: Annotated[str, Field(min_length=1)] | list[Annotated[str, Field(min_length=1)]]
    package: str | None = None


def _glob_set(value: Any) -> Any:
    return {"glob": value} if isinstance(value, (str, list)) else value


class ArraySet(_Strict):
    """Input arrays for a model that takes no image, relative to the manifest (``npy: val/*.npz``): each
    file is one sample, a ``.npy`` (the model's single input) or an ``.npz`` holding one array per input
    name. An array has the input's shape with batch 1, or that shape without its batch dim."""

    glob: Annotated[str, Field(min_length=1)] | list[Annotated[str, Field(min_length=1)]]


class RandomSet(_Strict):
    """Uniform random inputs for a model that takes no image (``random: {seed: 0, low: -1, high: 1}``):
    every input's values are drawn from ``[low, high)`` (whole numbers for an integer input, ``low <
    high``) by numpy's PCG64 generator seeded with ``seed``, so the same settings give the same arrays."""

    seed: int = Field(0, ge=0)
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> RandomSet:
        if not self.low < self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        return self


class Sample(_Strict):
    """What calibration or the accuracy gate feeds the model, the first ``count`` kept; one of:

    - ``images``: real photos for a model with one image input: sorted files, each cut into ``crops``
      fixed crops (whole image, then the centre and the four corners at 80 %), made tensors by
      ``preprocess``;
    - ``npy``: declared arrays for any inputs (``ArraySet``), sorted files;
    - ``random``: seeded uniform values for every input (``RandomSet``; validation only: calibrating on
      noise gives INT8 scales for noise).
    """

    images: ImageSet | None = None
    npy: Annotated[ArraySet | None, BeforeValidator(_glob_set)] = None
    random: RandomSet | None = None
    count: int = Field(16, ge=1, le=4096)
    crops: int = Field(1, ge=1, le=6)

    @model_validator(mode="after")
    def _one_kind(self) -> Sample:
        given = [kind for kind in SAMPLE_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            named = f", not {' and '.join(given)}" if given else ""
            raise ValueError(f"give one of {', '.join(SAMPLE_KINDS)}{named}")
        return self


#: The kinds of sample, in the order messages name them.
SAMPLE_KINDS = ("images", "npy", "random")


class Calibration(Sample):
    """INT8 calibration: a sample of real images, the quantizer that places Q/DQ and computes scales, and
    its range algorithm.

    ``quantizer``: ``modelopt`` (NVIDIA ModelOpt's ONNX PTQ, NVIDIA's path for strongly typed TensorRT;
    the default) or ``onnxruntime`` (ONNX Runtime's ``quantize_static`` configured for TensorRT; the
    fallback where ModelOpt cannot be installed). ``algorithm``: ``minmax`` or ``entropy`` (KL divergence,
    as TensorRT's entropy calibrator) for both, ``percentile`` for ``onnxruntime`` only. Unset, it is
    ``entropy`` for ModelOpt and ``minmax`` for ONNX Runtime (whose entropy calibrator, with its default
    128 bins, gives the same scales as minmax: docs/precision.md).
    """

    quantizer: Literal["modelopt", "onnxruntime"] = "modelopt"
    algorithm: Literal["minmax", "entropy", "percentile"] = "minmax"

    @model_validator(mode="before")
    @classmethod
    def _default_algorithm(cls, data: Any) -> Any:
        if isinstance(data, dict) and "algorithm" not in data:
            data = {**data, "algorithm": "minmax" if data.get("quantizer") == "onnxruntime" else "entropy"}
        return data

    @model_validator(mode="after")
    def _supported(self) -> Calibration:
        if self.random is not None:
            raise ValueError(
                "calibration from random values gives INT8 scales for noise, not for the model's data; "
                "give images: or npy: (random: is for validation)"
            )
        if self.quantizer == "modelopt" and self.algorithm == "percentile":
            raise ValueError(
                "quantizer modelopt calibrates with minmax or entropy; percentile needs quantizer: onnxruntime"
            )
        return self


class Preprocess(_Strict):
    """Image -> input tensor, applied in this order: resize (``stretch``, or ``letterbox`` keeping the
    aspect ratio with grey 114 padding as Ultralytics does) to the input's opt height/width, colour order,
    ``x * scale``, ``(x - mean) / std`` per channel, layout. The defaults give RGB NCHW in [0, 1]."""

    resize: Literal["stretch", "letterbox"] = "stretch"
    color: Literal["rgb", "bgr", "gray"] = "rgb"
    layout: Literal["nchw", "nhwc"] = "nchw"
    scale: float = 1.0 / 255.0
    mean: list[float] = [0.0]
    std: list[Annotated[float, Field(gt=0)]] = [1.0]


class Head(_Strict):
    """What the first output means, for the accuracy gate's task figures:

    - ``classifier``: ``[N, classes]`` scores: top-1 agreement;
    - ``yolo``: ``[N, 4 + classes + extra, anchors]`` raw heads (centre x, centre y, width, height, class
      scores; ``keypoints: 17`` reads the extra channels as x, y, visibility per keypoint): detection
      agreement after IoU matching, and keypoint error in pixels;
    - ``detections``: ``[N, K, 6 + extra]`` rows of x1, y1, x2, y2, score, class in any order (one-to-one
      heads such as YOLOv10 / RT-DETR, NMS outputs): detection agreement after IoU matching;
    - ``landmarks``: ``[N, points * dims]`` coordinates in input pixels (FaceMesh): landmark error in pixels;
    - ``none``: error figures only.
    """

    kind: Literal["none", "classifier", "yolo", "detections", "landmarks"] = "none"
    classes: int | None = Field(None, ge=1)
    threshold: float = Field(0.25, gt=0, lt=1)
    keypoints: int | None = Field(None, ge=1)
    dims: int = Field(3, ge=2, le=4)


class Tolerance(_Strict):
    """Accuracy-gate bounds; a reduced-precision model outside them fails its build (unset: not checked).

    ``relative_error_max`` (``||reduced - fp32|| / ||fp32||`` per output, which sees scale and offset) is
    always checked: unset, it is 0.01 for FP16 and 0.2 for INT8 (docs/precision.md).
    ``keypoint_px_max`` bounds the keypoint / landmark error in pixels at the model's input size.
    """

    cosine_min: float | None = Field(None, ge=-1, le=1)
    relative_error_max: float | None = Field(None, gt=0)
    max_abs: float | None = Field(None, ge=0)
    mean_abs: float | None = Field(None, ge=0)
    top1_min: float | None = Field(None, ge=0, le=1)
    detection_min: float | None = Field(None, ge=0, le=1)
    keypoint_px_max: float | None = Field(None, gt=0)
