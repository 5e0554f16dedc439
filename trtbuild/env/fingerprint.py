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
from collections.abc import Callable
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


#: Every file the probe reads, relative to the root (a device's probe over SSH reads the same list).
PROBED_FILES = (
    L4T_RELEASE,
    DEVICE_MODEL,
    MEMINFO,
    CUDA_VERSION_JSON,
    CUDA_VERSION_TXT,
    *CUDNN_HEADERS,
    DRIVER_VERSION,
)

#: ``relative path -> text or None``: how the fingerprint reads the probed files (``PROBED_FILES``).
Reader = Callable[[str], "str | None"]


def _system_cuda(read: Reader) -> str | None:
    text = read(CUDA_VERSION_JSON)
    if text:
        try:
            return str(json.loads(text)["cuda"]["version"])
        except (ValueError, KeyError, TypeError):
            pass
    text = read(CUDA_VERSION_TXT)
    if text and "Version" in text:
        return text.split("Version", 1)[1].strip()
    return None


def _cudnn(read: Reader) -> str | None:
    for header in CUDNN_HEADERS:
        text = read(header)
        if text:
            parts = [re.search(rf"#define CUDNN_{field}\s+(\d+)", text) for field in ("MAJOR", "MINOR", "PATCHLEVEL")]
            if all(parts):
                return ".".join(match.group(1) for match in parts if match)
    return None


def _driver(read: Reader, smi: dict[str, Any]) -> str | None:
    if smi.get("driver"):
        return str(smi["driver"])
    match = re.search(r"Kernel Module\s+(?:for \w+\s+)?([0-9.]+)", read(DRIVER_VERSION) or "")
    return match.group(1) if match else None


def nvinfer_version(libraries: list[str]) -> str | None:
    """TensorRT's version from its library file names (``libnvinfer.so.8.6.2`` -> ``8.6.2``): the longest
    name, i.e. the fullest version; ``None`` when there is none."""
    named = sorted((Path(name).name for name in libraries if ".so." in name), key=len)
    return named[-1].split(".so.", 1)[1] if named else None


def _builder_version(flavour: str, root: Path) -> tuple[str | None, str | None]:
    """(version, CUDA major from the wheel's name) without importing TensorRT."""
    found = compat.distribution_of(flavour)
    if found:
        return found[1], compat.cuda_of_distribution(found[0])
    for pattern in NVINFER_GLOBS:  # JetPack without pip metadata: libnvinfer.so.8.6.2
        version = nvinfer_version([str(path) for path in root.glob(pattern)])
        if version:
            return version, None
    return None, None


def _nvidia_smi() -> dict[str, Any]:
    binary = shutil.which("nvidia-smi")
    if not binary:
        return {}
    try:
        done = subprocess.run([binary, *SMI_QUERY], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_smi(done.stdout)


def probe() -> dict[str, Any]:
    """Read the fingerprint from the system now (no cache). See the module docstring for the fields.

    Raises:
        TrtbuildError: no TensorRT builder is installed (from ``compat.select_flavour``).
    """
    root = sysroot()
    flavour = compat.select_flavour()
    version, wheel_cuda = _builder_version(flavour, root)
    smi = _nvidia_smi() if root == Path("/") else {}
    return assemble(flavour, version, wheel_cuda, lambda relative: _read(root, relative), smi)


def assemble(
    flavour: str, version: str | None, wheel_cuda: str | None, read: Reader, smi: dict[str, Any]
) -> dict[str, Any]:
    """The fingerprint from what a probe found: the builder's flavour and version, the CUDA major of its
    wheel (or ``None``), the probed files (``read``: relative path in ``PROBED_FILES`` -> text, ``None``
    when absent) and ``nvidia-smi``'s answer (``{"gpu", "compute_capability", "driver"}`` or ``{}``).

    One function for this machine's probe and a builder device's (``env.device``), so the same device gives
    the same fingerprint, and the same keys, whichever machine drives its builds.
    """
    model = read(DEVICE_MODEL)
    l4t = parse_l4t_release(read(L4T_RELEASE) or "")
    memory = parse_mem_total_gib(read(MEMINFO) or "")
    fingerprint: dict[str, Any] = {
        "builder": flavour,
        "builder_version": version,
        "cuda": _system_cuda(read) or wheel_cuda,
        "cudnn": _cudnn(read),
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
    jetson = jetson_gpu(model or "", memory)
    if jetson:
        fingerprint.update(gpu=jetson.gpu, compute_capability=jetson.compute_capability, sm_count=jetson.sm_count)
    elif smi:
        fingerprint.update(gpu=smi["gpu"], compute_capability=smi["compute_capability"])
    elif flavour == "tensorrt-rtx":
        fingerprint["gpu"] = NO_GPU
    fingerprint["driver"] = _driver(read, smi)
    return fingerprint


def parse_smi(text: str) -> dict[str, Any]:
    """``nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader`` output -> ``{"gpu",
    "compute_capability", "driver"}`` of its first GPU; ``{}`` when it is not in that format."""
    try:
        name, capability, driver = (part.strip() for part in text.splitlines()[0].split(","))
    except (ValueError, IndexError):
        return {}
    return {"gpu": name, "compute_capability": capability, "driver": driver}


#: ``nvidia-smi``'s arguments for ``parse_smi``.
SMI_QUERY = ("--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader")


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
