"""Manifest validation: every error names file, line, model and field; exit code 2; nothing written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import ProjectDir
from onnx import TensorProto, helper, numpy_helper
from onnx_models import conv_net


def errors_of(project: ProjectDir, manifest: str, *args: str) -> list[str]:
    project.write_manifest(manifest)
    run = project.trtbuild("all", *args)
    assert run.code == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    assert not (project.root / "builds.lock").exists()
    assert not (project.root / "engines").exists()
    return [line.removeprefix("trtbuild: ") for line in run.stderr.strip().splitlines()]


def test_profile_order_error_names_file_line_model_and_field(project: ProjectDir) -> None:
    lines = errors_of(
        project,
        """
        models:
          pose:
            source: pose.onnx
            inputs:
              images:
                min: [1, 3, 640, 640]
                opt: [4, 3, 640, 640]
                max: [2, 3, 640, 640]
    """,
    )
    assert lines == ["builds.yaml:8: models.pose.inputs.images.max: must be >= opt [4, 3, 640, 640]"]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("    precision: fp64\n", "builds.yaml:3: models.m.precision: Input should be 'fp32', 'fp16' or 'int8'"),
        ("    colour: blue\n", "builds.yaml:3: models.m.colour: unknown field"),
        ("    workspace: lots\n", "builds.yaml:3: models.m.workspace: could not parse value and unit from byte string"),
        (
            "    builder_optimization_level: 6\n",
            "builds.yaml:3: models.m.builder_optimization_level: Input should be less than or equal to 5",
        ),
        ("    inputs: {x: [1, 0, 8]}\n", "builds.yaml:3: models.m.inputs.x.1: Input should be greater than 0"),
        ("    inputs: {x: [1, -3, 8]}\n", "builds.yaml:3: models.m.inputs.x.1: Input should be greater than 0"),
        (
            "    inputs: {x: [1, 3, 2147483648]}\n",
            "builds.yaml:3: models.m.inputs.x.2: Input should be less than or equal to 2147483647",
        ),
        (
            "    inputs: {x: {min: [1, 3], opt: [1, 3, 8], max: [1, 3, 8]}}\n",
            "builds.yaml:3: models.m.inputs.x.opt: rank 3 differs from min's rank 2 ([1, 3])",
        ),
        (
            "    inputs: {x: [1, 3, 40000, 40000]}\n",
            "builds.yaml:3: models.m.inputs.x: [1, 3, 40000, 40000] has 4800000000 elements, "
            "more than the 2147483648 allowed",
        ),
        (
            "    output: ../outside.engine\n",
            "builds.yaml:3: models.m.output: '../outside.engine' is outside the project folder",
        ),
        (
            "    output: /tmp/abs.engine\n",
            "builds.yaml:3: models.m.output: '/tmp/abs.engine' is outside the project folder",
        ),
    ],
)
def test_field_errors(project: ProjectDir, snippet: str, expected: str) -> None:
    lines = errors_of(project, "models:\n  m:\n" + snippet + "    source: m.onnx\n")
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_defaults_errors_name_the_defaults_line(project: ProjectDir) -> None:
    lines = errors_of(
        project,
        """
        defaults:
          workspace: 1GiB
          precison: fp16
        models:
          a: {source: a.onnx}
    """,
    )
    assert lines == ["builds.yaml:3: defaults.precison: unknown field (did you mean 'precision'?)"]


def test_yaml_syntax_error_has_the_line(project: ProjectDir) -> None:
    lines = errors_of(project, "models:\n  a:\n    source: a.onnx\n    inputs: [1, 2\n  b: {}\n")
    assert len(lines) == 1 and lines[0].startswith("builds.yaml:5: YAML syntax error")


def test_duplicate_keys_are_rejected(project: ProjectDir) -> None:
    lines = errors_of(project, "models:\n  a:\n    source: a.onnx\n    precision: fp16\n    precision: fp32\n")
    assert lines == ["builds.yaml:5: models.a.precision: duplicate key (first at line 4)"]


def test_a_model_may_merge_a_model_that_merges_and_override_its_keys(project: ProjectDir) -> None:
    conv_net(project.root / "net.onnx")
    project.write_manifest("""
        models:
          a: &a {source: net.onnx, precision: fp32, workspace: 64MiB}
          b: &b
            <<: *a
            workspace: 128MiB
          c:
            <<: *b
            precision: fp16
    """)
    run = project.trtbuild("config", "--json")
    assert run.code == 0, run.stderr
    models = json.loads(run.stdout)["models"]
    assert models["c"] == {"source": "net.onnx", "workspace": "128MiB", "precision": "fp16"}
    assert errors_of(
        project, "models:\n  a: &a {source: a.onnx}\n  b:\n    <<: *a\n    precision: fp16\n    precision: fp32\n"
    ) == ["builds.yaml:6: models.b.precision: duplicate key (first at line 5)"]


def test_yaml_bomb_is_refused_quickly(project: ProjectDir) -> None:
    bomb = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 10):
        bomb.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    bomb.append("models: {m: {source: m.onnx, plugins: *a9}}")
    lines = errors_of(project, "\n".join(bomb) + "\n")
    assert len(lines) == 1 and "YAML nodes after alias expansion" in lines[0]


def test_every_problem_is_reported_at_once(project: ProjectDir) -> None:
    lines = errors_of(
        project,
        """
        models:
          a: {source: a.onnx, precision: fp64}
          b: {source: b.onnx, dla_core: -1}
    """,
    )
    assert [line.split(":")[1] for line in lines] == ["2", "3"]


def test_declared_inputs_are_checked_against_the_onnx(project: ProjectDir) -> None:
    conv_net(project.root / "static.onnx", batch=1)
    conv_net(project.root / "dynamic.onnx", batch="N")
    lines = errors_of(
        project,
        """
        models:
          wrong_name:
            source: static.onnx
            inputs: {images: [1, 3, 32, 32]}
          wrong_dim:
            source: static.onnx
            inputs: {input: [1, 3, 64, 64]}
          undeclared_dynamic:
            source: dynamic.onnx
    """,
    )
    assert lines == [
        "builds.yaml:4: models.wrong_name.inputs.images: no input 'images' in static.onnx (inputs: input)",
        "builds.yaml:7: models.wrong_dim.inputs.input: min [1, 3, 64, 64]: dimension 2 is fixed at 32 in static.onnx",
        "builds.yaml:8: models.undeclared_dynamic.inputs: input 'input' of dynamic.onnx "
        "has dynamic dims ['N', 3, 32, 32]; declare its shape or profile",
    ]


def test_a_non_onnx_file_is_an_input_error(project: ProjectDir) -> None:
    (project.root / "junk.onnx").write_bytes(b"\x00\xffnot a protobuf at all" * 10)
    lines = errors_of(project, "models:\n  junk: {source: junk.onnx}\n")
    assert len(lines) == 1 and "junk.onnx: not a readable ONNX model" in lines[0]


def test_two_models_cannot_share_an_engine_path(project: ProjectDir) -> None:
    lines = errors_of(
        project,
        """
        models:
          a: {source: a.onnx, output: engines/x.engine}
          b: {source: b.onnx, output: engines/x.engine}
    """,
    )
    assert lines == ["builds.yaml:3: models.b.output: engine path x.engine is also the output of model 'a'"]


def test_a_dependency_cycle_through_outputs_is_refused_as_outputs_overwriting_sources(project: ProjectDir) -> None:
    # Before outputs had to be disjoint from inputs this was reported as a dependency cycle; an engine
    # output that is another model's source is now refused first, naming both.
    project.write_manifest("""
        models:
          a: {source: engines/b.engine}
          b: {source: engines/a.engine}
    """)
    run = project.trtbuild("all")
    assert run.code == 2
    assert "builds.yaml:2: models.a.output: 'engines/a.engine' is the source of model 'b'" in run.stderr
    assert "builds.yaml:3: models.b.output: 'engines/b.engine' is the source of model 'a'" in run.stderr


def test_corrupt_lock_names_the_file_and_what_to_do(two_models: ProjectDir) -> None:
    (two_models.root / "builds.lock").write_text('{"schema": 1, "models": {"static": ')
    run = two_models.trtbuild("all")
    assert run.code == 2
    assert "builds.lock: corrupt lock file" in run.stderr and "move it aside" in run.stderr
    assert not (two_models.root / "engines").exists()


def test_schema_command_prints_the_manifest_json_schema(project: ProjectDir) -> None:
    run = project.trtbuild("schema")
    schema = json.loads(run.stdout)
    assert run.code == 0
    assert schema["title"] == "Manifest"
    assert schema["additionalProperties"] is False
    assert set(schema["$defs"]["ModelSpec"]["properties"]) >= {
        "source",
        "inputs",
        "precision",
        "workspace",
        "builder_optimization_level",
        "dla_core",
        "plugins",
        "output",
    }


def test_int8_without_images_names_both_missing_specs(project: ProjectDir) -> None:
    lines = errors_of(project, "models:\n  m:\n    source: m.onnx\n    precision: int8\n")
    assert lines == [
        "builds.yaml:2: models.m.calibration: precision int8 needs a calibration: spec "
        "(real images; see docs/precision.md)",
        "builds.yaml:2: models.m.validation: precision int8 needs a validation: spec "
        "(real images; see docs/precision.md)",
    ]


def test_yaml_merge_keys_and_extension_fields_share_settings(project: ProjectDir) -> None:
    project.write_manifest("""
        x-common: &common {source: m.onnx, workspace: 256MiB}
        models:
          a: {<<: *common}
          b: {<<: *common, workspace: 512MiB}
    """)
    run = project.trtbuild("config", "--json")
    models = json.loads(run.stdout)["models"]
    assert models["a"]["workspace"] == "256MiB" and models["b"]["workspace"] == "512MiB"


# --- broken or hostile manifests and source ONNX files --------------------------------------------


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
    stderr = project.refuses("models:\n  m: {source: m.onnx}\n").stderr
    assert "m.onnx: tensor 'w' has external data at '../../../etc/shadow', outside the model's folder" in stderr


def test_a_truncated_onnx_is_refused(project: ProjectDir) -> None:
    path = conv_net(project.root / "m.onnx", channels=64)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    stderr = project.refuses("models:\n  m: {source: m.onnx}\n").stderr
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
    stderr = project.refuses(manifest).stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (project.root / "pwned").exists()


def test_the_manifest_itself_missing_is_a_clear_error(project: ProjectDir) -> None:
    run = project.trtbuild("all", "-f", "nope.yaml")
    assert run.code == 2 and "nope.yaml: no such manifest (pass one with -f/--file)" in run.stderr
