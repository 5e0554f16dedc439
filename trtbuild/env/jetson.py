"""Jetson facts that are not in any file: the GPU of each module, read off its device-tree model.

``/proc/device-tree/model`` names the module (``NVIDIA Jetson AGX Orin Developer Kit``); the integrated
GPU's compute capability and SM count follow from it (NVIDIA's CUDA GPU table and the Jetson module data
sheets). Where one name covers two memory sizes with different SM counts, ``MemTotal`` tells them apart.
``/etc/nv_tegra_release`` gives the L4T release (``# R36 (release), REVISION: 4.3, ...`` -> ``36.4.3``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


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

_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)")


def parse_l4t_release(text: str) -> str | None:
    """``/etc/nv_tegra_release`` text -> ``"36.4.3"``; ``None`` if it is not in that format."""
    match = _RELEASE.search(text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def parse_mem_total_gib(meminfo: str) -> float | None:
    """``/proc/meminfo`` text -> MemTotal in GiB."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", meminfo, re.MULTILINE)
    return int(match.group(1)) / (1 << 20) if match else None


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
