"""Precision steps in a child process: ``python -m trtbuild.precision.child REQUEST.json``.

The request's type says the step (``child_requests``): ``Fp16Request`` (FP16 conversion), ``Int8Request``
(Q/DQ quantization from calibration samples) or ``AccuracyRequest`` (the gate's figures, written as a
JSON report). Each writes its file to ``request.partial``; ONNX Runtime, onnxconverter-common and PIL
are imported only here.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trtbuild.child_requests import AccuracyRequest, Fp16Request, Int8Request, PrecisionRequest
from trtbuild.childside import child_main
from trtbuild.errors import BuildError
from trtbuild.manifest.precision_fields import Calibration, Head, Preprocess, Sample, Tolerance
from trtbuild.precision import accuracy, emulate, fp16, fp16_values, int8, samples, validate


def _fp16(request: Fp16Request) -> dict[str, Any]:
    import onnx

    source = onnx.load_model(request.onnx)
    already = fp16.already_fp16(source)
    if already:
        onnx.save_model(source, request.partial)
        checked = validate.check_produced(Path(request.partial), "FP16 conversion", source=Path(request.onnx))
        print(
            f"FP16 conversion: the source is already FP16 ({already}); written unchanged, not converted again "
            f"(the accuracy gate compares the engine's arithmetic with the source itself); {checked}"
        )
        return {"kept_fp32": [], "already_fp16": True}
    try:
        if request.converter == "autocast":
            validate.normalize(source)
            unheld, kept = fp16_values.unheld(source)
            with tempfile.TemporaryDirectory(prefix="trtbuild-fp16-") as scratch:
                feeds, _ = _feeds(request, Calibration.model_validate(request.calibration), request.onnx)
                converted = fp16.convert_autocast(Path(request.onnx), feeds, Path(scratch))
            fp16.check_values(source, converted)
        else:
            converted, unheld, kept = fp16.convert(source)
    except BuildError:
        raise
    except ModuleNotFoundError as exc:
        raise BuildError(f"fp16_converter autocast needs {exc.name}: pip install 'trtbuild[int8]'") from None
    except Exception as exc:  # noqa: BLE001 - onnxconverter-common raises ValueError, AssertionError, KeyError, ...
        raise BuildError(f"FP16 conversion failed: {type(exc).__name__}: {validate.one_line(str(exc))}") from None
    onnx.save_model(converted, request.partial)
    checked = validate.check_produced(Path(request.partial), "FP16 conversion", source=Path(request.onnx))
    for change in unheld:
        print(f"FP16 cannot hold {change.describe()}: its readers stay FP32")
    print(
        f"FP16 conversion: {len(kept)} nodes kept FP32 for constants FP16 cannot hold; every FP16 constant "
        f"equals its FP32 value up to FP16 rounding; {checked}"
    )
    return {"kept_fp32": sorted(kept)}


def _batch(request: PrecisionRequest) -> int:
    """The batch each feed holds (``steps.precision.feed_inputs``)."""
    return samples.batch_of(request.inputs)


def _feeds(request: PrecisionRequest, sample: Sample, model: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The sample as feeds of the shapes the engine takes (``samples.feeds``), and per feed how many of its
    rows are the sample's own."""
    preprocess = Preprocess.model_validate(request.preprocess)
    return samples.feeds(sample, Path(request.project_root), preprocess, request.inputs, Path(model))


def _other(quantizer: str) -> str:
    """The quantizer that is not ``quantizer`` (``int8.QUANTIZER_PACKAGES`` holds both)."""
    return next(name for name in int8.QUANTIZER_PACKAGES if name != quantizer)


def _int8(request: Int8Request) -> dict[str, Any]:
    import onnx

    calibration = Calibration.model_validate(request.calibration)
    feeds, rows = _feeds(request, calibration, request.onnx)
    try:
        with tempfile.TemporaryDirectory(prefix="trtbuild-int8-") as scratch:
            int8.quantize(
                Path(request.onnx),
                Path(request.partial),
                feeds,
                calibration.algorithm,
                Path(scratch),
                calibration.quantizer,
            )
    except ModuleNotFoundError as exc:
        raise BuildError(
            f"INT8 quantizer {calibration.quantizer} needs {exc.name}: pip install 'trtbuild[int8]' "
            "(or set calibration.quantizer: onnxruntime)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's quantizer raises ValueError, RuntimeError, KeyError, ...
        raise BuildError(
            f"INT8 quantization by {calibration.quantizer} failed: {type(exc).__name__}: "
            f"{validate.one_line(str(exc))}; calibration.quantizer: {_other(calibration.quantizer)} quantizes "
            "with the other quantizer"
        ) from None
    checked = validate.check_produced(Path(request.partial), "INT8 quantization", source=Path(request.onnx))
    quantized = onnx.load_model(request.partial, load_external_data=False)
    if not any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in quantized.graph.node):
        ops = sorted({node.op_type for node in quantized.graph.node})
        raise BuildError(
            f"INT8 quantization by {calibration.quantizer} placed no Q/DQ in this model (ops: {', '.join(ops[:8])}): "
            f"nothing in it would run in INT8; build it in fp16 or fp32, or try calibration.quantizer: "
            f"{_other(calibration.quantizer)}"
        )
    points = int8.zero_points(quantized)
    asymmetric = sorted(name for name, value in points.items() if value != 0)
    if asymmetric:
        raise BuildError(
            f"INT8 quantization produced non-zero zero points (TensorRT needs symmetric): {asymmetric[:5]}"
        )
    count, batch = sum(rows), _batch(request)
    batched = f" in {len(feeds)} batches of {batch}" if batch > 1 else ""
    what = "images" if calibration.images else "arrays"
    print(
        f"INT8: {calibration.quantizer}, calibrated on {count} {what}{batched} ({calibration.algorithm}); "
        f"{len(points)} zero points, all 0; {checked}"
    )
    return {"calibration_images": count, "zero_points": len(points)}


def _per_image(reference: list[Any], reduced: list[Any], batch: int, real: int) -> list[tuple[list[Any], list[Any]]]:
    """One feed's outputs of both models (one array per output) as (reference, reduced) pairs per image, so
    the gate's figures are per image whatever the batch.

    At ``batch`` > 1, when every output of both has the batch as its first dim, each image is row ``i`` of
    every output (kept as ``[1, ...]``), for the ``real`` rows that are the sample's own: the repeated rows
    completing the last feed are dropped. Otherwise (batch 1, or an output not batch-major) the feed is
    one sample, all its rows included.
    """
    outputs = [*reference, *reduced]
    if batch <= 1 or not all(getattr(output, "ndim", 0) >= 1 and output.shape[0] == batch for output in outputs):
        return [(list(reference), list(reduced))]
    return [
        ([output[row : row + 1] for output in reference], [output[row : row + 1] for output in reduced])
        for row in range(real)
    ]


#: What a gate that cannot run the model says, before the reason (ONNX Runtime's message).
CANNOT_RUN = "accuracy gate cannot judge: ONNX Runtime cannot run {what}"


def _session(model: Any, what: str) -> Any:
    """``emulate.session(model)``; an ONNX Runtime that cannot load it (an op it has no kernel for) is the
    gate's own verdict, ``BuildError`` ``accuracy gate cannot judge: ...``."""
    try:
        return emulate.session(model)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception classes (Fail, InvalidGraph, ...)
        raise BuildError(
            f"{CANNOT_RUN.format(what=what)}: {validate.one_line(str(exc))}; gate: skip builds the engine unjudged"
        ) from None


def _run(session: Any, feed: dict[str, Any], what: str, index: int) -> list[Any]:
    """The session's outputs on ``feed``, validation sample ``index``; an ONNX Runtime error (e.g. a sample
    of values the model refuses) is ``BuildError`` ``accuracy gate cannot judge: ...``."""
    try:
        return list(session.run(None, feed))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception classes (Fail, InvalidArgument, ...)
        raise BuildError(
            f"{CANNOT_RUN.format(what=what)} on validation sample {index + 1}: {validate.one_line(str(exc))}; "
            "gate: skip builds the engine unjudged"
        ) from None


def _accuracy(request: AccuracyRequest) -> dict[str, Any]:
    import numpy as np
    import onnx
    import onnxruntime as ort

    feeds, rows = _feeds(request, Sample.model_validate(request.validation), request.onnx)
    reference = _session(request.onnx, "the FP32 ONNX")
    already = fp16.already_fp16(onnx.load_model(request.onnx, load_external_data=False))
    emulated = emulate.emulate(onnx.load_model(request.reduced))
    reduced = _session(emulated.model, f"the emulated {request.precision.upper()} ONNX")
    names = [output.name for output in reference.get_outputs()]
    reference_outputs, reduced_outputs = [], []
    probes: dict[str, Any] = {}
    batch = _batch(request)
    fp16_inputs = [value.name for value in reference.get_inputs() if value.type == "tensor(float16)"]
    for index, (feed, real) in enumerate(zip(feeds, rows)):
        # an FP16 input (a source converted without FP32 I/O) takes the images cast to FP16; the emulation
        # takes them FP32 and rounds them to FP16 where they enter, the same values
        typed = {name: value.astype(np.float16) if name in fp16_inputs else value for name, value in feed.items()}
        expected = _run(reference, typed, "the FP32 ONNX", index)
        outputs = _run(reduced, feed, f"the emulated {request.precision.upper()} ONNX", index)
        produced = dict(zip([output.name for output in reduced.get_outputs()], outputs))
        for ref, red in _per_image(expected, [produced[name] for name in names], batch, real):
            reference_outputs.append(ref)
            reduced_outputs.append(red)
        for probe in emulated.probes:
            previous = probes.get(probe, np.zeros(len(emulate.PROBE_FIELDS)))
            probes[probe] = np.concatenate([[max(previous[0], produced[probe][0])], previous[1:] + produced[probe][1:]])
    figures = accuracy.measure(names, reference_outputs, reduced_outputs, Head.model_validate(request.head))
    figures["fp16_overflow"] = accuracy.fp16_overflow(probes, emulated.probes)
    verdict = accuracy.judge(figures, Tolerance.model_validate(request.tolerance), request.precision)
    report = {
        "model": request.model,
        "precision": request.precision,
        "emulation": {
            "kinds": emulated.kinds,
            "description": emulated.description,
            "runtime": f"onnxruntime {ort.__version__}, CPU, graph optimizations off",
            "fp16_tensors": len(emulated.probes),
            "reference": (
                f"the source itself, already FP16 ({already}): no FP32 reference, the figures are the engine's "
                "arithmetic against the source run as it is"
                if already
                else "the FP32 ONNX"
            ),
        },
        **figures,
        "tolerance": request.tolerance,
        "checks": verdict.checks,
        "verdict": verdict.state,
        "passed": verdict.state == "pass",
        "failures": verdict.failures,
        "unjudged": verdict.unjudged,
    }
    Path(request.partial).write_text(json.dumps(report, indent=2, sort_keys=True))
    return {"passed": report["passed"], "verdict": verdict.state, "failures": verdict.failures}


STEPS: dict[type[PrecisionRequest], Callable[[Any], dict[str, Any]]] = {
    Fp16Request: _fp16,
    Int8Request: _int8,
    AccuracyRequest: _accuracy,
}


def run(request: PrecisionRequest) -> dict[str, Any]:
    """Run the step ``request`` asks for (its type); returns its result with ``seconds``."""
    started = time.monotonic()
    result = STEPS[type(request)](request)
    return {**result, "seconds": time.monotonic() - started}


if __name__ == "__main__":
    sys.exit(child_main(run, sys.argv[1:]))
