"""Diagnosing a torch / torchvision pair that cannot work together, when an export trips over it.

PyPI's torchvision wheels are linked against CUDA torch (``libtorch_cuda.so``) and PyPI has no CPU build
of torchvision. Installed beside a CPU torch (``2.13.0+cpu`` from PyTorch's CPU index, or a local
wheel), ``import torchvision`` fails with ``operator torchvision::nms does not exist``: its C++ operators
never registered. Ultralytics tolerates that and still exports; a recipe or project module that touches
``torchvision.models`` or ``torchvision.ops`` does not. A matching pair comes from one index: PyTorch's
CPU wheel index (``https://download.pytorch.org/whl/cpu``: ``torch==X+cpu`` with ``torchvision==Y+cpu``)
or PyPI's CUDA builds of both.

Child side only: standard library, nothing of the parent's modules.
"""

from __future__ import annotations

import re
from importlib import metadata

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def diagnose(error: BaseException) -> str | None:
    """What is wrong and how to fix it, when ``error`` is torchvision failing to find its operators
    beside the installed torch; ``None`` for any other error."""
    text = str(error)
    if "torchvision::" not in text or "does not exist" not in text:
        return None
    torch, vision = _version("torch"), _version("torchvision")
    wanted = None
    try:
        requirements = metadata.requires("torchvision") or []
        wanted = next(
            (match.group(1) for line in requirements if (match := re.match(r"torch\s*\(?==\s*([\w.]+)", line))), None
        )
    except metadata.PackageNotFoundError:
        pass
    base = (wanted or (torch or "").split("+")[0]) or "X"
    vision_base = (vision or "Y").split("+")[0]
    return (
        f"torchvision {vision} cannot load its operators beside torch {torch} ({text.strip()}): PyPI's torchvision is "
        f"built for CUDA torch and PyPI has no CPU build of it. Install a matching pair, either the CPU builds: "
        f"pip install 'torch=={base}+cpu' 'torchvision=={vision_base}+cpu' --index-url {CPU_INDEX} "
        f"— or the CUDA builds from PyPI (several GB): pip install 'torch=={base}' 'torchvision=={vision_base}'"
    )
