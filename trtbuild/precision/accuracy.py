"""The accuracy gate: a reduced-precision ONNX (FP16, Q/DQ INT8) against its FP32 ONNX, on the CPU.

Both run in ONNX Runtime on the validation images. Per output: max and mean absolute error and cosine
similarity (over all images, flattened). Where the head is known: top-1 agreement (classifier) or
detection agreement (YOLO: of the FP32 model's anchors scoring above the threshold, the fraction where
the reduced model picks the same class above the threshold with a box of IoU >= 0.5). The manifest's
``tolerance`` turns the figures into a pass or a failure whose message carries them.
"""

from __future__ import annotations

from typing import Any

IOU_MIN = 0.5


def _cosine(a: Any, b: Any) -> float:
    import numpy as np

    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norm) if norm else float(np.array_equal(a, b))


def _iou(a: Any, b: Any) -> Any:
    """IoU of boxes given as [4, anchors] centre-x, centre-y, width, height."""
    import numpy as np

    def corners(box: Any) -> tuple[Any, Any, Any, Any]:
        return box[0] - box[2] / 2, box[1] - box[3] / 2, box[0] + box[2] / 2, box[1] + box[3] / 2

    ax0, ay0, ax1, ay1 = corners(a)
    bx0, by0, bx1, by1 = corners(b)
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / np.maximum(union, 1e-9)


def detection_agreement(reference: Any, reduced: Any, classes: int, threshold: float) -> tuple[float, int]:
    """(agreement, FP32 detections) for YOLO outputs ``[N, 4 + classes + extra, anchors]``."""

    matched = total = 0
    for ref, red in zip(reference, reduced):
        ref_scores, red_scores = ref[4:4 + classes], red[4:4 + classes]
        detected = ref_scores.max(axis=0) > threshold
        same = (red_scores.max(axis=0) > threshold) & (red_scores.argmax(axis=0) == ref_scores.argmax(axis=0))
        good = same & (_iou(ref[:4], red[:4]) >= IOU_MIN)
        total += int(detected.sum())
        matched += int((detected & good).sum())
    return (matched / total if total else 1.0), total


def measure(names: list[str], reference: list[list[Any]], reduced: list[list[Any]], head: Any) -> dict[str, Any]:
    """Figures for outputs ``names``; ``reference``/``reduced`` are per image, per output arrays."""
    import numpy as np

    figures: dict[str, Any] = {"outputs": {}}
    for index, name in enumerate(names):
        ref = np.concatenate([outputs[index] for outputs in reference]).astype(np.float64)
        red = np.concatenate([outputs[index] for outputs in reduced]).astype(np.float64)
        error = np.abs(ref - red)
        figures["outputs"][name] = {"max_abs": float(error.max()), "mean_abs": float(error.mean()), "cosine": _cosine(ref, red)}
    first_ref = np.concatenate([outputs[0] for outputs in reference])
    first_red = np.concatenate([outputs[0] for outputs in reduced])
    if head.kind == "classifier":
        flat_ref, flat_red = first_ref.reshape(len(first_ref), -1), first_red.reshape(len(first_red), -1)
        figures["top1_agreement"] = float((flat_ref.argmax(axis=1) == flat_red.argmax(axis=1)).mean())
    elif head.kind == "yolo":
        classes = head.classes or first_ref.shape[1] - 4
        figures["detection_agreement"], figures["detections"] = detection_agreement(first_ref, first_red, classes, head.threshold)
    return figures


def judge(figures: dict[str, Any], tolerance: Any) -> list[str]:
    """Every bound of ``tolerance`` the figures break, as ``what value vs bound`` lines; empty: pass."""
    failures = []
    for name, output in figures["outputs"].items():
        if tolerance.cosine_min is not None and output["cosine"] < tolerance.cosine_min:
            failures.append(f"{name}: cosine {output['cosine']:.6f} < {tolerance.cosine_min}")
        if tolerance.max_abs is not None and output["max_abs"] > tolerance.max_abs:
            failures.append(f"{name}: max abs error {output['max_abs']:.4g} > {tolerance.max_abs}")
        if tolerance.mean_abs is not None and output["mean_abs"] > tolerance.mean_abs:
            failures.append(f"{name}: mean abs error {output['mean_abs']:.4g} > {tolerance.mean_abs}")
    if tolerance.top1_min is not None and figures.get("top1_agreement", 1.0) < tolerance.top1_min:
        failures.append(f"top-1 agreement {figures['top1_agreement']:.3f} < {tolerance.top1_min}")
    if tolerance.detection_min is not None and figures.get("detection_agreement", 1.0) < tolerance.detection_min:
        failures.append(f"detection agreement {figures['detection_agreement']:.3f} < {tolerance.detection_min}")
    return failures
