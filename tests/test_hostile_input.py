"""Broken or hostile input: one clear line naming file, model and field; exit code 2; nothing written."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import ProjectDir
from onnx import TensorProto, helper, numpy_helper
from onnx_models import conv_net


def refused(project: ProjectDir, manifest: str) -> str:
    project.write_manifest(manifest)
    run = project.trtbuild("all")
    assert run.code == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    for written in ("builds.lock", "engines", "exports"):
        assert not (project.root / written).exists(), written
    return run.stderr


def test_an_engine_output_behind_a_symlink_pointing_out_is_refused(
    project: ProjectDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (project.root / "out").symlink_to(outside, target_is_directory=True)
    conv_net(project.root / "m.onnx")
    stderr = refused(project, "models:\n  m:\n    source: m.onnx\n    output: out/m.engine\n")
    assert "builds.yaml:4: models.m.output: 'out/m.engine' is outside the project folder" in stderr
    assert list(outside.iterdir()) == []


def test_external_data_pointing_outside_the_model_folder_is_refused(project: ProjectDir) -> None:
    weights = numpy_helper.from_array(np.ones((8, 8), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [weights],
    )
    model = helper.make_model(graph)
    onnx.save_model(model, str(project.root / "m.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    model = onnx.load_model(str(project.root / "m.onnx"), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../../etc/shadow"
    onnx.save_model(model, str(project.root / "m.onnx"))
    stderr = refused(project, "models:\n  m: {source: m.onnx}\n")
    assert "m.onnx: tensor 'w' has external data at '../../../etc/shadow', outside the model's folder" in stderr


def test_a_truncated_onnx_is_refused(project: ProjectDir) -> None:
    path = conv_net(project.root / "m.onnx", channels=64)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    stderr = refused(project, "models:\n  m: {source: m.onnx}\n")
    assert "m.onnx: not a readable ONNX model" in stderr


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (
            "models:\n  m: {source: m.onnx, workspace: !!python/object/apply:os.system ['touch pwned']}\n",
            "builds.yaml:2: models.m.workspace: "
            "YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
        ),
        (
            "models:\n  m: {source: !!python/name:os.system m.onnx}\n",
            "could not determine a constructor for the tag 'tag:yaml.org,2002:python/name:os.system'",
        ),
        (
            "models:\n  m: {source: m.onnx, inputs: {input: [1, '3', 32, 32]}}\n",
            "builds.yaml:2: models.m.inputs.input.1: Input should be a valid integer",
        ),
        (
            "models:\n  m: {source: m.onnx, inputs: {input: {min: [1, 3, 32, 32], opt: [1, 3, 32, 32]}}}\n",
            "builds.yaml:2: models.m.inputs.input.max: Field required",
        ),
        (
            "models:\n  m: {source: m.onnx, dla_core: yes}\n",
            "builds.yaml:2: models.m.dla_core: Input should be a valid integer",
        ),
        (
            "models:\n  m: {source: m.onnx, plugins: libplugin.so}\n",
            "builds.yaml:2: models.m.plugins: Input should be a valid list",
        ),
        (
            "models:\n  m: {source: {pypi: 'fer>=1', member: x, sha256: %s}}\n" % ("a" * 64),
            "builds.yaml:2: models.m.source.pypi: 'fer>=1' is not an exact pin; write name==version",
        ),
        (
            "models:\n  m: {source: m.onnx, compute_capabilities: ['sm_86']}\n",
            "builds.yaml:2: models.m.compute_capabilities.0: String should match pattern",
        ),
        ("models:\n  ../evil: {source: m.onnx}\n", "builds.yaml:2: models.'../evil': invalid name"),
        ("models:\n  - m.onnx\n", "builds.yaml:1: models: must be a mapping of name -> model"),
        ("[1, 2, 3]\n", "builds.yaml:1: the manifest must be a mapping with 'models:'"),
        ("models:\n  m: {source: m.onnx}\n\tbad: tab\n", "builds.yaml:3: YAML syntax error"),
    ],
)
def test_bad_manifests_fail_in_one_line(project: ProjectDir, manifest: str, expected: str) -> None:
    conv_net(project.root / "m.onnx")
    stderr = refused(project, manifest)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (project.root / "pwned").exists()


def test_a_bad_plugin_path_names_the_field(project: ProjectDir) -> None:
    conv_net(project.root / "m.onnx")
    stderr = refused(project, "models:\n  m:\n    source: m.onnx\n    plugins: [plugins/libmissing.so]\n")
    assert "builds.yaml:4: models.m.plugins:" in stderr and "libmissing.so does not exist" in stderr


def test_the_manifest_itself_missing_is_a_clear_error(project: ProjectDir) -> None:
    run = project.trtbuild("all", "-f", "nope.yaml")
    assert run.code == 2 and "nope.yaml: no such manifest (pass one with -f/--file)" in run.stderr
