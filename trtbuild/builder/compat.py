"""Every difference between TensorRT 8.6 / 10 / 11 and TensorRT-RTX, and nowhere else.

Two builder *flavours*:

- ``tensorrt``: NVIDIA TensorRT (JetPack's ``python3-libnvinfer``, or the x86 wheels). 8.6 and 10.x take
  FP16/INT8 builder flags; 11 is strongly typed.
- ``tensorrt-rtx``: TensorRT for RTX (``pip install tensorrt-rtx-cu13``). Strongly typed; its
  ahead-of-time builder needs no GPU and targets compute capabilities chosen in the build config.
  Polygraphy switches to it with ``POLYGRAPHY_USE_TENSORRT_RTX=1``.

Choosing a flavour and reading its version never imports TensorRT (that takes seconds); the feature
checks below run only inside the builder's child process, where TensorRT is imported anyway. Version
differences are named features (``strongly_typed``, ``precision_flags``, ...), not ``if version >= ...``
spread through the code — the approach of Polygraphy's ``backend/trt/util.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from importlib import util
from pathlib import Path
from typing import Any

from trtbuild.errors import BuildError, TrtbuildError

#: flavour -> Python module
MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
#: Environment variable that forces a flavour (e.g. to build with TensorRT-RTX on a TensorRT machine).
FORCE_VARIABLE = "TRTBUILD_BUILDER"


def select_flavour() -> str:
    """The builder flavour of this machine: ``tensorrt`` when importable, else ``tensorrt-rtx``.

    ``TRTBUILD_BUILDER`` overrides the choice. Only locates the modules; imports nothing.

    Raises:
        TrtbuildError: neither is installed, or ``TRTBUILD_BUILDER`` names an unknown flavour.
    """
    forced = os.environ.get(FORCE_VARIABLE)
    if forced:
        if forced not in MODULES:
            raise TrtbuildError(f"{FORCE_VARIABLE}={forced!r}: expected one of {', '.join(MODULES)}")
        return forced
    for flavour, module in MODULES.items():
        if util.find_spec(module) is not None:
            return flavour
    raise TrtbuildError(
        "no TensorRT builder found: on a Jetson install JetPack's TensorRT (apt install python3-libnvinfer); "
        "on x86-64 without TensorRT, install TensorRT for RTX with `pip install 'trtbuild[rtx]'`"
    )


def distribution_of(flavour: str) -> tuple[str, str] | None:
    """``(distribution name, version)`` of the installed flavour, read from package metadata.

    Looks first at the ``*.dist-info`` folders beside the module whose ``RECORD`` lists its files (a
    directory listing and a few small reads), and only then at every installed distribution
    (``importlib.metadata.packages_distributions``, ~0.3 s with exporters installed). ``None`` when no
    distribution provides it (e.g. TensorRT copied in by hand); the environment probe then falls back to
    the library file names.
    """
    module = MODULES[flavour]
    spec = util.find_spec(module)
    if spec is not None and spec.submodule_search_locations:
        site = Path(next(iter(spec.submodule_search_locations))).parent
        prefix = module.split("_")[0].lower()
        for info in sorted(site.glob("*.dist-info"), key=lambda path: len(path.name)):
            if not info.name.lower().startswith(prefix):
                continue
            with contextlib.suppress(OSError):
                if any(line.startswith(f"{module}/") for line in (info / "RECORD").read_text().splitlines()):
                    headers = dict(line.split(": ", 1) for line in (info / "METADATA").read_text().split("\n\n", 1)[0].splitlines()
                                   if ": " in line)
                    return headers["Name"], headers["Version"]
    from importlib import metadata  # ~16 ms of imports: only when the dist-info is not beside the module

    candidates = metadata.packages_distributions().get(module, [])
    for name in sorted(candidates, key=len):  # "tensorrt_rtx_cu13" before "..._bindings"
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def cuda_of_distribution(name: str) -> str | None:
    """The CUDA major version a wheel is built for, from its name (``tensorrt_rtx_cu13`` -> ``13``)."""
    match = re.search(r"cu(\d+)", name)
    return match.group(1) if match else None


def strongly_typed(flavour: str, version: str | None) -> bool:
    """Whether the builder takes tensor types from the network only: TensorRT-RTX, TensorRT >= 11.

    Decided from the flavour and version string (no import), so the graph can be planned on a no-op run.
    """
    if flavour == "tensorrt-rtx":
        return True
    major = (version or "0").split(".")[0]
    return major.isdigit() and int(major) >= 11


def activate(flavour: str) -> None:
    """Point Polygraphy at ``flavour``. Must run before Polygraphy's TensorRT backend is imported."""
    os.environ["POLYGRAPHY_USE_TENSORRT_RTX"] = "1" if flavour == "tensorrt-rtx" else "0"


def import_trt(flavour: str) -> Any:
    """Import and return the TensorRT module of ``flavour`` (child process only)."""
    activate(flavour)
    import importlib

    return importlib.import_module(MODULES[flavour])


@dataclass(frozen=True)
class Features:
    """What the imported builder can do, as named checks.

    Attributes:
        flavour: ``tensorrt`` or ``tensorrt-rtx``.
        version: the module's ``__version__``.
        strongly_typed: tensor types come from the network (TensorRT >= 11, TensorRT-RTX); there are no
            FP16/INT8 builder flags ("Strongly Typed Networks", TensorRT developer guide).
        precision_flags: ``BuilderFlag.FP16`` / ``INT8`` exist (TensorRT <= 10).
        dla: Deep Learning Accelerator cores can be targeted (TensorRT on Jetson Xavier / Orin).
        compute_capability_targets: the build config chooses target compute capabilities
            (TensorRT-RTX ahead-of-time builds).
        timing_cache: tactic timings can be loaded and saved (``ITimingCache``), so a rebuild on the same
            GPU picks the same tactics (TensorRT developer guide, "Determinism and Reproducibility").
            TensorRT-RTX's ahead-of-time builder times nothing, so it does not use one.
    """

    flavour: str
    version: str
    strongly_typed: bool
    precision_flags: bool
    dla: bool
    compute_capability_targets: bool
    timing_cache: bool

    @classmethod
    def of(cls, flavour: str, trt: Any) -> Features:
        """Probe the imported module ``trt``."""
        rtx = flavour == "tensorrt-rtx"
        flags = hasattr(trt, "BuilderFlag") and hasattr(trt.BuilderFlag, "FP16") and not rtx
        major = int(str(trt.__version__).split(".")[0])
        return cls(
            flavour=flavour,
            version=str(trt.__version__),
            strongly_typed=rtx or major >= 11,
            precision_flags=flags and major < 11,
            dla=not rtx,
            compute_capability_targets=rtx and hasattr(trt, "ComputeCapability"),
            timing_cache=not rtx and hasattr(trt, "ITimingCache"),
        )

    def describe(self) -> str:
        """``tensorrt-rtx 1.7.1.116``."""
        return f"{self.flavour} {self.version}"


def _network_has_fp16(trt: Any, network: Any) -> bool:
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        for output in range(layer.num_outputs):
            if layer.get_output(output).dtype == trt.DataType.HALF:
                return True
    return False


def _network_has_qdq(trt: Any, network: Any) -> bool:
    kinds = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    return any(network.get_layer(index).type in kinds for index in range(network.num_layers))


def precision_options(features: Features, precision: str, trt: Any, network: Any) -> dict[str, Any]:
    """``CreateConfig`` keyword arguments that give the requested precision.

    TensorRT <= 10: the FP16 builder flag. Strongly typed builders have no flag; their precision is the
    ONNX's, so ``fp16`` is accepted only when the network carries FP16 tensors. Never falls back to FP32
    silently.

    Raises:
        BuildError: the builder cannot give ``precision`` for this network.
    """
    if precision == "fp32":
        return {}
    if features.precision_flags and precision == "fp16":
        return {"fp16": True}
    if features.strongly_typed and precision == "fp16":
        if _network_has_fp16(trt, network):
            return {}
        raise BuildError(
            f"precision fp16: {features.describe()} is strongly typed (no FP16 builder flag) and this ONNX "
            "has no FP16 tensors; give it an FP16 ONNX (converted with FP32 I/O) or set precision: fp32"
        )
    if precision == "int8":
        if not _network_has_qdq(trt, network):
            raise BuildError(f"precision int8: this ONNX has no Q/DQ layers; {features.describe()} is built with explicit quantization only")
        return {} if features.strongly_typed else {"int8": True}  # TensorRT <= 10 needs the flag for Q/DQ too
    raise BuildError(f"precision {precision}: not supported by {features.describe()}")


def dla_options(features: Features, dla_core: int | None) -> dict[str, Any]:
    """``CreateConfig`` keyword arguments for a DLA build (GPU fallback allowed).

    Raises:
        BuildError: the builder has no DLA support (TensorRT-RTX).
    """
    if dla_core is None:
        return {}
    if not features.dla:
        raise BuildError(f"dla_core {dla_core}: {features.describe()} cannot target DLA cores")
    return {"use_dla": True, "allow_gpu_fallback": True}


def target_options(features: Features, compute_capabilities: list[str] | None) -> dict[str, Any]:
    """``CreateConfigRTX`` keyword arguments for the target compute capabilities (none on TensorRT).

    Raises:
        BuildError: targets were given to a builder that builds for the GPU it runs on (TensorRT).
    """
    if compute_capabilities is None:
        return {}
    if not features.compute_capability_targets:
        raise BuildError(
            f"compute_capabilities {compute_capabilities}: {features.describe()} builds for the GPU it runs on; "
            "target compute capabilities are a TensorRT-RTX setting"
        )
    return {"compute_capabilities": [tuple(int(part) for part in cc.split(".")) for cc in compute_capabilities]}


def timing_cache_options(features: Features, path: str | None) -> tuple[dict[str, Any], str | None]:
    """(``CreateConfig`` keyword arguments, ``save_timing_cache`` path) for a timing cache at ``path``."""
    if not features.timing_cache or not path:
        return {}, None
    return ({"load_timing_cache": path} if os.path.exists(path) else {}), path


def config_loader(features: Features) -> Any:
    """Polygraphy's config loader for the flavour: ``CreateConfigRTX`` or ``CreateConfig``."""
    if features.flavour == "tensorrt-rtx":
        from polygraphy.backend.tensorrt_rtx import CreateConfigRTX

        return CreateConfigRTX
    from polygraphy.backend.trt import CreateConfig

    return CreateConfig


def set_dla_core(dla_core: int) -> Any:
    """A Polygraphy ``PostprocessConfig`` callback choosing the DLA core (Polygraphy always picks 0)."""

    def apply(builder: Any, network: Any, config: Any) -> None:
        config.DLA_core = dla_core

    return apply
