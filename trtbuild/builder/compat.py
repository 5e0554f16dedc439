"""Every difference between TensorRT 8.x / 10 / 11 and TensorRT-RTX, and nowhere else.

Two builder *flavours*:

- ``tensorrt``: NVIDIA TensorRT (JetPack's ``python3-libnvinfer``, or the x86 wheels). 8.x and 10.x take
  FP16/INT8 builder flags; 11 is strongly typed.
- ``tensorrt-rtx``: TensorRT for RTX (``pip install tensorrt-rtx-cu13``). Strongly typed; its
  ahead-of-time builder needs no GPU and targets compute capabilities chosen in the build config.
  Polygraphy switches to it with ``POLYGRAPHY_USE_TENSORRT_RTX=1``.

Choosing a flavour and reading its version never imports TensorRT (that takes seconds). What a builder can
do is one table, ``features_for(flavour, version)``: a pure function of the flavour and the version string,
taken from NVIDIA's documented version history (the sources are beside each decision), so every branch can be
tested without that release installed. Version differences are named features (``strongly_typed``,
``precision_flags``, ...), not ``if version >= ...`` spread through the code, the approach of Polygraphy's
``backend/trt/util.py``. The few functions that need the imported module (for its enum members) take it as
an argument, ``trt``; they run only in the builder's child process.
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
                    headers = dict(
                        line.split(": ", 1)
                        for line in (info / "METADATA").read_text().split("\n\n", 1)[0].splitlines()
                        if ": " in line
                    )
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
    """What a builder flavour and version can do, as named decisions; ``features_for`` decides each, with
    its source in NVIDIA's documentation beside it.

    Attributes:
        flavour, version: what the decisions were made from (``tensorrt-rtx``, ``1.7.1.116``).
        strongly_typed: tensor types come from the network only; there is no precision builder flag.
        strongly_typed_flag: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists (trtbuild never opts
            in on 10.x: it builds 10.x networks weakly typed with the precision flags).
        precision_flags: ``BuilderFlag.FP16`` / ``INT8`` exist (weakly typed Q/DQ networks need ``INT8``).
        explicit_quantization: Q/DQ layers are built as explicit quantization.
        builder_optimization_level: ``IBuilderConfig.builder_optimization_level`` (0-5) exists.
        memory_pool_limits: the workspace is ``set_memory_pool_limit(WORKSPACE, bytes)``, else
            ``max_workspace_size``.
        timing_cache: tactic timings are loaded and saved (``ITimingCache``): same GPU, same tactics.
        compute_capability_targets: the build config chooses the target compute capabilities.
        dla: DLA cores can be targeted with GPU fallback.
    """

    flavour: str
    version: str
    strongly_typed: bool
    strongly_typed_flag: bool
    precision_flags: bool
    explicit_quantization: bool
    builder_optimization_level: bool
    memory_pool_limits: bool
    timing_cache: bool
    compute_capability_targets: bool
    dla: bool

    def describe(self) -> str:
        """``tensorrt-rtx 1.7.1.116``."""
        return f"{self.flavour} {self.version}"


def _release(version: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` from a version string (``10.3.0.30``, ``8.6.1.post1``, ``11``); ``None``
    when it does not start with a number."""
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if match is None:
        return None
    major, minor, patch = (int(part) if part else 0 for part in match.groups())
    return major, minor, patch


def features_for(flavour: str, version: str) -> Features:
    """What ``flavour`` at ``version`` can do: a pure function of the two strings (no TensorRT import).

    Args:
        flavour: ``tensorrt`` or ``tensorrt-rtx``.
        version: the builder's version string: ``tensorrt.__version__`` / ``tensorrt_rtx.__version__`` or
            the distribution's version (``10.3.0.30``, ``1.7.1.116``); only major.minor.patch are read.

    Returns:
        The decisions, each with its source beside it.

    Raises:
        TrtbuildError: an unknown flavour, or a version that does not start with a number.
    """
    if flavour not in MODULES:
        raise TrtbuildError(f"unknown builder flavour {flavour!r}: expected one of {', '.join(MODULES)}")
    release = _release(version)
    if release is None:
        raise TrtbuildError(f"{flavour} version {version!r}: expected a version such as 10.3.0")
    if flavour == "tensorrt-rtx":
        return _rtx_features(version)
    return _tensorrt_features(version, release)


def _rtx_features(version: str) -> Features:
    """TensorRT-RTX's decisions: every release so far (1.0 to 1.7) behaves the same here."""
    return Features(
        flavour="tensorrt-rtx",
        version=version,
        strongly_typed=True,  # "strongly typed networks required" (TensorRT-RTX porting guide)
        strongly_typed_flag=True,
        # its BuilderFlag has no FP16/INT8; Polygraphy refuses precision flags under USE_TENSORRT_RTX=1
        precision_flags=False,
        explicit_quantization=True,
        builder_optimization_level=True,  # IBuilderConfig::getBuilderOptimizationLevel (C++ API)
        memory_pool_limits=True,
        # its timing cache "has no impact on the serialized engine; requires a GPU during AOT", deprecated
        # since 1.2 (https://docs.nvidia.com/deeplearning/tensorrt-rtx/latest/inference-library/timing-cache-migration.html)
        timing_cache=False,
        # the AOT builder needs no GPU (https://docs.nvidia.com/deeplearning/tensorrt-rtx/latest/inference-library/cpu-engines.html)
        compute_capability_targets=True,
        dla=False,  # Polygraphy: "DLA is not supported with USE_TENSORRT_RTX=1"
    )


def _tensorrt_features(version: str, release: tuple[int, int, int]) -> Features:
    """TensorRT's decisions at ``release`` (major, minor, patch)."""
    return Features(
        flavour="tensorrt",
        version=version,
        # "Strongly typed networks are now the default ... Weak typing is no longer supported" (11.0.0 release
        # notes, https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/getting-started/release-notes-11/11.0.0.html)
        strongly_typed=release >= (11, 0, 0),
        # absent from 8.x (8.4.3's flags: EXPLICIT_BATCH, EXPLICIT_PRECISION); 10.0 Python API; 11.0: "Deprecated
        # in TensorRT 11.0. Strongly typed mode is always enabled"
        strongly_typed_flag=release >= (10, 0, 0),
        # removed in 11.0 ("BuilderFlag.FP16 — Strong typing with ModelOpt AutoCast; BuilderFlag.INT8 — Explicit
        # quantization with Q/DQ nodes", https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html);
        # weakly typed Q/DQ needs INT8 ("the INT8 flag must be set", 8.x developer guide, "Working with INT8")
        precision_flags=release < (11, 0, 0),
        # IQuantizeLayer / IDequantizeLayer (8.0.1 release notes); EXPLICIT_PRECISION "has no effect now" (8.4.3)
        explicit_quantization=release >= (8, 0, 0),
        # added in 8.6.0 EA ("API Changes For TensorRT 8.6.0 EA"; Torch-TensorRT gates on it, pytorch/TensorRT#1935)
        builder_optimization_level=release >= (8, 6, 0),
        # new in 8.4.0 EA, which deprecates max_workspace_size (removed in 10.0: "--workspace flag replaced with
        # --memPoolSize"; https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-840-ea/api/index.html)
        memory_pool_limits=release >= (8, 4, 0),
        # ITimingCache (8.0 C++ API; developer guide, "Determinism and Reproducibility", "Timing Cache")
        timing_cache=release >= (8, 0, 0),
        compute_capability_targets=False,  # TensorRT builds for the GPU it runs on
        # "TensorRT 10.7 was the last 10.x release that supported DLA"; "DLA was unavailable in TensorRT 11.0
        # through 11.3 ... 11.4.0 supported DLA only on Windows on ARM"; 11.4.1: Jetson AGX Orin, JetPack >= 7.2.2,
        # "GPU fallback behaves as it did in TensorRT 10.x" (https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/inference-library/work-with-dla.html)
        dla=release < (10, 8, 0) or release >= (11, 4, 1),
    )


def strongly_typed(flavour: str, version: str | None) -> bool:
    """Whether the builder takes tensor types from the network only (``features_for(...).strongly_typed``):
    TensorRT-RTX, TensorRT >= 11.

    Decided from the flavour and version string (no import), so the graph can be planned on a no-op run. An
    unknown or unreadable ``version`` (``None``: TensorRT copied in by hand) reads as an old TensorRT, i.e.
    weakly typed; TensorRT-RTX is strongly typed whatever its version.

    Raises:
        TrtbuildError: an unknown flavour.
    """
    return features_for(flavour, version if version and _release(version) else "0").strongly_typed


def missing_apis(features: Features, trt: Any) -> list[str]:
    """The members of the imported module ``trt`` that ``features`` relies on and ``trt`` lacks (``[]``
    when the table and the module agree).

    Only checks one way: a module may have more than the table uses (TensorRT-RTX still has
    ``ITimingCache`` and ``DeviceType.DLA``, which it ignores or refuses).
    """
    wanted = [
        (features.precision_flags, "BuilderFlag.FP16"),
        (features.precision_flags, "BuilderFlag.INT8"),
        (features.strongly_typed_flag, "NetworkDefinitionCreationFlag.STRONGLY_TYPED"),
        (features.explicit_quantization, "LayerType.QUANTIZE"),
        (features.explicit_quantization, "LayerType.DEQUANTIZE"),
        (features.builder_optimization_level, "IBuilderConfig.builder_optimization_level"),
        (features.memory_pool_limits, "MemoryPoolType.WORKSPACE"),
        (not features.memory_pool_limits, "IBuilderConfig.max_workspace_size"),
        (features.timing_cache, "ITimingCache"),
        (features.compute_capability_targets, "ComputeCapability"),
        (features.dla, "DeviceType.DLA"),
    ]
    return [name for needed, name in wanted if needed and not _has(trt, name)]


def _has(module: Any, dotted: str) -> bool:
    owner = module
    for part in dotted.split("."):
        if not hasattr(owner, part):
            return False
        owner = getattr(owner, part)
    return True


def features_of(flavour: str, trt: Any) -> Features:
    """``features_for(flavour, trt.__version__)``, checked against the imported module ``trt`` (child
    process only).

    Raises:
        BuildError: the module lacks a member the table says this version has (``missing_apis``): the table
            is wrong for this release, and building on would fail later with a less clear error.
    """
    features = features_for(flavour, str(trt.__version__))
    missing = missing_apis(features, trt)
    if missing:
        raise BuildError(
            f"{features.describe()} has no {', '.join(missing)}, which trtbuild's feature table "
            "(trtbuild/builder/compat.py) expects of this version; please report it"
        )
    return features


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


def precision_kwargs(features: Features, precision: str, *, fp16_tensors: bool, qdq_layers: bool) -> dict[str, Any]:
    """``CreateConfig`` keyword arguments that give ``precision`` (``fp32``, ``fp16``, ``int8``) for a network
    with FP16 tensors (``fp16_tensors``) and Q/DQ layers (``qdq_layers``) — the decision alone, no TensorRT.

    With precision flags (TensorRT <= 10): ``fp16`` sets the FP16 flag; ``int8`` needs Q/DQ layers and sets
    the INT8 flag too (weakly typed networks quantize only with it). Strongly typed builders (TensorRT 11,
    TensorRT-RTX) have no flag: their precision is the ONNX's, so ``fp16`` is accepted only when the network
    carries FP16 tensors and ``int8`` only with Q/DQ layers. Never falls back to FP32 silently.

    Raises:
        BuildError: the builder cannot give ``precision`` for this network.
    """
    if precision == "fp32":
        return {}
    if features.precision_flags and precision == "fp16":
        return {"fp16": True}
    if features.strongly_typed and precision == "fp16":
        if fp16_tensors:
            return {}
        raise BuildError(
            f"precision fp16: {features.describe()} is strongly typed (no FP16 builder flag) and this ONNX "
            "has no FP16 tensors; give it an FP16 ONNX (converted with FP32 I/O) or set precision: fp32"
        )
    if precision == "int8" and features.explicit_quantization:
        if not qdq_layers:
            raise BuildError(
                f"precision int8: this ONNX has no Q/DQ layers; {features.describe()} "
                "is built with explicit quantization only"
            )
        return {"int8": True} if features.precision_flags else {}
    raise BuildError(f"precision {precision}: not supported by {features.describe()}")


def precision_options(features: Features, precision: str, trt: Any, network: Any) -> dict[str, Any]:
    """``precision_kwargs`` for the parsed ``network`` (its tensor types and layers read through ``trt``).

    Raises:
        BuildError: the builder cannot give ``precision`` for this network.
    """
    return precision_kwargs(
        features,
        precision,
        fp16_tensors=precision == "fp16" and _network_has_fp16(trt, network),
        qdq_layers=precision == "int8" and _network_has_qdq(trt, network),
    )


def workspace_options(features: Features, trt: Any, workspace: int) -> dict[str, Any]:
    """``CreateConfig`` keyword arguments limiting the builder's workspace to ``workspace`` bytes.

    TensorRT >= 8.4 and TensorRT-RTX: ``memory_pool_limits={MemoryPoolType.WORKSPACE: workspace}`` (needs
    the imported module ``trt`` for the enum member). Older TensorRT: none; ``config_callbacks`` sets
    ``max_workspace_size`` instead (Polygraphy's ``CreateConfig`` has no such argument).
    """
    if not features.memory_pool_limits:
        return {}
    return {"memory_pool_limits": {trt.MemoryPoolType.WORKSPACE: workspace}}


#: TensorRT's default builder optimization level (``IBuilderConfig.builder_optimization_level``).
DEFAULT_OPTIMIZATION_LEVEL = 3


def optimization_level_options(features: Features, level: int) -> dict[str, Any]:
    """``CreateConfig`` keyword arguments for builder optimization level ``level`` (0-5).

    TensorRT >= 8.6 and TensorRT-RTX take it. Older TensorRT has no levels: the default level
    (``DEFAULT_OPTIMIZATION_LEVEL``, 3) is what it builds anyway, so it passes; another level is refused
    rather than ignored.

    Raises:
        BuildError: a level other than the default on a builder without optimization levels.
    """
    if features.builder_optimization_level:
        return {"builder_optimization_level": level}
    if level == DEFAULT_OPTIMIZATION_LEVEL:
        return {}
    raise BuildError(
        f"builder_optimization_level {level}: {features.describe()} has no builder optimization "
        f"levels (TensorRT >= 8.6); remove the setting or set it to {DEFAULT_OPTIMIZATION_LEVEL}"
    )


def dla_options(features: Features, dla_core: int | None) -> dict[str, Any]:
    """``CreateConfig`` keyword arguments for a DLA build (GPU fallback allowed).

    Raises:
        BuildError: the builder has no DLA support (TensorRT-RTX, TensorRT 10.8 to 11.4.0).
    """
    if dla_core is None:
        return {}
    if not features.dla:
        raise BuildError(f"dla_core {dla_core}: {features.describe()} cannot target DLA cores")
    return {"use_dla": True, "allow_gpu_fallback": True}


def target_options(features: Features, compute_capabilities: list[str] | None) -> dict[str, Any]:
    """``CreateConfigRTX`` keyword arguments for the target compute capabilities (``["8.6", "12.0"]`` ->
    ``[(8, 6), (12, 0)]``; none on TensorRT).

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
    """(``CreateConfig`` keyword arguments, ``save_timing_cache`` path) for a timing cache at ``path``: load
    it when the file exists, save it after the build; ``({}, None)`` where the builder keeps no timing cache
    (TensorRT-RTX) or no path is given."""
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


def set_max_workspace_size(workspace: int) -> Any:
    """A Polygraphy ``PostprocessConfig`` callback setting ``IBuilderConfig.max_workspace_size`` to
    ``workspace`` bytes (TensorRT < 8.4, before memory pools)."""

    def apply(builder: Any, network: Any, config: Any) -> None:
        config.max_workspace_size = workspace

    return apply


def config_callbacks(features: Features, dla_core: int | None, workspace: int) -> list[Any]:
    """The ``PostprocessConfig`` callbacks a build needs after ``CreateConfig``, in order: the workspace
    limit where memory pools do not exist yet (``set_max_workspace_size``), the DLA core when one is chosen
    (``set_dla_core``)."""
    callbacks = []
    if not features.memory_pool_limits:
        callbacks.append(set_max_workspace_size(workspace))
    if dla_core is not None:
        callbacks.append(set_dla_core(dla_core))
    return callbacks
