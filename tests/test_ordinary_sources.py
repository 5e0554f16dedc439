"""The gate runs what the engine runs, on ordinary models (issue 20): a static batch above 1 is fed whole
batches, an ONNX that is already FP16 is built as it is and judged against itself, a source that fails
ONNX's full check holds its FP16 and INT8 ONNX to the checks it passes itself, weights kept as external
data reach every step, and a model that takes no image is fed declared arrays or seeded random values.
Real ONNX files, real quantizers, real engine builds through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import ProjectDir
from onnx import TensorProto, helper
from onnx_models import conv_net, mlp_net

from trtbuild.errors import BuildError
from trtbuild.manifest.precision_fields import Preprocess, Sample
from trtbuild.precision import emulate, images
from trtbuild.precision.validate import check_produced

STREET = "{package: ultralytics, glob: 'assets/*.jpg'}"
PHOTOS = "{package: skimage, glob: [data/astronaut.png, data/camera.png, data/chelsea.png, data/coffee.png]}"


def _log(project: ProjectDir, name: str) -> str:
    return (project.root / ".trtbuild/logs" / name).read_text()


def _report(project: ProjectDir, model: str) -> dict:
    return json.loads((project.root / f"reports/{model}.accuracy.json").read_text())


# ------------------------------------------------------------------ 1. a static batch above 1


def test_a_batch_feed_holds_consecutive_images_and_the_last_one_repeats_the_first() -> None:
    sample = Sample.model_validate(
        {"images": {"package": "ultralytics", "glob": "assets/*.jpg"}, "count": 3, "crops": 2}
    )
    plan = images.sample_plan(sample, Path("."))
    single = images.batches(plan, Preprocess(), "input", [1, 3, 32, 32])
    paired = images.batches(plan, Preprocess(), "input", [2, 3, 32, 32])
    assert [feed["input"].shape for feed in single] == [(1, 3, 32, 32)] * 3
    assert [feed["input"].shape for feed in paired] == [(2, 3, 32, 32)] * 2
    rows = [row for feed in paired for row in feed["input"]]
    for row, expected in zip(rows, [0, 1, 2, 0]):  # images 0-1, then 2 completed by image 0
        np.testing.assert_array_equal(row, single[expected]["input"][0])
    assert images.real_images(3, 2) == [2, 1] and images.real_images(3, 1) == [1, 1, 1]
    assert images.real_images(1, 4) == [1]


@pytest.mark.parametrize("declared", ["static, declared", "static, not declared", "dynamic, profile from 2"])
def test_a_static_batch_of_two_is_calibrated_and_validated_in_batches_of_two(
    project: ProjectDir, declared: str
) -> None:
    """conv_net with input [2, 3, 64, 64]: FP16 through the ONNX and INT8 with both quantizers build end to
    end, fed [2, 3, 64, 64] (ONNX Runtime refuses batch 1 for a static batch 2: "index: 0 Got: 1 Expected:
    2"). Three images at batch 2: the last feed is completed by the first image, and the gate's figures
    are per image (3, not 4)."""
    dynamic = declared.startswith("dynamic")
    conv_net(project.root / "net.onnx", batch="N" if dynamic else 2, seed=21, size=64)
    inputs = {
        "static, declared": "inputs: {input: [2, 3, 64, 64]}",
        "static, not declared": "",
        "dynamic, profile from 2": "inputs: {input: {min: [2, 3, 64, 64], opt: [2, 3, 64, 64], max: [4, 3, 64, 64]}}",
    }[declared]
    project.write_manifest(f"""
        x-common: &common
          source: net.onnx
          {inputs}
          validation: {{images: {STREET}, count: 3, crops: 2}}
          workspace: 128MiB
          tolerance: {{cosine_min: 0.99}}
        models:
          net-fp16: {{<<: *common, precision: fp16, fp16_via: onnx}}
          net-int8: {{<<: *common, precision: int8, calibration: {{images: {PHOTOS}, count: 3, crops: 1}}}}
          net-int8-ort:
            <<: *common
            precision: int8
            calibration: {{images: {PHOTOS}, count: 3, crops: 1, quantizer: onnxruntime}}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.statuses() == {"net-fp16": "built", "net-int8": "built", "net-int8-ort": "built"}
    for model in ("net-fp16", "net-int8", "net-int8-ort"):
        assert (project.root / f"engines/{model}.engine").is_file()
        report = _report(project, model)
        assert report["verdict"] == "pass" and report["images"] == 3, report
        assert report["outputs"]["output"]["spread"] > 0.01, report["outputs"]
    for model, quantizer in (("net-int8", "modelopt"), ("net-int8-ort", "onnxruntime")):
        log = _log(project, f"{model}.int8.log")
        assert f"INT8: {quantizer}, calibrated on 3 images in 2 batches of 2" in log, log


# ------------------------------------------------------------------ 2. an ONNX that is already FP16


def _fp16_source(path: Path, keep_io_types: bool) -> Path:
    from onnxconverter_common import float16

    conv_net(path.with_suffix(".fp32.onnx"), seed=22, size=64)
    half = float16.convert_float_to_float16(onnx.load(str(path.with_suffix(".fp32.onnx"))), keep_io_types=keep_io_types)
    onnx.checker.check_model(half, full_check=True)
    onnx.save(half, str(path))
    return path


@pytest.mark.parametrize("keep_io_types", [True, False])
def test_an_onnx_that_is_already_fp16_is_built_as_it_is_and_judged_against_itself(
    project: ProjectDir, keep_io_types: bool
) -> None:
    source = _fp16_source(project.root / "half.onnx", keep_io_types)
    project.write_manifest(f"""
        models:
          net:
            source: half.onnx
            precision: fp16
            workspace: 128MiB
            validation: {{images: {STREET}, count: 2, crops: 1}}
            tolerance: {{cosine_min: 0.999}}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert (project.root / "engines/net.engine").is_file()
    written = onnx.load(str(project.root / "exports/net.fp16.onnx"))
    assert written.graph == onnx.load(str(source)).graph  # unchanged, not converted again
    log = _log(project, "net.fp16.log")
    assert "the source is already FP16 (3 FP16 weights" in log and "written unchanged" in log, log
    assert ("FP16 inputs ['input']" in log) == (not keep_io_types), log
    report = _report(project, "net")
    assert report["verdict"] == "pass" and report["emulation"]["kinds"] == ["fp16-storage"], report
    assert report["emulation"]["reference"].startswith("the source itself, already FP16"), report["emulation"]
    # the reference is the source as ONNX Runtime runs it (FP16 weights, FP32 arithmetic): the figures show
    # the engine's activation rounding, not zero
    assert 0 < report["outputs"]["output"]["relative_error"] < 1e-2, report["outputs"]


def test_an_fp16_input_is_emulated_from_fp32_images_rounded_where_they_enter(tmp_path: Path) -> None:
    source = _fp16_source(tmp_path / "half.onnx", keep_io_types=False)
    emulated = emulate.emulate(onnx.load(str(source)))
    assert [value.type.tensor_type.elem_type for value in emulated.model.graph.input] == [TensorProto.FLOAT]
    assert (emulate.GRAPH_INPUT, "input") in emulated.probes.values()  # the input's rounding is probed too
    image = np.random.default_rng(0).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    run_as_is = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    (expected,) = run_as_is.run(None, {"input": image.astype(np.float16)})
    got = emulate.session(emulated.model).run(None, {"input": image})[0]
    assert got.dtype == np.float32 and expected.dtype == np.float16
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=2e-2, atol=2e-2)
    # the same FP16 values enter: rounding the image first changes nothing
    rounded = emulate.session(emulated.model).run(None, {"input": image.astype(np.float16).astype(np.float32)})[0]
    np.testing.assert_array_equal(got, rounded)


# ------------------------------------------------------------------ 3. a source that fails the full check


def _stale_value_info(path: Path) -> Path:
    """conv_net with a ``value_info`` for ``c1`` declaring [1, 8, 16, 16] where inference gives [1, 8, 64, 64]:
    the structural check passes, the full check fails, ONNX Runtime loads it (a lenient merge)."""
    conv_net(path, seed=23, size=64)
    model = onnx.load(str(path))
    model.graph.value_info.append(helper.make_tensor_value_info("c1", TensorProto.FLOAT, [1, 8, 16, 16]))
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))
    with pytest.raises(onnx.shape_inference.InferenceError, match="differ in dimension 2"):
        onnx.checker.check_model(str(path), full_check=True)
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return path


def test_a_source_that_fails_the_full_check_builds_in_fp16_and_int8(project: ProjectDir) -> None:
    _stale_value_info(project.root / "net.onnx")
    project.write_manifest(f"""
        x-common: &common
          source: net.onnx
          validation: {{images: {STREET}, count: 2, crops: 1}}
          workspace: 128MiB
          tolerance: {{cosine_min: 0.99}}
        models:
          net-fp32: {{source: net.onnx, workspace: 128MiB}}
          net-fp16: {{<<: *common, precision: fp16, fp16_via: onnx}}
          net-int8: {{<<: *common, precision: int8, calibration: {{images: {PHOTOS}, count: 4, crops: 1}}}}
          net-int8-ort:
            <<: *common
            precision: int8
            calibration: {{images: {PHOTOS}, count: 4, crops: 1, quantizer: onnxruntime}}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert set(run.statuses().values()) == {"built"}, run.statuses()
    for log in ("net-fp16.fp16.log", "net-int8.int8.log", "net-int8-ort.int8.log"):
        text = _log(project, log)
        assert "the source fails onnx.checker's full check ([ShapeInferenceError]" in text, text
        assert "held to what the source passes: onnx.checker (structure) and loading in ONNX Runtime" in text, text
    for model in ("net-fp16", "net-int8", "net-int8-ort"):
        assert _report(project, model)["verdict"] == "pass"
        assert (project.root / f"engines/{model}.engine").is_file()


def test_a_produced_onnx_is_held_to_the_checks_its_source_passes(tmp_path: Path) -> None:
    good = conv_net(tmp_path / "good.onnx", seed=24, size=64)
    stale = _stale_value_info(tmp_path / "stale.onnx")
    assert check_produced(good, "FP16 conversion", source=good).startswith("passes onnx.checker (full)")
    with pytest.raises(BuildError, match=r"^FP16 conversion produced an invalid ONNX \(onnx.checker, full check\)"):
        check_produced(stale, "FP16 conversion", source=good)  # a defect the step made: refused
    assert "the source fails onnx.checker's full check" in check_produced(stale, "FP16 conversion", source=stale)
    unsorted = tmp_path / "unsorted.onnx"  # fails the structural check, which the source passes
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["r"], ["output"], name="second"),
            helper.make_node("Relu", ["input"], ["r"], name="first"),
        ],
        "unsorted",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(unsorted))
    with pytest.raises(BuildError, match=r"^INT8 quantization produced an invalid ONNX \(onnx.checker\): .*sorted"):
        check_produced(unsorted, "INT8 quantization", source=stale)


# ------------------------------------------------------------------ 4. weights kept as external data


def test_a_source_with_external_data_builds_in_fp16_and_int8_with_both_quantizers(project: ProjectDir) -> None:
    """Every weight of conv_net in ``net.onnx.data`` beside ``net.onnx``: ModelOpt's scratch copy took the
    ``.onnx`` alone before ("net.onnx.data: No such file")."""
    conv_net(project.root / "plain.onnx", seed=25, size=64)
    onnx.save_model(
        onnx.load(str(project.root / "plain.onnx")),
        str(project.root / "net.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="net.onnx.data",
        size_threshold=0,
    )
    (project.root / "plain.onnx").unlink()
    assert not onnx.load(str(project.root / "net.onnx"), load_external_data=False).graph.initializer[0].raw_data
    project.write_manifest(f"""
        x-common: &common
          source: net.onnx
          validation: {{images: {STREET}, count: 10, crops: 5}}
          workspace: 128MiB
        models:
          net-fp32: {{source: net.onnx, workspace: 128MiB}}
          net-fp16: {{<<: *common, precision: fp16, fp16_via: onnx}}
          net-int8: {{<<: *common, precision: int8, calibration: {{images: {PHOTOS}, count: 4}}}}
          net-int8-ort:
            <<: *common
            precision: int8
            calibration: {{images: {PHOTOS}, count: 4, quantizer: onnxruntime}}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert set(run.statuses().values()) == {"built"}, run.statuses()
    for model in ("net-fp16", "net-int8", "net-int8-ort"):
        report = _report(project, model)
        assert report["verdict"] == "pass" and report["images"] == 10, report
        assert report["outputs"]["output"]["spread"] > 0.01, report["outputs"]


# ------------------------------------------------------------------ 5. a model that takes no image


def test_a_model_that_takes_no_image_is_judged_on_random_values_and_calibrated_on_declared_arrays(
    project: ProjectDir,
) -> None:
    """mlp_net's inputs are [1, 16]: FP16 is judged on 12 seeded uniform samples, INT8 is calibrated on
    8 declared ``.npy`` files (shape [16]: the batch dim may be left out); the two-input variant takes
    ``.npz`` files with one array per input. Both quantizers' figures are real (a spread, an error)."""
    mlp_net(project.root / "mlp.onnx", seed=26)
    mlp_net(project.root / "pair.onnx", inputs=2, seed=27)
    rng = np.random.default_rng(28)
    (project.root / "calibration").mkdir()
    for index in range(8):
        np.save(project.root / f"calibration/{index:02d}.npy", rng.uniform(-2, 2, 16).astype(np.float32))
        np.savez(
            project.root / f"calibration/{index:02d}.npz",
            x=rng.uniform(-2, 2, (1, 16)).astype(np.float32),
            t=rng.uniform(-2, 2, (1, 16)).astype(np.float32),
        )
    project.write_manifest("""
        x-common: &common
          workspace: 128MiB
          validation: {random: {seed: 3, low: -2, high: 2}, count: 12}
        models:
          mlp-fp16: {<<: *common, source: mlp.onnx, precision: fp16, fp16_via: onnx}
          mlp-int8:
            <<: *common
            source: mlp.onnx
            precision: int8
            calibration: {npy: calibration/*.npy, quantizer: onnxruntime}
          pair-int8:
            <<: *common
            source: pair.onnx
            precision: int8
            calibration: {npy: calibration/*.npz, quantizer: onnxruntime}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert set(run.statuses().values()) == {"built"}, run.statuses()
    for model, bound in (("mlp-fp16", 1e-2), ("mlp-int8", 0.2), ("pair-int8", 0.2)):
        report = _report(project, model)
        assert report["verdict"] == "pass" and report["images"] == 12, report
        output = report["outputs"]["y"]
        assert output["spread"] > 0.05 and 0 < output["relative_error"] <= bound, output
    assert "calibrated on 8 arrays" in _log(project, "mlp-int8.int8.log")
    # the arrays are keyed: a changed file makes the INT8 step, and only what follows it, stale
    np.save(project.root / "calibration/03.npy", rng.uniform(-2, 2, 16).astype(np.float32))
    plan = project.trtbuild("plan", "--json").json()["models"]
    assert plan["mlp-fp16"]["reasons"] == [] and plan["pair-int8"]["reasons"] == [], plan
    assert any("03.npy" in reason for reason in plan["mlp-int8"]["reasons"]), plan["mlp-int8"]


def test_images_for_a_model_that_takes_no_image_fail_naming_the_field(project: ProjectDir) -> None:
    mlp_net(project.root / "mlp.onnx", seed=29)
    project.write_manifest(f"""
        models:
          mlp:
            source: mlp.onnx
            precision: int8
            workspace: 128MiB
            calibration: {{images: {PHOTOS}, quantizer: onnxruntime}}
            validation: {{random: {{}}}}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 1 and run.statuses() == {"mlp": "failed"}, run.stdout + run.stderr
    (reason,) = run.json()["models"]["mlp"]["reasons"]
    assert reason == (
        "builds.yaml:6: models.mlp.calibration: images feed one NCHW image input; mlp.onnx takes x [1, 16]: "
        "give calibration: {npy: FILES}"
    ), reason


@pytest.mark.parametrize(
    ("calibration", "validation", "message"),
    [
        ("{random: {}}", "{random: {}}", "calibration from random values gives INT8 scales for noise"),
        ("{npy: a/*.npy}", "{random: {low: 1, high: 1}}", "low 1.0 must be below high 1.0"),
        ("{npy: a/*.npy, images: {glob: '*.png'}}", "{random: {}}", "give one of images, npy, random, not images and"),
        ("{npy: a/*.npy}", "{count: 4}", "give one of images, npy, random"),
    ],
)
def test_a_sample_that_cannot_feed_a_gate_is_refused_when_the_manifest_is_read(
    project: ProjectDir, calibration: str, validation: str, message: str
) -> None:
    mlp_net(project.root / "mlp.onnx", seed=30)
    project.write_manifest(f"""
        models:
          mlp:
            source: mlp.onnx
            precision: int8
            calibration: {calibration}
            validation: {validation}
    """)
    run = project.trtbuild("plan")
    assert run.code == 2, run.stdout + run.stderr
    assert "builds.yaml:" in run.stderr and "models.mlp." in run.stderr and message in run.stderr, run.stderr


def test_an_array_file_that_does_not_fit_the_input_fails_naming_the_file(project: ProjectDir) -> None:
    mlp_net(project.root / "pair.onnx", inputs=2, seed=31)
    (project.root / "arrays").mkdir()
    np.savez(project.root / "arrays/00.npz", x=np.zeros((1, 16), np.float32))
    np.save(project.root / "arrays/01.npy", np.zeros((1, 8), np.float32))
    project.write_manifest("""
        x-common: &common {source: pair.onnx, precision: fp16, fp16_via: onnx, workspace: 128MiB}
        models:
          missing: {<<: *common, validation: {npy: arrays/00.npz}}
          one-array: {<<: *common, validation: {npy: arrays/01.npy}}
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 1, run.stdout + run.stderr
    reasons = {name: model["reasons"][0] for name, model in run.json()["models"].items()}
    assert "00.npz: no array 't' (holds ['x']; inputs ['x', 't'])" in reasons["missing"], reasons
    assert "01.npy: a .npy holds one array; this model has inputs ['x', 't']: give .npz" in reasons["one-array"]
