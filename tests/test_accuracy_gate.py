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
from conftest import ProjectDir
from onnx import TensorProto, helper, numpy_helper
from onnx_models import conv_net, save_graph

from trtbuild.manifest.schema import Head, Tolerance
from trtbuild.precision import accuracy, emulate, fp16, int8

STREET = "{package: ultralytics, glob: 'assets/*.jpg'}"
PHOTOS = "{package: skimage, glob: [data/astronaut.png, data/camera.png, data/chelsea.png, data/coffee.png]}"


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
    converted = fp16.convert(onnx.load(str(source)))
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
    project.write_manifest(f"""
        models:
          net:
            source: net.onnx
            inputs: {{input: [1, 3, 64, 64]}}
            precision: fp16
            fp16_via: onnx
            workspace: 128MiB
            validation: {{images: {STREET}, count: 2, crops: 1}}
            tolerance: {{cosine_min: 0.99}}
    """)
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


def _yolo_output(scores: float) -> np.ndarray:
    """[1, 4 + 2 classes, 16 anchors]: boxes, and class scores all equal to ``scores``."""
    boxes = np.tile(np.array([[100.0], [100.0], [20.0], [20.0]]), (1, 16))
    return np.concatenate([boxes, np.full((2, 16), scores)])[None].astype(np.float32)


def test_no_detections_is_no_evidence_not_full_agreement() -> None:
    quiet = _yolo_output(0.01)
    figures = accuracy.measure(["output0"], [[quiet]], [[quiet * 1.01]], Head(kind="yolo"))
    assert figures["detections"] == 0 and figures["detection_agreement"] is None
    failures = accuracy.judge(figures, Tolerance(detection_min=0.5))
    assert failures == [
        "detection agreement undefined: the FP32 model detects nothing above the threshold on the "
        "validation images; choose images with objects, or lower head.threshold"
    ]
    loud = _yolo_output(0.9)
    assert accuracy.measure(["output0"], [[loud]], [[loud]], Head(kind="yolo"))["detection_agreement"] == 1.0


def test_an_all_zero_output_has_no_cosine() -> None:
    zero = np.zeros((2, 7), np.float32)
    figures = accuracy.measure(["probabilities"], [[zero]], [[zero]], Head(kind="none"))
    assert figures["outputs"]["probabilities"]["cosine"] is None
    assert "cosine undefined" in accuracy.judge(figures, Tolerance(cosine_min=0.99))[0]
    assert accuracy.judge(figures, Tolerance(max_abs=0.0)) == []  # a bound that can be shown still passes


@pytest.mark.parametrize(
    ("value", "shown"), [(0.99999963, "1-3.7e-07"), (0.998712, "0.998712"), (1.0, "1.000000"), (None, "undefined")]
)
def test_cosine_is_never_rounded_up_to_a_perfect_score(value: float | None, shown: str) -> None:
    assert accuracy.format_cosine(value) == shown


def test_a_bound_the_head_cannot_measure_fails() -> None:
    output = np.ones((1, 7), np.float32)
    figures = accuracy.measure(["scores"], [[output]], [[output]], Head(kind="none"))
    assert accuracy.judge(figures, Tolerance(top1_min=0.9)) == [
        "top-1 agreement cannot be measured: tolerance.top1_min needs head.kind classifier"
    ]


def test_stale_value_info_and_an_old_opset_do_not_change_what_is_emulated(tmp_path: Path) -> None:
    """MediaPipe's FaceMesh after tflite2onnx and the FP16 conversion: opset 11, and a value_info that calls
    the FP32 input FP16; ONNX's version converter would believe it and make the input FP16."""
    conv_net(tmp_path / "net.onnx", batch=1, seed=6, channels=8, size=32)
    source = onnx.load(str(tmp_path / "net.onnx"))
    source.opset_import[0].version = 11
    converted = fp16.convert(source)
    converted.graph.value_info.append(helper.make_tensor_value_info("input", TensorProto.FLOAT16, [1, 3, 32, 32]))
    emulated = emulate.emulate(converted)
    assert emulated.model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    feed = {"input": photos.nchw01(photos.astronaut(), 32)}
    assert np.isfinite(emulate.session(emulated.model).run(None, feed)[0]).all()
