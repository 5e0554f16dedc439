"""Environment fingerprint from real-format system files, without importing TensorRT."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trtbuild.env.fingerprint import fingerprint
from trtbuild.env.jetson import jetson_gpu, parse_l4t_release, parse_mem_total_gib

RELEASES = {
    "5.1.2": (
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
        "DATE: Tue Aug  1 19:57:35 UTC 2023",
        "35.4.1",
    ),
    "6.0": (
        "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64, "
        "DATE: Fri Jul 19 23:24:25 UTC 2024",
        "36.3.0",
    ),
    "6.2": (
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
        "DATE: Wed Jan  8 01:49:37 UTC 2025",
        "36.4.3",
    ),
}


@pytest.mark.parametrize("jetpack", sorted(RELEASES))
def test_l4t_release_is_read_from_nv_tegra_release(jetpack: str) -> None:
    text, release = RELEASES[jetpack]
    assert parse_l4t_release(text) == release


def test_garbage_release_file_gives_no_release() -> None:
    assert parse_l4t_release("hello") is None


@pytest.mark.parametrize(
    ("model", "mem_kib", "expected"),
    [
        ("NVIDIA Jetson AGX Orin Developer Kit", 64335836, ("Orin (Ampere)", "8.7", 16)),
        ("NVIDIA Jetson AGX Orin", 30536556, ("Orin (Ampere)", "8.7", 14)),
        ("NVIDIA Jetson Orin Nano Developer Kit", 7802716, ("Orin (Ampere)", "8.7", 8)),
        ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", 15655788, ("Orin (Ampere)", "8.7", 8)),
        ("NVIDIA Jetson Xavier NX Developer Kit", 7774384, ("Xavier (Volta)", "7.2", 6)),
        ("NVIDIA Jetson Nano Developer Kit", 4051424, ("Tegra X1 (Maxwell)", "5.3", 1)),
    ],
)
def test_jetson_gpu_table(model: str, mem_kib: int, expected: tuple[str, str, int]) -> None:
    gpu = jetson_gpu(model, parse_mem_total_gib(f"MemTotal:       {mem_kib} kB\n"))
    assert gpu is not None and (gpu.gpu, gpu.compute_capability, gpu.sm_count) == expected


def test_a_desktop_is_not_a_jetson() -> None:
    assert jetson_gpu("ASUS PRIME Z790", 32.0) is None


def test_fingerprint_follows_a_probed_file_within_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text(RELEASES["6.0"][0])
    monkeypatch.setenv("TRTBUILD_SYSROOT", str(root))
    assert fingerprint()["l4t"] == "36.3.0"
    assert fingerprint()["l4t"] == "36.3.0"
    (root / "etc/nv_tegra_release").write_text(RELEASES["6.2"][0] + "\n")
    assert fingerprint()["l4t"] == "36.4.3"


def test_probing_imports_no_tensorrt(tmp_path: Path) -> None:
    code = (
        "import sys; from trtbuild.env.fingerprint import fingerprint; f = fingerprint(); "
        "assert f['builder_version'], f; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('tensorrt', 'tensorrt_rtx', 'polygraphy', 'onnx', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
