"""Precision done right, with real photos: symmetric Q/DQ INT8, FP16 conversion, the accuracy gate, and
which Q/DQ patterns the builder accepts."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from conftest import ProjectDir, entries
from onnx_models import conv_net

from trtbuild.precision.int8 import zero_points

PHOTOS = "{package: skimage, glob: [data/astronaut.png, data/camera.png, data/chelsea.png, data/coffee.png]}"
STREET = "{package: ultralytics, glob: 'assets/*.jpg'}"


def precision_project(project: ProjectDir, tolerance: str = "{cosine_min: 0.99}") -> ProjectDir:
    conv_net(project.root / "net.onnx", batch="N", seed=11, channels=16, size=64)
    project.write_manifest(f"""
        x-common: &common
          source: net.onnx
          inputs: {{input: {{min: [1, 3, 64, 64], opt: [2, 3, 64, 64], max: [4, 3, 64, 64]}}}}
          validation: {{images: {STREET}, count: 4, crops: 2}}
          workspace: 256MiB
        models:
          net-int8:
            <<: *common
            precision: int8
            calibration: {{images: {PHOTOS}, count: 8, crops: 2, algorithm: minmax}}
            tolerance: {tolerance}
          net-fp16:
            <<: *common
            precision: fp16
            fp16_via: onnx
          net-fp32: {{<<: *common, precision: fp32}}
    """)
    return project


def test_int8_builds_from_a_symmetric_qdq_onnx_with_a_passing_report(project: ProjectDir) -> None:
    precision_project(project)
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.statuses() == {"net-int8": "built", "net-fp16": "built", "net-fp32": "built"}
    qdq = onnx.load(str(project.root / "exports/net-int8.int8.onnx"))
    points = zero_points(qdq)
    assert len(points) >= 4 and set(points.values()) == {0}  # every zero point is 0: symmetric
    types = {init.name: init.data_type for init in qdq.graph.initializer}
    assert {types[name] for name in points} == {onnx.TensorProto.INT8}
    scales = [init for init in qdq.graph.initializer if init.name.endswith("_scale") and init.dims]
    assert scales, "per-channel weight scales"
    lock = project.lock()
    assert {
        "int8:exports/net-int8.int8.onnx",
        "accuracy:reports/net-int8.accuracy.json",
        "fp16:exports/net-fp16.fp16.onnx",
        "accuracy:reports/net-fp16.accuracy.json",
    } <= set(lock["steps"])
    report = json.loads((project.root / "reports/net-int8.accuracy.json").read_text())
    assert report["passed"] and report["images"] == 4
    assert 0.99 <= report["outputs"]["output"]["cosine"] <= 1.0
    table = project.trtbuild("accuracy")
    assert table.code == 0 and "net-int8" in table.stdout and "net-fp16" in table.stdout


def test_the_gate_fails_a_too_tight_tolerance_with_the_figures(project: ProjectDir) -> None:
    precision_project(project, tolerance="{cosine_min: 0.99999999, max_abs: 0.000001}")
    run = project.trtbuild("all", "--json")
    assert run.code == 1
    models = run.json()["models"]
    assert models["net-fp16"]["status"] == "built" and models["net-fp32"]["status"] == "built"
    assert models["net-int8"]["status"] == "failed"
    reason = models["net-int8"]["reasons"][0]
    assert reason.startswith("accuracy gate failed (reports/net-int8.accuracy.json): output: cosine 0.99")
    assert "< 0.99999999" in reason and "max abs error" in reason and "> 1e-06" in reason
    assert not (project.root / "engines/net-int8.engine").exists()
    report = json.loads((project.root / "reports/net-int8.accuracy.json").read_text())
    assert report["passed"] is False and len(report["failures"]) == 2  # kept for diagnosis
    assert "net-int8" not in entries(project.lock(), "accuracy")  # never recorded as passed
    again = project.trtbuild("plan", "--json").json()["models"]["net-int8"]
    assert "accuracy: never validated" in again["reasons"]


def test_calibration_key_covers_images_settings_and_preprocessing(project: ProjectDir) -> None:
    precision_project(project)
    assert project.trtbuild("all").code == 0
    manifest = project.root / "builds.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("count: 8, crops: 2, algorithm: minmax", "count: 8, crops: 2, algorithm: entropy"))
    reasons = project.trtbuild("plan", "--json").json()["models"]["net-int8"]["reasons"]
    assert reasons[0] == "int8: calibration.algorithm minmax -> entropy"
    manifest.write_text(
        text.replace("data/coffee.png]", "data/coffee.png, data/motorcycle_left.png]").replace(
            "count: 8, crops: 2", "count: 10, crops: 2"
        )
    )
    reasons = project.trtbuild("plan", "--json").json()["models"]["net-int8"]["reasons"]
    assert "int8: calibration.count 8 -> 10" in reasons
    assert "int8: images.motorcycle_left.png none -> " + _sha256_of_skimage("motorcycle_left.png") in reasons
    manifest.write_text(text.replace("  workspace: 256MiB", "  workspace: 256MiB\n  preprocess: {color: bgr}"))
    reasons = project.trtbuild("plan", "--json").json()["models"]["net-int8"]["reasons"]
    assert "int8: preprocess.color rgb -> bgr" in reasons


def _sha256_of_skimage(name: str) -> str:
    import hashlib

    import skimage

    return hashlib.sha256((Path(skimage.__file__).parent / "data" / name).read_bytes()).hexdigest()


def test_validation_images_must_be_kept_apart_from_calibration(project: ProjectDir) -> None:
    precision_project(project)
    manifest = project.root / "builds.yaml"
    manifest.write_text(
        manifest.read_text().replace(f"validation: {{images: {STREET}", f"validation: {{images: {PHOTOS}")
    )
    run = project.trtbuild("build", "net-int8", "--json")
    assert run.code == 1
    assert (
        "validation images must be kept apart from calibration images; 4 are in both"
        in run.json()["models"]["net-int8"]["reasons"][0]
    )


def test_the_fp16_conversion_keeps_fp32_io_and_converts_the_weights(project: ProjectDir) -> None:
    precision_project(project)
    assert project.trtbuild("build", "net-fp16").code == 0
    model = onnx.load(str(project.root / "exports/net-fp16.fp16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {init.data_type for init in model.graph.initializer} == {onnx.TensorProto.FLOAT16}


def _quantized(tmp_path: Path, **options: object) -> Path:
    import photos
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter([{"input": photos.nchw01(image, 64)} for image in (photos.astronaut(), photos.bus())])

        def get_next(self) -> dict | None:
            return next(self.remaining, None)

    source = conv_net(tmp_path / "source.onnx", batch=1, seed=4, size=64)
    target = tmp_path / "net.onnx"
    quantize_static(
        str(source),
        str(target),
        Feeds(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv"],
        **options,
    )
    return target


@pytest.mark.parametrize(
    ("case", "options", "rejection"),
    [
        (
            "asymmetric uint8 activations",
            {"activation_type": "QUInt8", "extra_options": {"WeightSymmetric": True, "QuantizeBias": False}},
            "Non-zero zero point is not supported",
        ),
        (
            "int32 bias Q/DQ",
            {"activation_type": "QInt8", "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True}},
            "input has type Int32 but must have type",
        ),
        (
            "symmetric int8, bias unquantized",
            {
                "activation_type": "QInt8",
                "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
            },
            None,
        ),
    ],
)
def test_which_qdq_patterns_the_builder_accepts(
    project: ProjectDir, case: str, options: dict, rejection: str | None
) -> None:
    from onnxruntime.quantization import QuantType

    options = dict(options, activation_type=getattr(QuantType, str(options["activation_type"])))
    _quantized(project.root, **options)
    # a ready-made Q/DQ ONNX carries its own precision: build it as is and see what the builder makes of it
    project.write_manifest("models:\n  net: {source: net.onnx, workspace: 128MiB}\n")
    run = project.trtbuild("all", "--json")
    if rejection is None:
        assert run.code == 0, (case, run.stdout)
    else:
        assert run.code == 1, case
        assert rejection in run.stdout + run.stderr, (case, run.stdout)


def test_both_quantizers_build_and_the_choice_is_in_the_key(project: ProjectDir) -> None:
    precision_project(project)
    manifest = project.root / "builds.yaml"
    text = manifest.read_text()
    assert project.trtbuild("build", "net-int8").code == 0
    log = (project.root / ".trtbuild/logs/net-int8.int8.log").read_text()
    assert "INT8: modelopt, calibrated on 8 images (minmax)" in log  # ModelOpt is the default quantizer
    components = entries(project.lock(), "int8")["net-int8"]["components"]
    assert components["params"]["calibration"]["quantizer"] == "modelopt" and components["versions"]["nvidia-modelopt"]
    manifest.write_text(text.replace("algorithm: minmax}", "algorithm: minmax, quantizer: onnxruntime}"))
    reasons = project.trtbuild("plan", "--json").json()["models"]["net-int8"]["reasons"]
    assert "int8: calibration.quantizer modelopt -> onnxruntime" in reasons
    run = project.trtbuild("build", "net-int8", "--json")
    assert run.code == 0, run.stdout
    assert (
        "INT8: onnxruntime, calibrated on 8 images (minmax)"
        in (project.root / ".trtbuild/logs/net-int8.int8.log").read_text()
    )
    manifest.write_text(text.replace("algorithm: minmax}", "algorithm: percentile}"))
    refused = project.trtbuild("plan")
    assert refused.code == 2 and "percentile needs quantizer: onnxruntime" in refused.stderr
    manifest.write_text(text.replace(", algorithm: minmax}", "}"))
    assert (
        "int8: calibration.algorithm minmax -> entropy"
        in project.trtbuild("plan", "--json").json()["models"]["net-int8"]["reasons"]
    )


def test_fp16_by_modelopt_autocast_is_a_manifest_choice_with_calibration_images(project: ProjectDir) -> None:
    precision_project(project)
    manifest = project.root / "builds.yaml"
    manifest.write_text(
        manifest.read_text()
        + f"""  net-autocast:
    <<: *common
    precision: fp16
    fp16_via: onnx
    fp16_converter: autocast
    calibration: {{images: {PHOTOS}, count: 4, crops: 1}}
"""
    )
    run = project.trtbuild("build", "net-autocast", "net-fp16", "--json")
    assert run.code == 0, run.stdout + run.stderr
    lock = entries(project.lock(), "fp16")
    assert lock["net-autocast"]["components"]["params"]["converter"] == "autocast"
    assert lock["net-fp16"]["components"]["params"]["converter"] == "onnxconverter-common"
    model = onnx.load(str(project.root / "exports/net-autocast.fp16.onnx"))
    assert onnx.TensorProto.FLOAT16 in {init.data_type for init in model.graph.initializer}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O kept FP32
    report = json.loads((project.root / "reports/net-autocast.accuracy.json").read_text())
    assert report["passed"] and report["emulation"]["kinds"] == ["fp16-storage"]
    manifest.write_text(
        manifest.read_text().replace("    calibration: {images: " + PHOTOS + ", count: 4, crops: 1}\n", "")
    )
    refused = project.trtbuild("plan")
    assert refused.code == 2 and "fp16_converter autocast needs a calibration: spec" in refused.stderr
