"""The accuracy gate: a reduced-precision ONNX (FP16, Q/DQ INT8) against its FP32 ONNX, on the CPU.

The reduced model runs as its emulation (``precision.emulate``: FP16 storage, INT8 fake quantization),
so the figures are those of the engine's arithmetic on any host. Per output: max and mean absolute
error, the reference's peak magnitude and cosine similarity (over all images, flattened). Where the head
is known: top-1 agreement (classifier) or detection agreement (YOLO: of the FP32 model's anchors scoring
above the threshold, the fraction where the reduced model picks the same class above the threshold with
a box of IoU >= 0.5). The manifest's ``tolerance`` turns the figures into a pass or a failure whose
message carries them.

A figure that means nothing is reported as ``None`` with the reason, never as a perfect score: cosine
is undefined when either output is all zero, detection agreement when the FP32 model detects nothing.
A bound that cannot be evaluated fails the gate, and so does any FP16 tensor that overflows to inf.
"""

from __future__ import annotations

from typing import Any

IOU_MIN = 0.5


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


def _iou(a: Any, b: Any) -> Any:
    """IoU of boxes given as [4, anchors] centre-x, centre-y, width, height."""
    import numpy as np

    def corners(box: Any) -> tuple[Any, Any, Any, Any]:
        return box[0] - box[2] / 2, box[1] - box[3] / 2, box[0] + box[2] / 2, box[1] + box[3] / 2

    ax0, ay0, ax1, ay1 = corners(a)
    bx0, by0, bx1, by1 = corners(b)
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(
        np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None
    )
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / np.maximum(union, 1e-9)


def detection_agreement(reference: Any, reduced: Any, classes: int, threshold: float) -> tuple[float | None, int]:
    """(agreement, FP32 detections) for YOLO outputs ``[N, 4 + classes + extra, anchors]``; the agreement
    is ``None`` when the FP32 model detects nothing above ``threshold`` (no evidence either way)."""

    matched = total = 0
    for ref, red in zip(reference, reduced):
        ref_scores, red_scores = ref[4 : 4 + classes], red[4 : 4 + classes]
        detected = ref_scores.max(axis=0) > threshold
        same = (red_scores.max(axis=0) > threshold) & (red_scores.argmax(axis=0) == ref_scores.argmax(axis=0))
        good = same & (_iou(ref[:4], red[:4]) >= IOU_MIN)
        total += int(detected.sum())
        matched += int((detected & good).sum())
    return (matched / total if total else None), total


def measure(names: list[str], reference: list[list[Any]], reduced: list[list[Any]], head: Any) -> dict[str, Any]:
    """Figures for outputs ``names``; ``reference``/``reduced`` are per image, per output arrays.

    Returns:
        ``{"outputs": {name: {max_abs, mean_abs, peak, cosine}}}`` plus ``top1_agreement`` (classifier)
        or ``detection_agreement`` and ``detections`` (YOLO). Non-finite reduced values make ``max_abs``
        inf; undefined figures are ``None``.
    """
    import numpy as np

    figures: dict[str, Any] = {"outputs": {}}
    for index, name in enumerate(names):
        ref = np.concatenate([outputs[index] for outputs in reference]).astype(np.float64)
        red = np.concatenate([outputs[index] for outputs in reduced]).astype(np.float64)
        error = np.abs(ref - red)
        error[~np.isfinite(error)] = np.inf
        figures["outputs"][name] = {
            "max_abs": float(error.max()),
            "mean_abs": float(error.mean()),
            "peak": float(np.abs(ref).max()),
            "cosine": cosine(ref, red),
        }
    first_ref = np.concatenate([outputs[0] for outputs in reference])
    first_red = np.concatenate([outputs[0] for outputs in reduced])
    if head.kind == "classifier":
        flat_ref, flat_red = first_ref.reshape(len(first_ref), -1), first_red.reshape(len(first_red), -1)
        figures["top1_agreement"] = float((flat_ref.argmax(axis=1) == flat_red.argmax(axis=1)).mean())
    elif head.kind == "yolo":
        classes = head.classes or first_ref.shape[1] - 4
        figures["detection_agreement"], figures["detections"] = detection_agreement(
            first_ref, first_red, classes, head.threshold
        )
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


def judge(figures: dict[str, Any], tolerance: Any) -> list[str]:
    """Every bound of ``tolerance`` the figures break or cannot show, and every FP16 overflow, as
    ``what value vs bound`` lines; empty: pass."""
    failures = [
        f"FP16 overflow in node {item['node']!r} (tensor {item['tensor']!r}): peak {item['peak']:.4g} > 65504, "
        f"{item['values']} values become inf"
        for item in figures.get("fp16_overflow", [])[:5]
    ]
    for name, output in figures["outputs"].items():
        if tolerance.cosine_min is not None and output["cosine"] is None:
            failures.append(
                f"{name}: cosine undefined (an all-zero or non-finite output on the validation images); "
                "choose images where the FP32 output is not zero, or bound max_abs instead"
            )
        elif tolerance.cosine_min is not None and output["cosine"] < tolerance.cosine_min:
            failures.append(f"{name}: cosine {format_cosine(output['cosine'])} < {tolerance.cosine_min}")
        if tolerance.max_abs is not None and output["max_abs"] > tolerance.max_abs:
            failures.append(f"{name}: max abs error {output['max_abs']:.4g} > {tolerance.max_abs}")
        if tolerance.mean_abs is not None and output["mean_abs"] > tolerance.mean_abs:
            failures.append(f"{name}: mean abs error {output['mean_abs']:.4g} > {tolerance.mean_abs}")
    for bound, figure, needs in (
        ("top1_min", "top1_agreement", "classifier"),
        ("detection_min", "detection_agreement", "yolo"),
    ):
        limit = getattr(tolerance, bound)
        if limit is None:
            continue
        value = figures.get(figure)
        label = figure.replace("_", " ").replace("top1", "top-1")
        if figure not in figures:
            failures.append(f"{label} cannot be measured: tolerance.{bound} needs head.kind {needs}")
        elif value is None:
            failures.append(
                f"{label} undefined: the FP32 model detects nothing above the threshold on the "
                "validation images; choose images with objects, or lower head.threshold"
            )
        elif value < limit:
            failures.append(f"{label} {value:.3f} < {limit}")
    return failures
