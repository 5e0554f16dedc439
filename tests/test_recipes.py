"""Recipes on real inputs: the torch recipe on an EmoNet-interface network, a project's own recipe,
pins on local sources, and recipe parameter errors."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import photos
import torch
from conftest import ProjectDir, entries, report_fidelity, write_widthfile_recipe

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

from emonet_like import EmoNetLike  # noqa: E402


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def emonet_project(project: ProjectDir) -> tuple[EmoNetLike, str]:
    """A project whose recipes/ holds the network code and whose checkpoint is a real state dict."""
    torch.manual_seed(7)
    network = EmoNetLike()
    with torch.no_grad():  # give BatchNorm real running statistics from a few photos
        network.train()
        network(
            torch.from_numpy(np.concatenate([photos.nchw01(photos.astronaut(), 256), photos.nchw01(photos.bus(), 256)]))
        )
    network.eval()
    (project.root / "recipes").mkdir()
    shutil.copy(FIXTURES / "emonet_like.py", project.root / "recipes/emonet_like.py")
    torch.save(network.state_dict(), project.root / "emonet.pth")
    pin = sha256(project.root / "emonet.pth")
    project.write_manifest(f"""
        models:
          emonet:
            source: {{path: emonet.pth, sha256: {pin}}}
            recipe:
              name: torch
              module: "emonet_like:EmoNetLike"
              inputs: {{image: [1, 3, 256, 256]}}
              output_names: [expression, valence, arousal]
              dynamic_axes:
                image: {{0: batch}}
                expression: {{0: batch}}
                valence: {{0: batch}}
                arousal: {{0: batch}}
            inputs:
              image: {{min: [1, 3, 256, 256], opt: [4, 3, 256, 256], max: [8, 3, 256, 256]}}
    """)
    return network, pin


def test_torch_recipe_exports_emonet_interface_and_builds_a_dynamic_batch_engine(project: ProjectDir) -> None:
    network, _ = emonet_project(project)
    run = project.trtbuild("all", "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.statuses() == {"emonet": "built"}
    batch = np.concatenate(
        [
            photos.nchw01(image, 256)
            for image in (photos.astronaut(), photos.bus(), photos.astronaut_face(), photos.astronaut()[::-1])
        ]
    )
    with torch.no_grad():
        expected = [tensor.numpy() for tensor in network(torch.from_numpy(batch))]
    session = ort.InferenceSession(str(project.root / "exports/emonet.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["expression", "valence", "arousal"]
    assert session.get_inputs()[0].shape == ["batch", 3, 256, 256]
    actual = session.run(None, {"image": batch})
    for name, want, got in zip(("expression", "valence", "arousal"), expected, actual):
        assert got.shape == (4, 8 if name == "expression" else 1)
        _, relative = report_fidelity(f"emonet-like {name} (torch)", "torch", want, got)
        assert relative < 1e-5
    profiles = entries(project.lock())["emonet"]["components"]["settings"]["profiles"]
    assert profiles == [{"image": {"min": [1, 3, 256, 256], "opt": [4, 3, 256, 256], "max": [8, 3, 256, 256]}}]


def test_a_checkpoint_that_does_not_match_its_pin_is_never_loaded(project: ProjectDir) -> None:
    _, pin = emonet_project(project)
    checkpoint = project.root / "emonet.pth"
    checkpoint.write_bytes(checkpoint.read_bytes() + b"tampered")
    run = project.trtbuild("all", "--json")
    assert run.code == 2  # bad input, before any step runs
    assert "builds.yaml:3: models.emonet.source: emonet.pth has sha256 " in run.stderr
    assert f", not the pinned {pin}" in run.stderr
    assert not (project.root / "exports").exists()
    assert not (project.root / ".trtbuild/logs/emonet.export.log").exists()  # the recipe never ran


def test_a_recipe_that_unpickles_requires_a_pin(project: ProjectDir) -> None:
    project.write_manifest("""
        models:
          m:
            source: model.pt
            recipe: {name: ultralytics, imgsz: 320}
    """)
    run = project.trtbuild("plan")
    assert run.code == 2
    assert (
        "builds.yaml:3: models.m.source: recipe ultralytics loads code-carrying files (pickles); pin the source"
        in run.stderr
    )


def test_recipe_parameter_errors_name_file_line_and_field(project: ProjectDir) -> None:
    project.write_manifest(
        """
        models:
          m:
            source: {path: model.pt, sha256: "%s"}
            recipe:
              name: ultralytics
              imgsz: 300
              colour: red
    """
        % ("a" * 64)
    )
    run = project.trtbuild("plan")
    assert run.code == 2
    assert "builds.yaml:6: models.m.recipe.imgsz: Input should be a multiple of 32" in run.stderr
    assert "builds.yaml:7: models.m.recipe.colour: unknown field" in run.stderr


def test_an_unknown_recipe_is_a_manifest_error(project: ProjectDir) -> None:
    project.write_manifest("models:\n  m:\n    source: m.bin\n    recipe: nonesuch\n")
    run = project.trtbuild("plan")
    assert run.code == 2 and "builds.yaml:4: models.m.recipe: no recipe 'nonesuch'" in run.stderr


def test_a_project_recipe_is_found_in_its_recipes_folder_and_its_code_is_keyed(project: ProjectDir) -> None:
    recipe = write_widthfile_recipe(project.root)
    (project.root / "width.txt").write_text("6")
    project.write_manifest("""
        models:
          custom:
            source: width.txt
            recipe: {name: widthfile, size: 16}
            workspace: 128MiB
    """)
    first = project.trtbuild("all", "--json")
    assert first.statuses() == {"custom": "built"}, first.stdout + first.stderr
    assert project.trtbuild("all", "--json").statuses() == {"custom": "fresh"}
    recipe.write_text(recipe.read_text() + "\n# a comment changes the code hash\n")
    plan = project.trtbuild("plan", "--json").json()["models"]["custom"]["reasons"]
    assert plan == ["export: code changed"]
    rerun = project.trtbuild("all", "--json").json()["models"]["custom"]
    assert rerun["status"] == "fresh"  # same canonical ONNX: the engine is not rebuilt
    assert rerun["reasons"] == ["export: code changed"]


def test_canonical_export_drops_volatile_metadata_and_orders_initializers(tmp_path: Path) -> None:
    import onnx
    from onnx_models import conv_net

    from trtbuild.export.canonical import canonicalize

    model = onnx.load(str(conv_net(tmp_path / "m.onnx")))
    shuffled = onnx.ModelProto()
    shuffled.CopyFrom(model)
    reversed_inits = list(reversed(shuffled.graph.initializer))
    del shuffled.graph.initializer[:]
    shuffled.graph.initializer.extend(reversed_inits)
    for target, date in ((model, "2026-01-01"), (shuffled, "2026-11-21")):
        entry = target.metadata_props.add()
        entry.key, entry.value = "date", date
        entry = target.metadata_props.add()
        entry.key, entry.value = "task", "detect"
    one, two = canonicalize(model).SerializeToString(), canonicalize(shuffled).SerializeToString()
    assert one == two
    assert [p.key for p in model.metadata_props] == ["task"]
