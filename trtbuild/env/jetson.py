"""Jetson facts that are not in any file: the GPU of each module, read off its device-tree model.

``/proc/device-tree/model`` names the module (``NVIDIA Jetson AGX Orin Developer Kit``); the integrated
GPU's compute capability and SM count follow from it (NVIDIA's CUDA GPU table and the Jetson module data
sheets). Where one name covers two memory sizes with different SM counts, ``MemTotal`` tells them apart.
``/etc/nv_tegra_release`` gives the L4T release (``# R36 (release), REVISION: 4.3, ...`` -> ``36.4.3``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JetsonGpu:
    """A Jetson module's integrated GPU.

    Attributes:
        gpu: architecture name, e.g. ``Orin (Ampere)``.
        compute_capability: ``major.minor``.
        sm_count: streaming multiprocessors, or ``None`` where the name and memory do not determine it.
    """

    gpu: str
    compute_capability: str
    sm_count: int | None


# (substring of the device-tree model, GPU, compute capability, [(min MemTotal GiB, SM count), ...]).
# The first matching substring wins, so longer names come first.
_MODULES: list[tuple[str, str, str, list[tuple[float, int]]]] = [
    ("AGX Thor", "Thor (Blackwell)", "11.0", [(0, 20)]),
    ("AGX Orin", "Orin (Ampere)", "8.7", [(40, 16), (0, 14)]),
    ("Orin NX", "Orin (Ampere)", "8.7", [(12, 8), (0, 6)]),
    ("Orin Nano", "Orin (Ampere)", "8.7", [(6, 8), (0, 4)]),
    ("AGX Xavier", "Xavier (Volta)", "7.2", [(0, 8)]),
    ("Xavier NX", "Xavier (Volta)", "7.2", [(0, 6)]),
    ("TX2", "Parker (Pascal)", "6.2", [(0, 2)]),
    ("TX1", "Tegra X1 (Maxwell)", "5.3", [(0, 2)]),
    ("Nano", "Tegra X1 (Maxwell)", "5.3", [(0, 1)]),
]

# (substring of the device-tree model, MemTotal GiB above which the larger module applies, names).
_DEVICE_NAMES: list[tuple[str, float, str, str]] = [
    ("AGX Thor", 0, "agx-thor", "agx-thor"),
    ("AGX Orin", 40, "agx-orin-32gb", "agx-orin-64gb"),
    ("Orin NX", 12, "orin-nx-8gb", "orin-nx-16gb"),
    ("Orin Nano", 6, "orin-nano-4gb", "orin-nano-8gb"),
    ("AGX Xavier", 0, "agx-xavier", "agx-xavier"),
    ("Xavier NX", 0, "xavier-nx", "xavier-nx"),
    ("Nano", 3, "jetson-nano-2gb", "jetson-nano-4gb"),
]

#: L4T release -> JetPack (NVIDIA's JetPack archive). The longest matching prefix wins.
L4T_TO_JETPACK = {
    "32.7": "4.6.x",
    "35.1": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5": "5.1.3",
    "35.6": "5.1.4",
    "36.2": "6.0 DP",
    "36.3": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
    "38.2": "7.0",
}

_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)")


def parse_l4t_release(text: str) -> str | None:
    """``/etc/nv_tegra_release`` text -> ``"36.4.3"``; ``None`` if it is not in that format."""
    match = _RELEASE.search(text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def parse_mem_total_gib(meminfo: str) -> float | None:
    """``/proc/meminfo`` text -> MemTotal in GiB."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", meminfo, re.MULTILINE)
    return int(match.group(1)) / (1 << 20) if match else None


def jetpack_of(l4t: str | None) -> str | None:
    """The JetPack release an L4T release belongs to (``36.4.3`` -> ``6.2``), if known."""
    if not l4t:
        return None
    matches = [prefix for prefix in L4T_TO_JETPACK if l4t == prefix or l4t.startswith(prefix + ".")]
    return L4T_TO_JETPACK[max(matches, key=len)] if matches else None


def device_name(model: str, mem_total_gib: float | None) -> str | None:
    """The trtbuild device name of the Jetson module ``model`` (``orin-nano-8gb``), or ``None``."""
    if "Jetson" not in model:
        return None
    for needle, threshold, small, large in _DEVICE_NAMES:
        if needle in model:
            return large if mem_total_gib is None or mem_total_gib > threshold else small
    return None


def device_of(fingerprint: dict[str, Any]) -> str | None:
    """The device name for an environment fingerprint: the Jetson module's, else ``x86-rtx`` /
    ``x86-tensorrt`` by builder flavour when there is no device tree (a PC or server)."""
    model = fingerprint.get("device_model")
    if model:
        return device_name(model, fingerprint.get("memory_gib"))
    return "x86-rtx" if fingerprint.get("builder") == "tensorrt-rtx" else "x86-tensorrt"


#: DLA cores per module family (Jetson data sheets); modules not listed have none.
_DLA_CORES = {"AGX Orin": 2, "Orin NX": 2, "AGX Xavier": 2, "Xavier NX": 2}


def dla_cores(model: str) -> int:
    """How many DLA cores the module ``model`` has (0 for Nano, Orin Nano, TX2, Thor, non-Jetsons)."""
    if "Orin Nano" in model:
        return 0
    return next((count for needle, count in _DLA_CORES.items() if needle in model), 0)


def jetson_gpu(model: str, mem_total_gib: float | None) -> JetsonGpu | None:
    """The GPU of the module named ``model`` (device-tree text), or ``None`` for a non-Jetson."""
    if "Jetson" not in model:
        return None
    for needle, gpu, capability, by_memory in _MODULES:
        if needle in model:
            sm_count = None
            if len(by_memory) == 1:
                sm_count = by_memory[0][1]
            elif mem_total_gib is not None:
                sm_count = next(count for floor, count in by_memory if mem_total_gib >= floor)
            return JetsonGpu(gpu, capability, sm_count)
    return None
