"""Inputs TensorRT treats specially: shape tensors take values in a profile, scalars have rank 0, and a
dimension may be as large as TensorRT's int32 dims allow."""

from __future__ import annotations

from pathlib import Path

from conftest import ProjectDir, entries
from onnx import TensorProto, helper
from onnx_models import save_graph


def _save(path: Path, nodes: list, inputs: list, outputs: list) -> Path:
    return save_graph(path, nodes, path.stem, inputs, outputs)


def _expand_net(path: Path) -> Path:
    """``x`` [1, 8, 1, 1] expanded to the shape held by the INT64 input ``shape`` [4]: a shape tensor."""
    return _save(
        path,
        [helper.make_node("Expand", ["x", "shape"], ["y"], name="grow")],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 1, 1]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b", "c", "d"])],
    )


def test_a_shape_tensor_input_takes_values_from_its_profile(project: ProjectDir) -> None:
    _expand_net(project.root / "net.onnx")
    project.write_manifest("""
        models:
          net:
            source: net.onnx
            precision: fp32
            workspace: 64MiB
            inputs:
              x: [1, 8, 1, 1]
              shape: {min: [1, 8, 4, 4], opt: [1, 8, 8, 8], max: [1, 8, 16, 16]}   # values, not dimensions
    """)
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.statuses() == {"net": "built"}


def test_a_shape_tensor_declared_as_a_shape_or_not_at_all_is_refused_before_building(project: ProjectDir) -> None:
    _expand_net(project.root / "net.onnx")
    manifest = project.write_manifest("""
        models:
          net:
            source: net.onnx
            precision: fp32
            inputs:
              x: [1, 8, 1, 1]
              shape: [4]
    """)
    run = project.trtbuild("all")
    assert run.code == 2
    assert (
        "builds.yaml:5: models.net.inputs.shape: min [4]: 'shape' is a shape tensor (Expand 'grow' input 1) of 4 "
        "values in net.onnx; give 4 values, not a shape"
    ) in run.stderr, run.stderr
    manifest.write_text(manifest.read_text().replace("      shape: [4]\n", ""))
    run = project.trtbuild("all")
    assert run.code == 2
    assert (
        "input 'shape' of net.onnx is a shape tensor (Expand 'grow' input 1): a profile takes its values" in run.stderr
    )
    assert not (project.root / "engines").exists()


def test_a_scalar_input_is_declared_as_an_empty_shape(project: ProjectDir) -> None:
    _save(
        project.root / "net.onnx",
        [helper.make_node("Mul", ["x", "gain"], ["y"], name="scale")],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
            helper.make_tensor_value_info("gain", TensorProto.FLOAT, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    project.write_manifest(
        "models:\n  net: {source: net.onnx, precision: fp32, workspace: 64MiB, inputs: {x: [1, 3, 8, 8], gain: []}}\n"
    )
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert entries(project.lock())["net"]["components"]["settings"]["profiles"][0]["gain"] == {
        "min": [],
        "opt": [],
        "max": [],
    }


def test_dimensions_beyond_65536_up_to_int32_are_accepted(project: ProjectDir) -> None:
    _save(
        project.root / "net.onnx",
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "length"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "length"])],
    )
    project.write_manifest(
        "models:\n  net: {source: net.onnx, precision: fp32, workspace: 64MiB, "
        "inputs: {x: {min: [1, 1], opt: [1, 100000], max: [1, 200000]}}}\n"
    )
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    manifest = project.root / "builds.yaml"
    manifest.write_text(manifest.read_text().replace("max: [1, 200000]", "max: [1, 2147483647]"))
    plan = project.trtbuild("plan", "--json")  # valid: TensorRT's largest dimension (one int32)
    assert plan.code == 0 and "optimization profiles changed" in plan.json()["models"]["net"]["reasons"], (
        plan.stdout + plan.stderr
    )
    manifest.write_text(manifest.read_text().replace("max: [1, 2147483647]", "max: [1, 2147483648]"))
    assert "less than or equal to 2147483647" in project.trtbuild("plan").stderr
