"""The accuracy gate's figures and verdict: a reduced-precision ONNX (FP16, Q/DQ INT8) against its reference.

The reduced model runs as its emulation (``precision.emulate``: FP16 storage, INT8 fake quantization),
so the figures are those of the engine's arithmetic on any host. Per output, over all validation images
(each image compared with itself, so outputs whose shape changes per image are compared image by image):

- ``relative_error``: ``||reduced - reference||_2 / ||reference||_2``, which sees a scaled or offset
  output where a cosine cannot (an output at 1/3 of the reference has cosine 1 and relative error 0.67);
  ``sqnr_db`` is the same figure as a signal-to-quantization-noise ratio, ``-20 log10(relative_error)``;
- ``max_abs`` and ``mean_abs`` absolute errors, the reference's ``peak`` magnitude (``max_abs / peak``
  is printed beside them), and the cosine similarity;
- ``spread``: how much the reference output changes across the validation images, relative to its peak.
  An output that is the same for every image (a random-initialised network, a constant head) shows
  nothing of the function the engine computes, whatever its error.

Where the head is declared (``manifest.schema.Head``): top-1 agreement (``classifier``); detection
agreement after matching boxes by IoU, order-free (``yolo``: raw ``[N, 4 + classes + extra, anchors]``
heads; ``detections``: top-k ``[N, K, 6]`` rows of x1, y1, x2, y2, score, class as one-to-one heads and
NMS outputs give, in any order); keypoint error in pixels at the model's input size for pose heads
(``yolo`` with ``keypoints``) and ``landmarks`` heads.

The verdict (``judge``) is ``pass``, ``fail`` (a bound is broken, an FP16 tensor overflows), or ``cannot
judge``: a figure that cannot measure is never a pass. Relative error is bounded by default
(``DEFAULT_RELATIVE_ERROR``: chosen from the repo's five models, docs/precision.md); an agreement bound
needs enough samples (``samples_needed``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

IOU_MIN = 0.5
#: An output whose values move by less than this fraction of its peak across the images is constant.
SPREAD_MIN = 1e-6
#: The default bound on ``relative_error`` per precision when ``tolerance.relative_error_max`` is unset:
#: FP16 (40 dB SQNR) and INT8 (about 14 dB); the five models' worst figures are 2.3e-3 and 0.084.
DEFAULT_RELATIVE_ERROR = {"fp16": 0.01, "int8": 0.2}
#: The fewest samples (images for top-1, FP32 detections for detection agreement) an agreement bound is
#: judged on; below it one sample moves the figure by more than 10 points.
MIN_SAMPLES = 10


def cosine(a: Any, b: Any) -> float | None:
    """Cosine similarity of two arrays, flattened, in float64; ``None`` when either is all zero
    (the direction of a zero vector is undefined) or not finite."""
    import numpy as np

    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if not norm or not np.isfinite(norm):
        return None
    return float(np.clip(a @ b / norm, -1.0, 1.0))


def format_cosine(value: float | None) -> str:
    """``0.998712``, or ``1-3.7e-07`` where six decimals would print a misleading ``1.000000``."""
    if value is None:
        return "undefined"
    return f"1-{1 - value:.1e}" if 0.9999995 <= value < 1 else f"{value:.6f}"


def sqnr_db(relative_error: float | None) -> float | None:
    """``-20 log10(relative_error)`` in dB; ``inf`` for an exact output, ``None`` when undefined."""
    if relative_error is None:
        return None
    return math.inf if relative_error == 0 else -20 * math.log10(relative_error)


def samples_needed(bound: float) -> int:
    """The fewest samples on which agreement bound ``bound`` (0-1) can be judged: ``MIN_SAMPLES``, and
    enough that one disagreement alone does not break it (``1 / (1 - bound)``); a bound of 1 allows none."""
    return MIN_SAMPLES if bound >= 1 else max(MIN_SAMPLES, math.ceil(1 / (1 - bound) - 1e-9))


def _output_figures(reference: list[Any], reduced: list[Any]) -> dict[str, Any]:
    """Figures of one output given per image (arrays of the same shape pairwise, any shape across images)."""
    import numpy as np

    if any(np.shape(ref) != np.shape(red) for ref, red in zip(reference, reduced)):
        shapes = next(
            f"{np.shape(ref)} vs {np.shape(red)}"
            for ref, red in zip(reference, reduced)
            if np.shape(ref) != np.shape(red)
        )
        return {"shape_mismatch": shapes}
    ref = np.concatenate([np.asarray(value, np.float64).ravel() for value in reference])
    red = np.concatenate([np.asarray(value, np.float64).ravel() for value in reduced])
    error = np.abs(ref - red)
    error[~np.isfinite(error)] = np.inf
    peak = float(np.abs(ref).max()) if ref.size else 0.0
    norm = float(np.linalg.norm(ref))
    relative = float(np.linalg.norm(error) / norm) if norm and np.isfinite(norm) else None
    first = np.asarray(reference[0], np.float64)
    moved = [
        float(np.abs(np.asarray(value, np.float64) - first).max()) if np.shape(value) == first.shape else math.inf
        for value in reference[1:]
    ]
    return {
        "max_abs": float(error.max()) if error.size else 0.0,
        "mean_abs": float(error.mean()) if error.size else 0.0,
        "peak": peak,
        "cosine": cosine(ref, red),
        "relative_error": relative,
        "sqnr_db": sqnr_db(relative),
        "spread": (max(moved, default=0.0) / peak) if peak else 0.0,
    }


def _iou(a: Any, b: Any) -> Any:
    """IoU of box ``a`` ``[4]`` against boxes ``b`` ``[n, 4]``, all x1, y1, x2, y2."""
    import numpy as np

    inter = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None) * np.clip(
        np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None
    )
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(union, 1e-9)


def detections(output: Any, head: Any) -> list[tuple[Any, Any, Any, Any, Any]]:
    """One image's detections above ``head.threshold`` as (boxes ``[n, 4]`` x1y1x2y2, scores ``[n]``,
    classes ``[n]``, extra ``[n, e]``, slots ``[n]``: the anchor index, or -1 for top-k rows), per batch
    row of ``output``.

    ``head.kind`` ``yolo``: ``output`` is ``[B, 4 + classes + extra, anchors]`` (centre x, centre y, width,
    height, class scores, then e.g. keypoints), as Ultralytics' raw heads; ``detections``: ``[B, K, >= 6]``
    rows of x1, y1, x2, y2, score, class (then extra), as one-to-one heads and NMS outputs.
    """
    import numpy as np

    found = []
    for row in np.asarray(output, np.float64):
        if head.kind == "yolo":
            classes = head.classes or row.shape[0] - 4
            boxes = np.stack([row[0] - row[2] / 2, row[1] - row[3] / 2, row[0] + row[2] / 2, row[1] + row[3] / 2], 1)
            scores_all = row[4 : 4 + classes]
            scores, labels, extra = scores_all.max(axis=0), scores_all.argmax(axis=0), row[4 + classes :].T
            slots = np.arange(len(scores))
        else:
            boxes, scores, labels, extra = row[:, :4], row[:, 4], np.round(row[:, 5]), row[:, 6:]
            slots = np.full(len(scores), -1)
        keep = scores > head.threshold
        found.append((boxes[keep], scores[keep], labels[keep], extra[keep], slots[keep]))
    return found


def _keypoint_error(ref: Any, red: Any) -> list[float]:
    """Pixel distances of the keypoints ``[k * 3]`` (x, y, visibility) the reference sees (visibility > 0.5)."""
    import numpy as np

    ref, red = ref.reshape(-1, 3), red.reshape(-1, 3)
    seen = ref[:, 2] > 0.5
    return [float(value) for value in np.hypot(*(ref[seen, :2] - red[seen, :2]).T)]


def match_detections(reference: list[Any], reduced: list[Any], head: Any) -> dict[str, Any]:
    """Order-free detection agreement of per-image outputs: each FP32 detection (highest score first) is
    matched to an unmatched reduced detection of the same class with IoU >= ``IOU_MIN``: the one of the
    same anchor where it qualifies (raw heads: neighbouring anchors overlap, and their keypoints differ),
    else the one of highest IoU.

    Returns:
        ``{"detection_agreement": matched / FP32 detections or None when there are none, "detections": n}``
        plus, when ``head.keypoints`` is set, ``keypoint_error_px`` (the largest pixel distance of a visible
        keypoint over matched detections, ``None`` without any).
    """
    import numpy as np

    matched = total = 0
    distances: list[float] = []
    for ref_out, red_out in zip(reference, reduced):
        for (boxes, scores, labels, extra, slots), (r_boxes, _, r_labels, r_extra, r_slots) in zip(
            detections(ref_out, head), detections(red_out, head)
        ):
            free = np.ones(len(r_boxes), bool)
            for index in np.argsort(-scores, kind="stable"):
                total += 1
                if not free.any():
                    continue
                iou = np.where(free & (r_labels == labels[index]), _iou(boxes[index], r_boxes), 0.0)
                same = np.flatnonzero((r_slots == slots[index]) & (slots[index] >= 0) & (iou >= IOU_MIN))
                best = int(same[0]) if len(same) else int(np.argmax(iou))
                if iou[best] >= IOU_MIN:
                    free[best] = False
                    matched += 1
                    if head.keypoints:
                        distances += _keypoint_error(
                            extra[index][: head.keypoints * 3], r_extra[best][: head.keypoints * 3]
                        )
    found: dict[str, Any] = {"detection_agreement": matched / total if total else None, "detections": total}
    if head.keypoints:
        found["keypoint_error_px"] = max(distances) if distances else None
    return found


def measure(names: list[str], reference: list[list[Any]], reduced: list[list[Any]], head: Any) -> dict[str, Any]:
    """Figures for outputs ``names``; ``reference``/``reduced`` are per image, per output arrays.

    Returns:
        ``{"images": n, "outputs": {name: {max_abs, mean_abs, peak, cosine, relative_error, sqnr_db,
        spread}}}`` (or ``{"shape_mismatch": "..."}`` for an output whose shapes differ), plus
        ``top1_agreement`` and ``top1_samples`` (classifier), ``detection_agreement`` and ``detections``
        (yolo, detections), ``keypoint_error_px`` (pose and landmark heads). Non-finite reduced values
        make ``max_abs`` inf; undefined figures are ``None``.
    """
    import numpy as np

    figures: dict[str, Any] = {"images": len(reference), "outputs": {}}
    for index, name in enumerate(names):
        figures["outputs"][name] = _output_figures([out[index] for out in reference], [out[index] for out in reduced])
    first_ref = [np.asarray(out[0]) for out in reference]
    first_red = [np.asarray(out[0]) for out in reduced]
    if head.kind == "classifier":
        ref = np.concatenate([value.reshape(len(value), -1) for value in first_ref])
        red = np.concatenate([value.reshape(len(value), -1) for value in first_red])
        figures["top1_agreement"] = float((ref.argmax(axis=1) == red.argmax(axis=1)).mean())
        figures["top1_samples"] = len(ref)
    elif head.kind in ("yolo", "detections"):
        figures.update(match_detections(first_ref, first_red, head))
    elif head.kind == "landmarks":
        distances = [
            np.hypot(*(ref.reshape(-1, head.dims)[:, :2] - red.reshape(-1, head.dims)[:, :2]).T).max()
            for ref, red in zip(first_ref, first_red)
        ]
        figures["keypoint_error_px"] = float(max(distances))
    return figures


def fp16_overflow(probes: dict[str, Any], names: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """The FP16-rounded tensors that overflowed to inf, worst first.

    Args:
        probes: probe output name -> ``[peak, overflow, underflow, size]`` summed (peak: max) over images.
        names: probe output name -> (node name, tensor name), from ``emulate.Emulated.probes``.
    """
    found = [
        {"node": names[probe][0], "tensor": names[probe][1], "values": int(figures[1]), "peak": float(figures[0])}
        for probe, figures in probes.items()
        if figures[1] > 0
    ]
    return sorted(found, key=lambda item: (-item["values"], item["node"]))


@dataclass
class Verdict:
    """The gate's verdict on a set of figures.

    Attributes:
        failures: bounds the figures break, FP16 overflows, bounds the head cannot measure (``what value
            vs bound`` lines).
        unjudged: why the figures cannot show whether the engine computes the model's function (an output
            that does not change across the images, an agreement over too few samples, nothing detected).
        checks: every bound evaluated, as ``{"figure", "output", "value", "shown", "bound", "upper", "ok",
            "margin"}`` (``upper``: the bound is a maximum);
            ``margin`` is the distance to the bound relative to it (negative: broken), ``shown`` the value
            as printed (cosines as ``1-1.7e-07``).
    """

    failures: list[str] = field(default_factory=list)
    unjudged: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> str:
        """``fail``, ``cannot judge`` or ``pass``."""
        return "fail" if self.failures else "cannot judge" if self.unjudged else "pass"

    def check(self, figure: str, output: str | None, value: float, bound: float, upper: bool) -> bool:
        """Record ``value`` against ``bound`` (an upper bound when ``upper``); returns whether it holds."""
        ok = value <= bound if upper else value >= bound
        scale = abs(bound) or 1.0
        margin = (bound - value) / scale if upper else (value - bound) / scale
        shown = format_cosine(value) if figure == "cosine" else f"{value:.3g}"
        self.checks.append(
            {
                "figure": figure,
                "output": output,
                "value": value,
                "shown": shown,
                "bound": bound,
                "upper": upper,
                "ok": ok,
                "margin": margin,
            }
        )
        return ok


def _judge_output(verdict: Verdict, name: str, output: dict[str, Any], tolerance: Any, relative_max: float) -> None:
    if "shape_mismatch" in output:
        verdict.failures.append(f"{name}: the reduced model's output shape differs ({output['shape_mismatch']})")
        return
    if output["spread"] <= SPREAD_MIN:
        verdict.unjudged.append(
            f"{name}: the FP32 output is the same for every validation image (spread {output['spread']:.1e} of its "
            "peak): its error says nothing of the function; use images that change it, or gate: skip"
        )
    if output["relative_error"] is None:
        verdict.unjudged.append(f"{name}: relative error undefined (an all-zero or non-finite FP32 output)")
    elif not verdict.check("relative_error", name, output["relative_error"], relative_max, upper=True):
        verdict.failures.append(
            f"{name}: relative error {output['relative_error']:.3g} > {relative_max:g} "
            f"(SQNR {output['sqnr_db']:.1f} dB; cosine {format_cosine(output['cosine'])})"
        )
    if tolerance.cosine_min is not None and output["cosine"] is None:
        verdict.unjudged.append(
            f"{name}: cosine undefined (an all-zero or non-finite output on the validation images); "
            "choose images where the FP32 output is not zero, or bound max_abs instead"
        )
    elif tolerance.cosine_min is not None and not verdict.check(
        "cosine", name, output["cosine"], tolerance.cosine_min, upper=False
    ):
        verdict.failures.append(f"{name}: cosine {format_cosine(output['cosine'])} < {tolerance.cosine_min}")
    for bound, label in (("max_abs", "max abs error"), ("mean_abs", "mean abs error")):
        limit = getattr(tolerance, bound)
        if limit is not None and not verdict.check(bound, name, output[bound], limit, upper=True):
            verdict.failures.append(f"{name}: {label} {output[bound]:.4g} > {limit}")


def judge(figures: dict[str, Any], tolerance: Any, precision: str = "fp16") -> Verdict:
    """The verdict of ``figures`` (``measure``, plus ``fp16_overflow``) under ``tolerance``
    (``manifest.schema.Tolerance``) for a model in ``precision`` (``fp16`` or ``int8``: the default
    relative-error bound, ``DEFAULT_RELATIVE_ERROR``)."""
    verdict = Verdict()
    verdict.failures += [
        f"FP16 overflow in node {item['node']!r} (tensor {item['tensor']!r}): peak {item['peak']:.4g} > 65504, "
        f"{item['values']} values become inf"
        for item in figures.get("fp16_overflow", [])[:5]
    ]
    relative_max = tolerance.relative_error_max
    if relative_max is None:
        relative_max = DEFAULT_RELATIVE_ERROR.get(precision, DEFAULT_RELATIVE_ERROR["fp16"])
    if figures.get("images", 2) < 2:
        verdict.unjudged.append("one validation image cannot show that an output depends on its input; use 2 or more")
    for name, output in figures["outputs"].items():
        _judge_output(verdict, name, output, tolerance, relative_max)
    for bound, figure, samples, needs in (
        ("top1_min", "top1_agreement", "top1_samples", "classifier"),
        ("detection_min", "detection_agreement", "detections", "yolo or detections"),
    ):
        limit = getattr(tolerance, bound)
        if limit is None:
            continue
        label = figure.replace("_", " ").replace("top1", "top-1")
        if figure not in figures:
            verdict.failures.append(f"{label} cannot be measured: tolerance.{bound} needs head.kind {needs}")
            continue
        value, count = figures[figure], figures.get(samples, 0)
        if value is None:
            verdict.unjudged.append(
                f"{label} undefined: the FP32 model detects nothing above the threshold on the "
                "validation images; choose images with objects, or lower head.threshold"
            )
        elif count < samples_needed(limit):
            verdict.unjudged.append(
                f"{label} {value:.3f} over {count} {'detections' if samples == 'detections' else 'images'} cannot "
                f"judge tolerance.{bound} {limit}: it needs {samples_needed(limit)} or more (validation count/crops)"
            )
        elif not verdict.check(figure, None, value, limit, upper=False):
            verdict.failures.append(f"{label} {value:.3f} < {limit} (over {count})")
    limit = tolerance.keypoint_px_max
    if limit is not None:
        value = figures.get("keypoint_error_px")
        if "keypoint_error_px" not in figures:
            verdict.failures.append(
                "keypoint error cannot be measured: tolerance.keypoint_px_max needs head.keypoints or kind landmarks"
            )
        elif value is None:
            verdict.unjudged.append("keypoint error undefined: no detection of the FP32 model was matched")
        elif not verdict.check("keypoint_error_px", None, value, limit, upper=True):
            verdict.failures.append(f"keypoint error {value:.3g} px > {limit} px")
    return verdict
