"""The accuracy gate emulates the engine's arithmetic: INT8 as fake quantization in FP32 (no host int8
kernel decides), FP16 as FP16 storage (overflow to inf is seen and named), and figures that mean nothing
are said to mean nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import photos
import pytest
from conftest import ProjectDir, entries
from onnx import TensorProto, helper, numpy_helper
from onnx_models import conv_net, save_graph

from trtbuild.manifest.precision_fields import Head, Tolerance
from trtbuild.precision import accuracy, emulate, fp16, int8

STREET = "{package: ultralytics, glob: 'assets/*.jpg'}"
PHOTOS = "{package: skimage, glob: [data/astronaut.png, data/camera.png, data/chelsea.png, data/coffee.png]}"


def _fp16_gated(tolerance: str, *extra: str) -> str:
    """The manifest of one model ``net``: ``net.onnx`` built in FP16 from its FP16 ONNX, gated on two street
    photos under ``tolerance``; ``extra`` lines are more fields of the model."""
    fields = [
        "source: net.onnx",
        "precision: fp16",
        "fp16_via: onnx",
        "workspace: 128MiB",
        f"validation: {{images: {STREET}, count: 2, crops: 1}}",
        f"tolerance: {tolerance}",
        *extra,
    ]
    return "models:\n  net:\n" + "".join(f"    {field}\n" for field in fields)


# ------------------------------------------------------------------ an independent reference: numpy only


def _numpy_qdq_reference(model: onnx.ModelProto, image: np.ndarray) -> np.ndarray:
    """Evaluate a Q/DQ conv net with numpy alone, straight from the ONNX operator definitions:
    QuantizeLinear = saturate(round_half_even(x / scale) + zero_point), DequantizeLinear = (q - zp) * scale,
    Conv = cross-correlation with bias, Relu. Knows nothing of ONNX Runtime or trtbuild's emulation."""
    values = {tensor.name: numpy_helper.to_array(tensor).astype(np.float64) for tensor in model.graph.initializer}
    values[model.graph.input[0].name] = image.astype(np.float64)

    def per_axis(array: np.ndarray, rank: int, axis: int) -> np.ndarray:
        return array.reshape([-1 if dim == axis % rank else 1 for dim in range(rank)]) if array.ndim == 1 else array

    for node in model.graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        inputs = [values[name] for name in node.input if name]
        if node.op_type == "QuantizeLinear":
            x, scale, zero = inputs
            axis = attributes.get("axis", 1)
            q = np.round(x / per_axis(scale, x.ndim, axis)) + per_axis(zero, x.ndim, axis)  # numpy rounds half to even
            out = np.clip(q, -128, 127)
        elif node.op_type == "DequantizeLinear":
            q, scale, zero = inputs
            axis = attributes.get("axis", 1)
            out = (q - per_axis(zero, q.ndim, axis)) * per_axis(scale, q.ndim, axis)
        elif node.op_type == "Conv":
            x, w = inputs[0], inputs[1]
            pad = attributes.get("pads", [0, 0, 0, 0])[0]
            x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            k = w.shape[2]
            height, width = x.shape[2] - k + 1, x.shape[3] - k + 1
            windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, :height, :width]
            out = np.einsum("nchwij,ocij->nohw", windows, w)
            if len(inputs) > 2:
                out = out + inputs[2].reshape(1, -1, 1, 1)
        elif node.op_type == "Relu":
            out = np.maximum(inputs[0], 0)
        else:
            raise AssertionError(f"reference does not know {node.op_type}")
        values[node.output[0]] = out
    return values[model.graph.output[0].name]


def _qdq_net(folder: Path) -> tuple[Path, Path, list[dict[str, np.ndarray]]]:
    source = conv_net(folder / "net.onnx", batch=1, seed=4, channels=16, size=64)
    feeds = [{"input": photos.nchw01(image, 64)} for image in (photos.astronaut(), photos.bus())]
    quantized = folder / "net.int8.onnx"
    int8.quantize(source, quantized, feeds, "minmax", folder)
    return source, quantized, feeds


def test_int8_emulation_is_fake_quantization_in_fp32_and_matches_the_operator_definitions(tmp_path: Path) -> None:
    _, quantized, feeds = _qdq_net(tmp_path)
    model = onnx.load(str(quantized))
    emulated = emulate.emulate(model)
    assert emulated.kinds == [emulate.INT8_FAKE_QUANT]
    ops = {node.op_type for node in emulated.model.graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}, ops
    assert {tensor.data_type for tensor in emulated.model.graph.initializer} <= {TensorProto.FLOAT, TensorProto.INT64}
    session = emulate.session(emulated.model)
    for feed in feeds:
        ours = session.run(None, feed)[0].astype(np.float64)
        reference = _numpy_qdq_reference(model, feed["input"])
        scale = np.abs(reference).max()
        mismatch = np.abs(ours - reference) > 1e-4 * scale
        print(
            f"int8 emulation vs numpy: max |diff| {np.abs(ours - reference).max():.3g} of peak {scale:.3g}, "
            f"{mismatch.mean():.2e} of values off by more than 1e-4 of the peak"
        )
        assert mismatch.mean() < 1e-3  # only summation-order flips of a rounding boundary may differ
        assert accuracy.cosine(ours, reference) > 0.999999


def test_fp16_emulation_rounds_every_fp16_tensor_and_keeps_fp32_tensors(tmp_path: Path) -> None:
    source = conv_net(tmp_path / "net.onnx", batch=1, seed=3, channels=16, size=64)
    converted = fp16.convert(onnx.load(str(source))).model
    emulated = emulate.emulate(converted)
    assert emulated.kinds == [emulate.FP16_STORAGE]
    half = [node for node in converted.graph.node if node.op_type in ("Conv", "Relu")]
    assert {emulated.probes[probe][0] for probe in emulated.probes} >= {node.name for node in half}
    feed = {"input": photos.nchw01(photos.astronaut(), 64)}
    outputs = emulate.session(emulated.model).run(None, feed)
    reference = emulate.session(str(source)).run(None, feed)[0]
    error = np.abs(outputs[0] - reference).max()
    # what the unemulated FP16 graph gives in ONNX Runtime's CPU provider: FP16 computed in FP32
    import onnxruntime as ort

    plain = ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    print(f"fp16: emulated max |err| {error:.4g}, ONNX Runtime's FP16-as-FP32 {np.abs(plain - reference).max():.4g}")
    assert error > np.abs(plain - reference).max()  # activation rounding is seen on top of weight rounding
    exact = outputs[0].astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(outputs[0], exact)  # the output is an FP16 value


def _overflow_net(path: Path) -> Path:
    """conv -> Mul 4000 -> Relu -> Mul 1/4000: exact in FP32, inf in every FP16 engine."""
    rng = np.random.default_rng(5)
    weights = [
        numpy_helper.from_array((4 * rng.standard_normal((8, 3, 3, 3))).astype(np.float32), "w"),
        numpy_helper.from_array(np.array(4000, np.float32), "up"),
        numpy_helper.from_array(np.array(1 / 4000, np.float32), "down"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Mul", ["c", "up"], ["big"], name="scale_up"),
        helper.make_node("Relu", ["big"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "down"], ["output"], name="scale_down"),
    ]
    return save_graph(
        path,
        nodes,
        "overflow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 8, 64, 64])],
        weights,
    )


def test_an_fp16_overflow_fails_the_gate_naming_the_node(project: ProjectDir) -> None:
    _overflow_net(project.root / "net.onnx")
    project.write_manifest(_fp16_gated("{cosine_min: 0.99}", "inputs: {input: [1, 3, 64, 64]}"))
    run = project.trtbuild("all", "--json")
    assert run.code == 1, run.stdout + run.stderr
    reason = run.json()["models"]["net"]["reasons"][0]
    assert "FP16 overflow in node 'scale_up' (tensor 'big')" in reason and "> 65504" in reason, reason
    report = json.loads((project.root / "reports/net.accuracy.json").read_text())
    assert report["emulation"]["kinds"] == ["fp16-storage"]
    assert [item["node"] for item in report["fp16_overflow"]][:1] == ["scale_up"]
    assert report["fp16_overflow"][0]["peak"] > 65504
    assert not (project.root / "engines/net.engine").exists()
    table = project.trtbuild("accuracy")
    assert "fp16-storage" in table.stdout and "FP16 overflow in node 'scale_up'" in table.stdout


def test_the_accuracy_table_says_which_emulation_made_each_figure(project: ProjectDir) -> None:
    conv_net(project.root / "net.onnx", batch="N", seed=11, channels=16, size=64)
    project.write_manifest(f"""
        x-common: &common
          source: net.onnx
          inputs: {{input: {{min: [1, 3, 64, 64], opt: [1, 3, 64, 64], max: [2, 3, 64, 64]}}}}
          validation: {{images: {STREET}, count: 2, crops: 1}}
          workspace: 128MiB
          tolerance: {{cosine_min: 0.99}}
        models:
          net-int8: {{<<: *common, precision: int8, calibration: {{images: {PHOTOS}, count: 4, crops: 1}}}}
          net-fp16: {{<<: *common, precision: fp16, fp16_via: onnx}}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    table = project.trtbuild("accuracy").stdout
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "int8-fake-quant" in rows["net-int8"] and "fp16-storage" in rows["net-fp16"], table
    reports = json.loads(project.trtbuild("accuracy", "--json").stdout)
    assert reports["net-int8"]["emulation"]["runtime"].endswith("graph optimizations off")
    assert reports["net-fp16"]["outputs"]["output"]["max_abs"] > 0  # FP16 arithmetic, not FP32 on FP16 weights


# ------------------------------------------------------------------ figures that mean nothing


def _yolo_output(scores: float, anchors: int = 16) -> np.ndarray:
    """[1, 4 + 2 classes, anchors]: boxes spread over the image, and class 0 scores all equal to ``scores``."""
    centres = np.arange(anchors, dtype=np.float64) * 40 + 20
    boxes = np.stack([centres, centres, np.full(anchors, 20.0), np.full(anchors, 20.0)])
    return np.concatenate([boxes, np.full((1, anchors), scores), np.zeros((1, anchors))])[None].astype(np.float32)


def _images(*outputs: np.ndarray) -> list[list[np.ndarray]]:
    return [[output] for output in outputs]


def test_no_detections_is_no_evidence_not_full_agreement() -> None:
    quiet = _yolo_output(0.01)
    figures = accuracy.measure(["output0"], _images(quiet, quiet * 2), _images(quiet, quiet * 2), Head(kind="yolo"))
    assert figures["detections"] == 0 and figures["detection_agreement"] is None
    verdict = accuracy.judge(figures, Tolerance(detection_min=0.5))
    assert verdict.state == "cannot judge" and verdict.failures == []
    assert verdict.unjudged == [
        "detection agreement undefined: the FP32 model detects nothing above the threshold on the "
        "validation images; choose images with objects, or lower head.threshold"
    ]
    loud = _yolo_output(0.9)
    assert accuracy.measure(["o"], _images(loud), _images(loud), Head(kind="yolo"))["detection_agreement"] == 1.0


def test_an_all_zero_output_cannot_be_judged() -> None:
    zero = np.zeros((2, 7), np.float32)
    figures = accuracy.measure(["probabilities"], _images(zero, zero), _images(zero, zero), Head(kind="none"))
    assert figures["outputs"]["probabilities"]["cosine"] is None
    verdict = accuracy.judge(figures, Tolerance(cosine_min=0.99))
    assert verdict.state == "cannot judge"
    assert any("cosine undefined" in reason for reason in verdict.unjudged), verdict


@pytest.mark.parametrize(
    ("value", "shown"), [(0.99999963, "1-3.7e-07"), (0.998712, "0.998712"), (1.0, "1.000000"), (None, "undefined")]
)
def test_cosine_is_never_rounded_up_to_a_perfect_score(value: float | None, shown: str) -> None:
    assert accuracy.format_cosine(value) == shown


def test_a_bound_the_head_cannot_measure_fails() -> None:
    rng = np.random.default_rng(0)
    outputs = _images(*(rng.random((1, 7)).astype(np.float32) for _ in range(2)))
    figures = accuracy.measure(["scores"], outputs, outputs, Head(kind="none"))
    assert accuracy.judge(figures, Tolerance(top1_min=0.9)).failures == [
        "top-1 agreement cannot be measured: tolerance.top1_min needs head.kind classifier"
    ]


def test_a_scaled_or_offset_output_fails_by_default_where_the_cosine_passes() -> None:
    """An output at 1/3 of the reference (a weight clamped by a converter) has cosine 1; an offset one
    nearly so. The default relative-error bound sees both, for FP16 and INT8."""
    rng = np.random.default_rng(1)
    reference = _images(*(rng.random((1, 64)).astype(np.float32) + 0.5 for _ in range(4)))
    for reduced in ([[out[0] / 3] for out in reference], [[out[0] + 0.3] for out in reference]):
        figures = accuracy.measure(["y"], reference, reduced, Head(kind="none"))
        for precision in ("fp16", "int8"):
            verdict = accuracy.judge(figures, Tolerance(cosine_min=0.95), precision)
            assert verdict.state == "fail", (precision, verdict)
            assert verdict.failures[0].startswith("y: relative error"), verdict.failures
    scaled = accuracy.measure(["y"], reference, [[out[0] / 3] for out in reference], Head(kind="none"))
    assert scaled["outputs"]["y"]["cosine"] > 0.9999999  # the cosine alone would have passed it
    assert scaled["outputs"]["y"]["relative_error"] == pytest.approx(2 / 3, rel=1e-6)
    assert scaled["outputs"]["y"]["sqnr_db"] == pytest.approx(-20 * np.log10(2 / 3), rel=1e-6)


def test_an_output_that_does_not_depend_on_the_input_cannot_be_judged() -> None:
    """A random-initialised network's output is the same for every image: any quantization of it would
    pass on error figures, so the gate says it cannot judge."""
    constant = np.linspace(0.1, 1, 10, dtype=np.float32)[None]
    figures = accuracy.measure(
        ["y"], _images(constant, constant, constant), _images(constant, constant, constant), Head()
    )
    verdict = accuracy.judge(figures, Tolerance(cosine_min=0.99))
    assert verdict.state == "cannot judge" and not verdict.failures
    assert "the same for every validation image" in verdict.unjudged[0]
    single = accuracy.measure(["y"], _images(constant), _images(constant), Head())
    assert accuracy.judge(single, Tolerance()).state == "cannot judge"


def test_an_agreement_over_too_few_samples_cannot_be_judged() -> None:
    """8 detections cannot judge detection_min 0.85 (one miss is 12.5 points); 20 can."""
    few, many = _yolo_output(0.9, anchors=4), _yolo_output(0.9, anchors=10)
    figures = accuracy.measure(["o"], _images(few, few * 1.001), _images(few, few * 1.001), Head(kind="yolo"))
    assert figures["detections"] == 8
    verdict = accuracy.judge(figures, Tolerance(detection_min=0.85))
    assert verdict.state == "cannot judge" and "over 8 detections" in verdict.unjudged[0], verdict
    figures = accuracy.measure(["o"], _images(many, many * 1.001), _images(many, many * 1.001), Head(kind="yolo"))
    assert accuracy.judge(figures, Tolerance(detection_min=0.85)).state == "pass"
    assert [accuracy.samples_needed(bound) for bound in (0.5, 0.85, 0.95, 0.99, 1.0)] == [10, 10, 20, 100, 10]


def test_top_k_detections_in_another_order_agree() -> None:
    """One-to-one heads (YOLOv10, RT-DETR) emit [N, K, 6] rows; the reduced model may order them otherwise."""
    rng = np.random.default_rng(3)
    rows = []
    for index in range(12):
        x, y = 50.0 * index, 30.0 * index
        rows.append([x, y, x + 40, y + 40, 0.5 + rng.random() / 2, index % 3])
    reference = np.array([rows], np.float32)
    shuffled = reference[:, rng.permutation(12)]
    moved = shuffled.copy()
    moved[..., :4] += 1.0  # a pixel off: still IoU > 0.9
    outputs = [[reference], [reference * np.array([1, 1, 1, 1, 0.99, 1], np.float32)]]
    figures = accuracy.measure(["dets"], outputs, [[moved], [moved]], Head(kind="detections"))
    assert figures["detection_agreement"] == 1.0 and figures["detections"] == 24
    wrong_class = moved.copy()
    wrong_class[..., 5] = (wrong_class[..., 5] + 1) % 3
    figures = accuracy.measure(["dets"], outputs, [[wrong_class], [wrong_class]], Head(kind="detections"))
    assert figures["detection_agreement"] == 0.0


def test_keypoint_error_is_in_pixels_on_matched_detections() -> None:
    """A pose head: 1 class, 2 keypoints (x, y, visibility); the reduced model moves one keypoint by 3-4-5 px."""
    boxes = np.array([[100.0, 300.0], [100.0, 300.0], [50.0, 50.0], [50.0, 50.0]])
    scores = np.array([[0.9, 0.8]])
    keypoints = np.array([[90, 290], [95, 295], [1, 1], [110, 310], [105, 305], [1, 0.1]], np.float64)
    reference = np.concatenate([boxes, scores, keypoints])[None].astype(np.float32)
    reduced = reference.copy()
    reduced[0, 5, 1] += 3.0
    reduced[0, 6, 1] += 4.0
    head = Head(kind="yolo", classes=1, keypoints=2)
    figures = accuracy.measure(["pose"], [[reference], [reference]], [[reduced], [reduced]], head)
    assert figures["keypoint_error_px"] == pytest.approx(5.0)
    assert accuracy.judge(figures, Tolerance(keypoint_px_max=4.0)).failures[-1] == "keypoint error 5 px > 4.0 px"


def test_outputs_whose_shape_changes_per_image_are_compared_image_by_image() -> None:
    """Data-dependent shapes (NonZero, NMS): each image's output is compared with its own reference."""
    first, second = np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    figures = accuracy.measure(["boxes"], _images(first, second), _images(first, second + 0.001), Head())
    assert figures["outputs"]["boxes"]["max_abs"] == pytest.approx(0.001, rel=1e-3)
    assert accuracy.judge(figures, Tolerance()).state == "pass"
    mismatch = accuracy.measure(["boxes"], _images(first, second), _images(first, second[:3]), Head())
    assert accuracy.judge(mismatch, Tolerance()).failures == [
        "boxes: the reduced model's output shape differs ((4, 3) vs (3, 3))"
    ]


def test_stale_value_info_and_an_old_opset_do_not_change_what_is_emulated(tmp_path: Path) -> None:
    """MediaPipe's FaceMesh after tflite2onnx and the FP16 conversion: opset 11, and a value_info that calls
    the FP32 input FP16; ONNX's version converter would believe it and make the input FP16."""
    conv_net(tmp_path / "net.onnx", batch=1, seed=6, channels=8, size=32)
    source = onnx.load(str(tmp_path / "net.onnx"))
    source.opset_import[0].version = 11
    converted = fp16.convert(source).model
    converted.graph.value_info.append(helper.make_tensor_value_info("input", TensorProto.FLOAT16, [1, 3, 32, 32]))
    emulated = emulate.emulate(converted)
    assert emulated.model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    feed = {"input": photos.nchw01(photos.astronaut(), 32)}
    assert np.isfinite(emulate.session(emulated.model).run(None, feed)[0]).all()


# ------------------------------------------------------------------ no conversion changes a value silently


def _scale_net(path: Path, up: float, as_constant: bool) -> Path:
    """conv -> Mul ``up`` -> Relu -> Mul 1/``up``: small activations (peak ~1e3 at 30000), so FP16 can compute
    it, but onnxconverter-common's default clamping (+-1e4) stores ``up`` = 30000 as 10000 (outputs at 1/3)."""
    rng = np.random.default_rng(5)
    weights = [
        numpy_helper.from_array((0.01 * rng.standard_normal((8, 3, 3, 3))).astype(np.float32), "w"),
        numpy_helper.from_array(np.array(1 / up, np.float32), "down"),
    ]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv")]
    if as_constant:
        value = numpy_helper.from_array(np.array(up, np.float32))
        nodes.append(helper.make_node("Constant", [], ["up"], name="up_constant", value=value))
    else:
        weights.append(numpy_helper.from_array(np.array(up, np.float32), "up"))
    nodes += [
        helper.make_node("Mul", ["c", "up"], ["big"], name="scale_up"),
        helper.make_node("Relu", ["big"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "down"], ["output"], name="scale_down"),
    ]
    return save_graph(
        path,
        nodes,
        "scale",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 8, 64, 64])],
        weights,
    )


def test_the_default_converter_clamps_a_weight_and_the_gate_now_sees_it(tmp_path: Path) -> None:
    """The issue's case: onnxconverter-common's defaults store 30000 as 10000; the FP16 model computes 1/3
    of the FP32 one. The cosine reads it as perfect; the relative error fails it, and the conversion audit
    names the tensor."""
    from onnxconverter_common import float16

    source = onnx.load(str(_scale_net(tmp_path / "net.onnx", 30000.0, as_constant=False)))
    with pytest.warns(UserWarning):
        clamped = float16.convert_float_to_float16(source, keep_io_types=True)
    with pytest.raises(Exception, match=r"tensor 'up' \(node 'scale_up'\): 30000 becomes 10000 in FP16"):
        fp16.check_values(source, clamped)
    feeds = [{"input": photos.nchw01(image, 64)} for image in (photos.astronaut(), photos.bus())]
    reference = emulate.session(source)
    reduced = emulate.session(emulate.emulate(clamped).model)
    outputs = [reference.run(None, feed) for feed in feeds], [reduced.run(None, feed)[:1] for feed in feeds]
    figures = accuracy.measure(["output"], *outputs, Head())
    assert figures["outputs"]["output"]["cosine"] > 0.9999
    assert figures["outputs"]["output"]["relative_error"] == pytest.approx(2 / 3, abs=0.01)
    verdict = accuracy.judge(figures, Tolerance(cosine_min=0.999))
    assert verdict.state == "fail" and verdict.failures[0].startswith("output: relative error 0.66"), verdict


@pytest.mark.parametrize(("up", "as_constant"), [(30000.0, False), (1e5, True), (1e5, False)])
def test_a_weight_fp16_cannot_hold_keeps_its_value(project: ProjectDir, up: float, as_constant: bool) -> None:
    """30000 fits FP16 and is stored exactly (not clamped to 1e4); 1e5 does not fit, so its readers stay FP32
    (a ``Constant`` too: its FP32 output is not sent through FP16 and back). Either way the engine computes
    the FP32 function and the gate passes it."""
    _scale_net(project.root / "net.onnx", up, as_constant)
    project.write_manifest(_fp16_gated("{cosine_min: 0.999}", "inputs: {input: [1, 3, 64, 64]}"))
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    converted = onnx.load(str(project.root / "exports/net.fp16.onnx"))
    stored = {t.name: numpy_helper.to_array(t) for t in converted.graph.initializer}
    for node in converted.graph.node:
        if node.name == "up_constant":  # its output is renamed by the converter's casts
            stored["up"] = numpy_helper.to_array(node.attribute[0].t)
    assert float(stored["up"]) == up
    assert (stored["up"].dtype == np.float16) == (up < 65504)
    report = json.loads((project.root / "reports/net.accuracy.json").read_text())
    assert report["outputs"]["output"]["relative_error"] < 1e-2, report["outputs"]
    assert report["verdict"] == "pass" and (project.root / "engines/net.engine").is_file()
    log = (project.root / ".trtbuild/logs/net.fp16.log").read_text()
    assert ("FP16 cannot hold tensor 'up'" in log) == (up > 65504), log


# ------------------------------------------------------------------ a figure that cannot measure is not a pass


def _constant_net(path: Path) -> Path:
    """conv(input * 0) + bias: the same output for every image, like a random-initialised network's."""
    rng = np.random.default_rng(2)
    weights = [
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Mul", ["input", "zero"], ["blank"], name="blank"),
        helper.make_node("Conv", ["blank", "w", "b"], ["output"], pads=[1, 1, 1, 1], name="conv"),
    ]
    return save_graph(
        path,
        nodes,
        "constant",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 32, 32])],
        weights,
    )


def test_a_constant_output_cannot_be_judged_until_the_user_skips_the_gate(project: ProjectDir) -> None:
    _constant_net(project.root / "net.onnx")
    project.write_manifest(_fp16_gated("{cosine_min: 0.99}"))
    run = project.trtbuild("all", "--json")
    assert run.code == 1, run.stdout + run.stderr
    reason = run.json()["models"]["net"]["reasons"][0]
    assert reason.startswith(
        "accuracy gate cannot judge (reports/net.accuracy.json): output: the FP32 output is the same"
    )
    assert "models.net.gate: skip builds the engine unjudged" in reason, reason
    assert not (project.root / "engines/net.engine").exists()
    table = project.trtbuild("accuracy").stdout
    assert "CANNOT JUDGE" in table and "cannot judge: output: the FP32 output is the same" in table, table

    project.write_manifest(_fp16_gated("{cosine_min: 0.99}", "gate: skip"))
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.json()["models"]["net"]["notes"] == ["fp16, not gated (gate: skip)"]
    assert entries(project.lock())["net"]["components"]["settings"]["gate"] == "skip"
    assert not entries(project.lock(), "accuracy")  # no gate ran, none is recorded as passed
    plan = project.trtbuild("plan")
    assert plan.code == 0 and "fp16, not gated (gate: skip)" in plan.stdout, plan.stdout


def test_the_summary_prints_each_gate_figure_next_to_its_bound(project: ProjectDir) -> None:
    conv_net(project.root / "net.onnx", batch=1, seed=12, channels=8, size=64)
    project.write_manifest(_fp16_gated("{cosine_min: 0.999, max_abs: 10}"))
    run = project.trtbuild("all")
    assert run.code == 0, run.stdout + run.stderr
    line = next(line.strip() for line in run.stdout.splitlines() if line.strip().startswith("gate "))
    assert line.startswith("gate pass: output rel err "), line
    assert " <= 0.01" in line and " >= 0.999" in line and " <= 10" in line, line
    assert line.count("(tightest)") == 1, line


def test_int8_of_a_model_the_quantizer_leaves_unquantized_fails_at_the_int8_step(project: ProjectDir) -> None:
    """The onnx wheel's single-op node tests (Erf, MaxPool, ...): ModelOpt places no Q/DQ; the INT8 step says
    so instead of publishing an FP32 graph that the engine step then refuses as if TensorRT could not."""
    save_graph(
        project.root / "erf.onnx",
        [helper.make_node("Erf", ["input"], ["output"], name="erf")],
        "erf",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    project.write_manifest(f"""
        models:
          erf:
            source: erf.onnx
            precision: int8
            workspace: 64MiB
            calibration: {{images: {PHOTOS}, count: 2}}
            validation: {{images: {STREET}, count: 2}}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 1, run.stdout + run.stderr
    reason = run.json()["models"]["erf"]["reasons"][0]
    assert "INT8 quantization by modelopt placed no Q/DQ in this model (ops: Erf)" in reason, reason
    assert not (project.root / "exports/erf.int8.onnx").exists()
