"""The environment fingerprint: what about this machine changes the engine it builds.

Fields (``None`` where not applicable)::

    builder             tensorrt | tensorrt-rtx
    builder_version     e.g. 10.3.0.30 or 1.7.1.116
    cuda                e.g. 12.6.68 (system CUDA) or 13 (the wheel's CUDA major)
    l4t                 e.g. 36.4.3, from <sysroot>/etc/nv_tegra_release
    jetpack             the JetPack release of that L4T release (table in ``env.jetson``)
    device_model        from <sysroot>/proc/device-tree/model
    memory_gib          MemTotal from <sysroot>/proc/meminfo, GiB, one decimal
    dla_cores           Jetson: from the module table; else 0
    cudnn               from <sysroot>/usr/include/cudnn_version.h (JetPack) where present
    driver              nvidia-smi's driver version, else <sysroot>/proc/driver/nvidia/version
    gpu, compute_capability, sm_count
                        Jetson: from the module table (``env.jetson``); x86 with TensorRT: nvidia-smi;
                        TensorRT-RTX without a GPU: gpu "none (ahead-of-time build)" — the target
                        compute capabilities are then part of the build settings.

The probe imports no TensorRT: it reads package metadata and files, in a few milliseconds, on every run
that needs it. Nothing of it is cached in a file: a cached fact could be edited or go stale, and a key
must hold what is installed now. ``probe_inputs`` lists what the probe reads (with stats), so the no-op
fast path (``trtbuild.fastpath``) can tell that nothing it depends on changed without probing.
``TRTBUILD_SYSROOT`` moves the file-system root the probe reads (tests feed real-format files).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from trtbuild.builder import compat
from trtbuild.env.jetson import dla_cores, jetpack_of, jetson_gpu, parse_l4t_release, parse_mem_total_gib

SYSROOT_VARIABLE = "TRTBUILD_SYSROOT"
NO_GPU = "none (ahead-of-time build)"

L4T_RELEASE = "etc/nv_tegra_release"
DEVICE_MODEL = "proc/device-tree/model"
MEMINFO = "proc/meminfo"
CUDA_VERSION_JSON = "usr/local/cuda/version.json"
CUDA_VERSION_TXT = "usr/local/cuda/version.txt"
CUDNN_HEADERS = (
    "usr/include/cudnn_version.h",
    "usr/include/aarch64-linux-gnu/cudnn_version_v9.h",
    "usr/include/x86_64-linux-gnu/cudnn_version_v9.h",
    "usr/include/aarch64-linux-gnu/cudnn_version_v8.h",
)
DRIVER_VERSION = "proc/driver/nvidia/version"
NVINFER_GLOBS = ("usr/lib/aarch64-linux-gnu/libnvinfer.so.*", "usr/lib/x86_64-linux-gnu/libnvinfer.so.*")


def sysroot() -> Path:
    """The root the probe reads system files from (``TRTBUILD_SYSROOT``, default ``/``)."""
    return Path(os.environ.get(SYSROOT_VARIABLE) or "/")


def _read(root: Path, relative: str) -> str | None:
    try:
        return (root / relative).read_bytes().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def _system_cuda(root: Path) -> str | None:
    text = _read(root, CUDA_VERSION_JSON)
    if text:
        try:
            return str(json.loads(text)["cuda"]["version"])
        except (ValueError, KeyError, TypeError):
            pass
    text = _read(root, CUDA_VERSION_TXT)
    if text and "Version" in text:
        return text.split("Version", 1)[1].strip()
    return None


def _cudnn(root: Path) -> str | None:
    for header in CUDNN_HEADERS:
        text = _read(root, header)
        if text:
            parts = [re.search(rf"#define CUDNN_{field}\s+(\d+)", text) for field in ("MAJOR", "MINOR", "PATCHLEVEL")]
            if all(parts):
                return ".".join(match.group(1) for match in parts if match)
    return None


def _driver(root: Path, smi: dict[str, Any]) -> str | None:
    if smi.get("driver"):
        return str(smi["driver"])
    match = re.search(r"Kernel Module\s+(?:for \w+\s+)?([0-9.]+)", _read(root, DRIVER_VERSION) or "")
    return match.group(1) if match else None


def _builder_version(flavour: str, root: Path) -> tuple[str | None, str | None]:
    """(version, CUDA major from the wheel's name) without importing TensorRT."""
    found = compat.distribution_of(flavour)
    if found:
        return found[1], compat.cuda_of_distribution(found[0])
    for pattern in NVINFER_GLOBS:  # JetPack without pip metadata: libnvinfer.so.8.6.2
        libraries = sorted(root.glob(pattern), key=lambda path: len(path.name))
        if libraries:
            return libraries[-1].name.split(".so.", 1)[1], None
    return None, None


def _nvidia_smi() -> dict[str, Any]:
    binary = shutil.which("nvidia-smi")
    if not binary:
        return {}
    try:
        line = subprocess.run(
            [binary, "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.splitlines()[0]
        name, capability, driver = (part.strip() for part in line.split(","))
        return {"gpu": name, "compute_capability": capability, "driver": driver}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def probe() -> dict[str, Any]:
    """Read the fingerprint from the system now (no cache). See the module docstring for the fields.

    Raises:
        TrtbuildError: no TensorRT builder is installed (from ``compat.select_flavour``).
    """
    root = sysroot()
    flavour = compat.select_flavour()
    version, wheel_cuda = _builder_version(flavour, root)
    model = _read(root, DEVICE_MODEL)
    l4t = parse_l4t_release(_read(root, L4T_RELEASE) or "")
    memory = parse_mem_total_gib(_read(root, MEMINFO) or "")
    fingerprint: dict[str, Any] = {
        "builder": flavour,
        "builder_version": version,
        "cuda": _system_cuda(root) or wheel_cuda,
        "cudnn": _cudnn(root),
        "l4t": l4t,
        "jetpack": jetpack_of(l4t),
        "device_model": model,
        "memory_gib": round(memory, 1) if memory is not None else None,
        "gpu": None,
        "compute_capability": None,
        "sm_count": None,
        "dla_cores": dla_cores(model or ""),
        "driver": None,
    }
    smi = _nvidia_smi() if root == Path("/") else {}
    jetson = jetson_gpu(model or "", memory)
    if jetson:
        fingerprint.update(gpu=jetson.gpu, compute_capability=jetson.compute_capability, sm_count=jetson.sm_count)
    elif smi:
        fingerprint.update(gpu=smi["gpu"], compute_capability=smi["compute_capability"])
    elif flavour == "tensorrt-rtx":
        fingerprint["gpu"] = NO_GPU
    fingerprint["driver"] = _driver(root, smi)
    return fingerprint


def probe_inputs() -> dict[str, Any]:
    """What the probe depends on: trtbuild's variables and the stat ``[inode, size, mtime_ns]`` (``None``:
    absent) of every path it reads, and of every ``sys.path`` folder (a package install changes the folder).

    Returns:
        ``{"variables": {name: value}, "stats": {path: stat or None}}``.
    """
    root = sysroot()
    paths = [
        str(root / rel) for rel in (L4T_RELEASE, DEVICE_MODEL, CUDA_VERSION_JSON, CUDA_VERSION_TXT, *CUDNN_HEADERS)
    ]
    if root != Path("/"):  # in a real /proc these are regenerated on every read; a sysroot's are files
        paths += [str(root / MEMINFO), str(root / DRIVER_VERSION)]
    paths += [entry for entry in sys.path[1:] if entry]  # [0] is the script's folder or the cwd, not packages
    if smi := shutil.which("nvidia-smi"):
        paths.append(smi)
    stats: dict[str, Any] = {}
    for path in paths:
        try:
            stat = os.stat(path)
            stats[path] = [stat.st_ino, stat.st_size, stat.st_mtime_ns]
        except OSError:
            stats[path] = None
    variables = {name: os.environ.get(name) for name in (SYSROOT_VARIABLE, compat.FORCE_VARIABLE)}
    return {"variables": variables, "stats": stats}


def fingerprint() -> dict[str, Any]:
    """The fingerprint of this machine now (``probe``), once per process.

    Raises:
        TrtbuildError: no TensorRT builder is installed.
    """
    key = json.dumps(probe_inputs(), sort_keys=True)
    if _PROBED.get("key") != key:
        _PROBED.update(key=key, fingerprint=probe())
    return dict(_PROBED["fingerprint"])


_PROBED: dict[str, Any] = {}
