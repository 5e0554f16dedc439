"""What a new user meets on the first day: input mistakes caught on every precision, pins checked by
`plan`, files a service can read, and a project found from any of its subfolders."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest
from conftest import ProjectDir
from onnx_models import conv_net


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_a_wrong_input_name_is_a_manifest_error_on_every_precision(project: ProjectDir, precision: str) -> None:
    conv_net(project.root / "mynet.onnx", batch=1, seed=1, size=64)
    gate = (
        (
            "    calibration: {images: {package: skimage, glob: [data/astronaut.png]}, count: 1}\n"
            "    validation: {images: {package: ultralytics, glob: 'assets/*.jpg'}, count: 1}\n"
        )
        if precision == "int8"
        else ""
    )
    (project.root / "builds.yaml").write_text(
        f"models:\n  mynet:\n    source: mynet.onnx\n    precision: {precision}\n"
        f"    inputs: {{images: [1, 3, 64, 64]}}\n{gate}"
    )
    for command in ("all", "plan"):
        run = project.trtbuild(command)
        assert run.code == 2, (command, run.stdout, run.stderr)
        assert (
            "builds.yaml:5: models.mynet.inputs.images: no input 'images' in mynet.onnx (inputs: input)" in run.stderr
        )
    assert not (project.root / "engines").exists() and not (project.root / "exports").exists()


def test_plan_refuses_a_wrong_pin_and_a_missing_source_as_bad_input(project: ProjectDir) -> None:
    conv_net(project.root / "net.onnx", batch=1, seed=1, size=32)
    actual = hashlib.sha256((project.root / "net.onnx").read_bytes()).hexdigest()
    manifest = project.write_manifest(f"""
        models:
          net:
            source: {{path: net.onnx, sha256: {"ab" * 32}}}
            inputs: {{input: [1, 3, 32, 32]}}
    """)
    for command in (("plan", "--check"), ("all",)):
        run = project.trtbuild(*command)
        assert run.code == 2, (command, run.stdout, run.stderr)
        assert (
            f"builds.yaml:3: models.net.source: net.onnx has sha256 {actual}, not the pinned {'ab' * 32}" in run.stderr
        )
    manifest.write_text(manifest.read_text().replace("path: net.onnx", "path: gone.onnx"))
    run = project.trtbuild("plan", "--check")
    assert run.code == 2 and "builds.yaml:3: models.net.source: gone.onnx does not exist" in run.stderr


def test_engines_exports_and_locks_respect_the_umask(project: ProjectDir) -> None:
    conv_net(project.root / "net.onnx", batch=1, seed=1, size=32)
    project.write_manifest(
        "models:\n  net: {source: net.onnx, inputs: {input: [1, 3, 32, 32]}, precision: fp16, fp16_via: onnx}\n"
    )
    previous = os.umask(0o027)  # inherited by the trtbuild process
    try:
        run = project.trtbuild("all")
    finally:
        os.umask(previous)
    assert run.code == 0, run.stdout + run.stderr
    for path in ("engines/net.engine", "exports/net.fp16.onnx", "builds.lock"):
        mode = stat.S_IMODE(os.stat(project.root / path).st_mode)
        assert mode == 0o640, (path, oct(mode))  # the group (a service's) can read its engine, as with any file


def test_commands_find_the_manifest_from_a_subfolder(project: ProjectDir) -> None:
    conv_net(project.root / "net.onnx", batch=1, seed=1, size=32)
    project.write_manifest("models:\n  net: {source: net.onnx, inputs: {input: [1, 3, 32, 32]}, precision: fp32}\n")
    deep = project.root / "src" / "app"
    deep.mkdir(parents=True)
    inside = ProjectDir(deep)
    run = inside.trtbuild("all", "--json")
    assert run.code == 0 and run.statuses() == {"net": "built"}, run.stdout + run.stderr
    assert (project.root / "engines/net.engine").is_file() and not (deep / "engines").exists()
    assert inside.trtbuild("plan", "--check").code == 0
    nowhere = ProjectDir(project.root.parent / "elsewhere")
    nowhere.root.mkdir()
    run = nowhere.trtbuild("plan")
    assert run.code == 2 and "no builds.yaml in" in run.stderr and "any parent folder" in run.stderr


VISIONNET = """
import torch
import torchvision  # noqa: F401  (what a project module using torchvision.ops / torchvision.models does)
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, image):
        return torch.relu(self.conv(image))
"""


def test_a_torchvision_that_cannot_load_beside_torch_is_explained(project: ProjectDir) -> None:
    import subprocess
    import sys

    import torch
    from torch import nn

    (project.root / "recipes").mkdir()
    (project.root / "recipes/visionnet.py").write_text(VISIONNET)
    torch.manual_seed(1)
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).state_dict(), project.root / "seq.pth")
    state = torch.load(project.root / "seq.pth")
    torch.save({"conv." + key.split(".", 1)[1]: value for key, value in state.items()}, project.root / "net.pth")
    digest = hashlib.sha256((project.root / "net.pth").read_bytes()).hexdigest()
    project.write_manifest(f"""
        models:
          net:
            source: {{path: net.pth, sha256: {digest}}}
            recipe: {{name: torch, module: "visionnet:Net", inputs: {{image: [1, 3, 16, 16]}}, output_names: [out]}}
            inputs: {{image: [1, 3, 16, 16]}}
            precision: fp32
    """)
    works = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True).returncode == 0
    run = project.trtbuild("all", "--json")
    if works:  # a matching pair (PyTorch's CPU index, or the CUDA pair): the export just works
        assert run.statuses() == {"net": "built"}, run.stdout
        return
    assert run.code == 1
    reason = run.json()["models"]["net"]["reasons"][0]
    print(reason)
    assert "cannot load its operators beside torch" in reason and "PyPI has no CPU build of it" in reason
    assert "--index-url https://download.pytorch.org/whl/cpu" in reason and "+cpu'" in reason


def test_init_starts_a_fleet_repository_whose_gitignore_keeps_locks_and_drops_builds(project: ProjectDir) -> None:
    import subprocess

    run = project.trtbuild("init")
    assert run.code == 0, run.stderr
    assert run.stdout.splitlines() == ["wrote builds.yaml", "wrote devices/x86-rtx.yaml", "wrote .gitignore"]
    assert project.trtbuild("plan").code == 0  # a valid, empty manifest
    again = project.trtbuild("init")
    assert again.code == 2 and "already exists" in again.stderr
    conv_net(project.root / "net.onnx", batch=1, seed=1, size=32)
    manifest = project.root / "builds.yaml"
    manifest.write_text(
        manifest.read_text().replace(
            "models: {}", "models:\n  net: {source: net.onnx, inputs: {input: [1, 3, 32, 32]}}"
        )
    )
    assert project.trtbuild("all").code == 0
    git = {"cwd": project.root, "capture_output": True, "text": True, "check": True}
    subprocess.run(["git", "init", "-q"], **git)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], **git
    ).stdout.splitlines()
    tracked = {line[3:] for line in status if line.startswith("??")}
    ignored = {line[3:] for line in status if line.startswith("!!")}
    assert {"builds.yaml", "devices/x86-rtx.yaml", ".gitignore", "locks/x86-rtx.lock", "net.onnx"} <= tracked, status
    assert {"engines/x86-rtx/net.engine", ".trtbuild/statcache.json"} <= ignored, status
    assert not any(path.startswith(("engines/", "exports/", ".trtbuild/")) for path in tracked), status


def test_papercuts_did_you_mean_and_the_pin_to_write(project: ProjectDir) -> None:
    conv_net(project.root / "net.onnx", batch=1, seed=1, size=32)
    (project.root / "model.pt").write_bytes(b"not really a checkpoint")
    digest = hashlib.sha256(b"not really a checkpoint").hexdigest()
    manifest = project.write_manifest("""
        models:
          net: {source: net.onnx, inputs: {input: [1, 3, 32, 32]}, worksapce: 64MiB}
          yolo: {source: model.pt, recipe: {name: ultralytics, imgsz: 320}}
    """)
    run = project.trtbuild("plan")
    assert run.code == 2
    assert "models.net.worksapce: unknown field (did you mean 'workspace'?)" in run.stderr
    assert (
        f"pin the source with sha256 so nothing unverified is ever loaded; this file's is {digest}: "
        f"source: {{path: model.pt, sha256: {digest}}}" in run.stderr
    )
    manifest.write_text("models:\n  net: {source: net.onnx, inputs: {input: [1, 3, 32, 32]}}\n")
    run = project.trtbuild("build", "nett")
    assert run.code == 2 and "no model named 'nett' (did you mean 'net'?)" in run.stderr
    (project.root / "devices").mkdir()
    (project.root / "devices/orin-nano-8gb.yaml").write_text("defaults: {}\n")
    run = project.trtbuild("plan", "--device", "orin-nano-8g")
    assert run.code == 2 and "unknown device 'orin-nano-8g' (did you mean 'orin-nano-8gb'?)" in run.stderr


def test_a_calibration_package_that_is_not_installed_is_one_verdict_for_plan_and_all(project: ProjectDir) -> None:
    conv_net(project.root / "net.onnx", batch=1, seed=1, size=64)
    project.write_manifest("""
        models:
          net:
            source: net.onnx
            precision: int8
            inputs: {input: [1, 3, 64, 64]}
            calibration: {images: {package: skimage_missing_here, glob: [data/astronaut.png]}, count: 1}
            validation: {images: {package: ultralytics, glob: 'assets/*.jpg'}, count: 1}
    """)
    for command in ("plan", "all"):
        run = project.trtbuild(command)
        assert run.code == 2, (command, run.stdout, run.stderr)
        assert (
            "builds.yaml:6: models.net.calibration: images: package 'skimage_missing_here' is not installed; "
            "pip install skimage_missing_here"
        ) in run.stderr, run.stderr
    assert not (project.root / "exports").exists()
