"""The command line of NVIDIA's ``trtexec`` for one engine build, per TensorRT release.

``trtexec_flags(version, settings, ...)`` is a pure function of the TensorRT version string and the build
settings (``state.keys.build_settings``): it reads no file and imports no TensorRT, so every release's command
line is tested without that release (trtexec itself is not installed where trtbuild is developed). It is used
to build on devices that have ``trtexec`` but no Python TensorRT, e.g. Jetsons over SSH (JetPack 4.6 =
TensorRT 8.2, JetPack 5 = 8.5, JetPack 6 = 10.3).

One idea written once: what a TensorRT release can *build* (precision flags, optimization levels, DLA,
memory pools, timing caches, compute-capability targets) is decided by ``builder.compat`` alone, with the same
refusals as trtbuild's Python builder; this module only spells those decisions as trtexec flags, plus the facts
that belong to trtexec itself (flag names that changed between releases, its defaults that differ from
Polygraphy's). Those facts are ``TrtexecFacts``, each with its source: ``samples/common/sampleOptions.cpp``
and ``sampleEngines.cpp`` of NVIDIA/TensorRT at the release tag (``8.2.1``, ``8.4.1``, ``8.5.1``, ``v8.6.1``,
``v10.0.0``, ``v10.3.0``, ``v10.13.0``, ``v11.0``; trtexec's own source, which prints its ``--help``), and
NVIDIA's trtexec migration guides. ``FLAG_SOURCES`` lists every flag emitted with the releases that get it.

The result is an argument vector (no shell quoting): run it as ``[trtexec, *flags]``; over SSH, where the
remote shell parses one string, join it with ``shlex.join``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trtbuild.builder import compat
from trtbuild.errors import BuildError

MiB = 1 << 20
#: The oldest release whose trtexec flags are tabled here (TensorRT 7.1.3's ``sampleOptions.cpp``: the first
#: with ``--noTF32``); JetPack 4.4 / 4.5.
OLDEST = (7, 1, 0)

#: Every flag ``trtexec_flags`` can emit -> the releases that get it and the source of the decision.
FLAG_SOURCES: dict[str, str] = {
    "--onnx=FILE": "all releases (sampleOptions.cpp ModelOptions::parse, 7.1.3 to 11.0)",
    "--saveEngine=FILE": "all releases (sampleOptions.cpp BuildOptions::parse, 7.1.3 to 11.0)",
    "--explicitBatch": (
        "< 8.2 only: 8.0.1 builds an ONNX implicit-batch without it unless shapes are given; 8.2.0 EA to 8.6: "
        "'--explicitBatch flag has been deprecated and has no effect! Explicit batch dim is automatically "
        "enabled if input model is ONNX' (sampleOptions.cpp, 8.2.1); removed in 10.0 (absent from v10.0.0)"
    ),
    "--minShapes= --optShapes= --maxShapes=": (
        "one profile, every release: spec 'name:1x3x640x640,name2:...', names with ':' wrapped in single quotes "
        "('Input names can be wrapped with escaped single quotes (ex: 'Input:0')', --help, 8.2.1 to 11.0); "
        "rank-0 inputs as 'scalar' from 10.0 (stringToValue<std::vector<int32_t>>, v10.0.0)"
    ),
    "--profile=N": (
        ">= 10.0, several profiles: '--profile=0 --minShapes=<spec> --optShapes=<spec> --maxShapes=<spec> "
        "--profile=1 ...' (--help, v10.0.0 to v11.0; getOptimizationProfiles); 8.x builds one profile and "
        "rejects repeated shape flags"
    ),
    "--workspace=N": "< 8.4: whole MiB (int32_t, shifted by 20 in sampleEngines.cpp, 8.2.1); removed in 10.0",
    "--memPoolSize=workspace:N": (
        ">= 8.4 (new in 8.4.1, '--workspace flag has been deprecated by --memPoolSize flag'): N in MiB, decimals "
        "allowed ('Also accepts decimal sizes ... rounded down to the nearest integer bytes', 8.4.1); without a "
        "suffix still MiB from 10.1 ('If none of suffixes is appended, the default unit is in MiB', v10.3.0)"
    ),
    "--builderOptimizationLevel=N": ">= 8.6 (compat.Features.builder_optimization_level; v8.6.0 sampleOptions.cpp)",
    "--fp16 / --int8": "< 11.0, as compat.precision_kwargs decides; removed in 11.0 (10.x -> 11.x trtexec migration)",
    "--noTF32": "all releases from 7.1: Polygraphy's CreateConfig clears BuilderFlag.TF32 (tf32 defaults to False)",
    "--avgTiming=1": "all releases: trtexec's default is 8 (defaultAvgTiming), TensorRT's and Polygraphy's is 1",
    "--useDLACore=N --allowGPUFallback": "where compat.Features.dla (8.x to 10.7, 11.4.1+)",
    "--timingCacheFile=FILE": ">= 8.0 (compat.Features.timing_cache; absent from 7.2.1, present in 8.0.1)",
    "--plugins=FILE": "< 8.6; deprecated in 8.6 ('--plugins flag has been deprecated, use --staticPlugins')",
    "--staticPlugins=FILE": ">= 8.6 (v8.6.0 sampleOptions.cpp)",
    "--buildOnly": "< 8.6; deprecated in 8.6 ('--buildOnly flag has been deprecated by --skipInference'), gone in 10.0",
    "--skipInference": ">= 8.6 (v8.6.0 sampleOptions.cpp)",
}


@dataclass(frozen=True)
class TrtexecFacts:
    """What belongs to trtexec itself at one TensorRT release (what the builder can do is ``compat.Features``).

    Each attribute is read from trtexec's source at the release tag in NVIDIA/TensorRT on GitHub
    (``samples/common/sampleOptions.cpp``, ``sampleEngines.cpp``, ``samples/trtexec/README.md``).

    Attributes:
        version: the version string the facts were read for.
        explicit_batch_flag: ``--explicitBatch`` is needed for an ONNX: TensorRT < 8.2. 8.0.1 parses it and
            builds implicit batch without it unless shapes are given (``explicitBatch = explicitBatch ||
            !shapes.empty()``); from 8.2.0 EA "--explicitBatch flag has been deprecated and has no effect!
            Explicit batch dim is automatically enabled if input model is ONNX"; absent from v10.0.0 (an unknown
            option is an error).
        skip_inference: the flag that stops after the build: ``--buildOnly`` before 8.6, ``--skipInference``
            from 8.6.0 ("--buildOnly flag has been deprecated by --skipInference flag", v8.6.0/v8.6.1
            ``sampleOptions.cpp``); ``--buildOnly`` is gone from v10.0.0.
        plugins: the flag that loads a plugin library into the builder process (what Polygraphy's
            ``LoadPlugins`` does with ``ctypes.CDLL``): ``--plugins`` before 8.6, ``--staticPlugins`` from 8.6.0
            ("--plugins flag has been deprecated, use --staticPlugins flag instead", v8.6.1 to v11.0).
            ``--dynamicPlugins`` (8.6+) registers through ``IPluginRegistry::loadLibrary`` for serializing
            plugins into version-compatible engines: not what trtbuild builds.
        several_profiles: several optimization profiles in one build, ``--profile=N`` followed by that
            profile's ``--minShapes/--optShapes/--maxShapes``: from 10.0 (``getOptimizationProfiles``, v10.0.0;
            also in the 9.1 OSS release, which never shipped for Jetson and is treated as 8.x here). Before, one
            profile only: repeated shape flags are not read (8.x ``getAndDelOption`` takes one occurrence).
        scalar_shapes: a rank-0 input's shape is spelled ``scalar``: from 10.0 (``option == "scalar"`` in
            ``stringToValue<std::vector<int32_t>>``, v10.0.0; absent from 8.2.1 to v8.6.1).
        whole_mib_workspace: the workspace flag takes whole MiB only: ``--workspace=N`` is ``int32_t`` MiB
            (``setMaxWorkspaceSize(static_cast<size_t>(build.workspace) << 20)``, 8.2.1 ``sampleEngines.cpp``),
            used where compat has no memory pools (< 8.4). ``--memPoolSize`` takes decimal MiB.
        dla_adds_fp16: on a DLA build trtexec sets ``BuilderFlag::kFP16`` itself unless ``--int8`` is given
            (``if (!build.int8) config.setFlag(BuilderFlag::kFP16)`` in ``sampleEngines.cpp``, 8.2.1 to
            v10.13.0; gone in v11.0, which has no precision flags). Polygraphy's ``CreateConfig(use_dla=True)``
            does not, so an FP32 DLA build from trtexec would not be trtbuild's FP32 build.
    """

    version: str
    explicit_batch_flag: bool
    skip_inference: str
    plugins: str
    several_profiles: bool
    scalar_shapes: bool
    whole_mib_workspace: bool
    dla_adds_fp16: bool


def trtexec_facts(version: str) -> TrtexecFacts:
    """trtexec's own facts at TensorRT ``version`` (``10.3.0.30``; only major.minor.patch are read).

    Raises:
        BuildError: a version that does not start with a number, or older than 7.1 (not tabled).
    """
    features = compat.features_for("tensorrt", version)  # raises TrtbuildError for an unreadable version
    release = _release(version)
    if release < OLDEST:
        raise BuildError(f"trtexec of tensorrt {version}: trtbuild tables trtexec's flags from TensorRT 7.1 on")
    return TrtexecFacts(
        version=version,
        explicit_batch_flag=release < (8, 2, 0),
        skip_inference="--skipInference" if release >= (8, 6, 0) else "--buildOnly",
        plugins="--staticPlugins" if release >= (8, 6, 0) else "--plugins",
        several_profiles=release >= (10, 0, 0),
        scalar_shapes=release >= (10, 0, 0),
        whole_mib_workspace=not features.memory_pool_limits,
        dla_adds_fp16=features.precision_flags,
    )


def _release(version: str) -> tuple[int, int, int]:
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    assert match is not None  # features_for has refused versions that do not start with a number
    major, minor, patch = (int(part) if part else 0 for part in match.groups())
    return major, minor, patch


def trtexec_flags(
    version: str,
    settings: dict[str, Any],
    *,
    onnx: str,
    engine: str,
    timing_cache: str | None,
    plugins: Sequence[str] = (),
    fp16_tensors: bool,
    qdq_layers: bool,
) -> list[str]:
    """The arguments after the ``trtexec`` binary that build ``onnx`` into ``engine`` as trtbuild's Python
    builder would (same ``compat`` decisions), and stop without running inference; never ``--stronglyTyped``
    (``precision_flags``) nor ``--verbose`` (tens of MB of log per build over SSH).

    ``version``: the device's TensorRT (flavour ``tensorrt``: TensorRT-RTX ships no trtexec for Jetson);
    ``settings``: ``state.keys.build_settings`` (``fp16_via`` is not read: it chose ``onnx``); paths are the
    device's; ``timing_cache`` ``None`` for none; ``fp16_tensors`` / ``qdq_layers``: what the ONNX carries.
    Each flag's source is in ``FLAG_SOURCES``, ``TrtexecFacts`` and ``compat.Features``.

    Raises:
        BuildError: one line naming the setting and the version, for a setting this release cannot honour
            (compat's refusals, and trtexec's own: several profiles before 10.0, a workspace not in whole MiB
            before 8.4, FP32 on DLA, input names its shape syntax cannot spell, rank-0 inputs before 10.0).
        TrtbuildError: a version that does not start with a number.
    """
    features = compat.features_for("tensorrt", version)
    facts = trtexec_facts(version)
    flags = [f"--onnx={onnx}", f"--saveEngine={engine}"]
    if facts.explicit_batch_flag:
        flags.append("--explicitBatch")
    flags += shape_flags(facts, settings["profiles"])
    flags.append(workspace_flag(features, facts, int(settings["workspace"])))
    flags += optimization_level_flags(features, settings["builder_optimization_level"])
    flags += precision_flags(features, settings["precision"], fp16_tensors=fp16_tensors, qdq_layers=qdq_layers)
    flags += ["--noTF32", "--avgTiming=1"]
    flags += dla_flags(features, facts, settings["dla_core"], settings["precision"])
    compat.target_options(features, settings["compute_capabilities"])  # refuses targets: TensorRT builds for its GPU
    if timing_cache and features.timing_cache:
        flags.append(f"--timingCacheFile={timing_cache}")
    flags += [f"{facts.plugins}={plugin}" for plugin in plugins]
    flags.append(facts.skip_inference)
    return flags


def workspace_flag(features: compat.Features, facts: TrtexecFacts, workspace: int) -> str:
    """The workspace limit, ``workspace`` bytes, as trtexec spells it.

    Where compat uses memory pools (TensorRT >= 8.4, ``compat.Features.memory_pool_limits``):
    ``--memPoolSize=workspace:N`` with N in MiB, without a unit suffix, exact decimals for a part of a MiB
    (``workspace:1024``, ``workspace:0.5``). No suffix is MiB in every release: 8.4 to 10.0 read the number
    as MiB (8.4.1 ``--help``: "in MiB ... Also accepts decimal sizes, e.g. 0.25MiB. Will be rounded down to
    the nearest integer bytes"), 10.1+ append ``M`` when no suffix is given ("If none of suffixes is
    appended, the default unit is in MiB", v10.3.0); 10.0 multiplies a suffixed number by the unit and then
    reads it as MiB, so suffixes are never written. The decimal is exact (bytes / 2**20 has at most 20
    decimals and 40 significant bits, so trtexec's ``double`` holds it and ``roundToBytes`` gets ``workspace``
    back). Older TensorRT: ``--workspace=N``, N whole MiB (8.x -> 10.x trtexec migration: "--workspace flag
    replaced with --memPoolSize=workspace:<size>").

    Raises:
        BuildError: before 8.4, a workspace that is not a whole number of MiB.
    """
    if facts.whole_mib_workspace:
        whole, rest = divmod(workspace, MiB)
        if rest:
            raise BuildError(
                f"workspace {workspace} bytes: trtexec of {features.describe()} takes whole MiB (--workspace=N); "
                f"set a multiple of 1MiB, e.g. {max(whole, 1)}MiB"
            )
        return f"--workspace={whole}"
    return f"--memPoolSize=workspace:{_mib(workspace)}"


def _mib(size: int) -> str:
    """``size`` bytes in MiB as an exact decimal: ``1073741824`` -> ``1024``, ``1572864`` -> ``1.5``."""
    whole, rest = divmod(size, MiB)
    if not rest:
        return str(whole)
    fraction = str(rest * 5**20).rjust(20, "0").rstrip("0")  # rest / 2**20 == rest * 5**20 / 10**20
    return f"{whole}.{fraction}"


def optimization_level_flags(features: compat.Features, level: int) -> list[str]:
    """``--builderOptimizationLevel=N`` where compat sets a level (TensorRT >= 8.6, always, default 3
    included, as the Python builder does); none before, where compat refuses any level but the default
    (``compat.optimization_level_options``). The flag is new in trtexec 8.6.0 (v8.6.0 ``sampleOptions.cpp``).

    Raises:
        BuildError: a level other than 3 before 8.6.
    """
    options = compat.optimization_level_options(features, level)
    return [f"--builderOptimizationLevel={options['builder_optimization_level']}"] if options else []


def precision_flags(features: compat.Features, precision: str, *, fp16_tensors: bool, qdq_layers: bool) -> list[str]:
    """``--fp16`` / ``--int8`` exactly where ``compat.precision_kwargs`` sets the builder flag.

    TensorRT < 11 (builder precision flags): ``fp16`` -> ``--fp16``; ``int8`` -> ``--int8`` with Q/DQ layers
    (explicit quantization: without a calibration file trtexec 8.x/10.x installs a random calibrator, which
    TensorRT does not use for a network with Q/DQ layers, "Explicit Versus Implicit Quantization", TensorRT
    developer guide). TensorRT 11 (strongly typed, no precision flags: "TensorRT 11.x removes all precision
    flags (--fp16, --int8, --bf16, --fp8, --int4, --best)", 10.x -> 11.x trtexec migration guide): none.

    ``--stronglyTyped`` (trtexec 10.0+, "Create a strongly typed network. (default = disabled)") is never
    passed: trtbuild builds 10.x weakly typed with the precision flags (``compat.Features.strongly_typed_flag``),
    and 10.x trtexec drops them under ``--stronglyTyped`` ("setting fp16 mode is not allowed if graph is strongly
    typed. Disabling BuilderFlag::kFP16", v10.0.0 to v10.13.0); in 11.0 it is "[Deprecated] Strongly typed
    network is now enabled by default. This flag is a no-op." (v11.0 ``--help``), so leaving it out is the same
    strongly typed build without the deprecation warning.

    Raises:
        BuildError: compat's refusals (int8 without Q/DQ layers; fp16 on 11 without FP16 tensors; another
            precision).
    """
    options = compat.precision_kwargs(features, precision, fp16_tensors=fp16_tensors, qdq_layers=qdq_layers)
    return [f"--{name}" for name in ("fp16", "int8") if options.get(name)]


def dla_flags(features: compat.Features, facts: TrtexecFacts, dla_core: int | None, precision: str) -> list[str]:
    """``--useDLACore=N --allowGPUFallback`` where compat allows DLA (``compat.dla_options``: GPU fallback
    always allowed; both flags since 7.1, ``SystemOptions::parse`` / ``BuildOptions::parse``).

    Raises:
        BuildError: DLA on a release without it (TensorRT 10.8 to 11.4.0, compat), or ``precision: fp32`` where
            trtexec turns FP16 on for every DLA build (``TrtexecFacts.dla_adds_fp16``).
    """
    if not compat.dla_options(features, dla_core):
        return []
    if facts.dla_adds_fp16 and precision == "fp32":
        raise BuildError(
            f"dla_core {dla_core} with precision fp32: trtexec of {features.describe()} enables FP16 on every DLA "
            "build, which is not trtbuild's FP32 build; set precision: fp16 or int8"
        )
    return [f"--useDLACore={dla_core}", "--allowGPUFallback"]


def shape_flags(facts: TrtexecFacts, profiles: list[dict[str, dict[str, list[int]]]]) -> list[str]:
    """The optimization profiles as shape flags.

    No profile or one empty profile (static shapes, ``[{}]``): none. One profile: ``--minShapes=``,
    ``--optShapes=``, ``--maxShapes=``, each ``name:1x3x640x640,name2:...`` in the profile's input order.
    Several (TensorRT >= 10.0, ``TrtexecFacts.several_profiles``): ``--profile=i`` followed directly by that
    profile's three shape flags (trtexec pairs them by position).

    Input names: trtexec splits a spec at ``,`` and a pair at its last ``:``, and strips single quotes from
    names (``getShapesBuild`` / ``splitNameAndValue``, 8.2.1 to v11.0); a name with ``:`` is wrapped in single
    quotes as its ``--help`` shows ("Input names can be wrapped with escaped single quotes (ex: 'Input:0')").
    A rank-0 input is ``scalar`` (10.0+).

    Raises:
        BuildError: several profiles before 10.0, an empty profile among several, an input name with ``,``
            or ``'`` (no spelling reaches trtexec intact), a rank-0 input before 10.0.
    """
    if not profiles or profiles == [{}]:
        return []
    if len(profiles) == 1:
        return _profile_flags(facts, profiles[0])
    if not facts.several_profiles:
        raise BuildError(
            f"profiles: {len(profiles)} optimization profiles: trtexec of tensorrt {facts.version} builds one "
            "(--profile=N from TensorRT 10.0); declare one profile per input"
        )
    flags = []
    for index, profile in enumerate(profiles):
        if not profile:
            raise BuildError(f"profiles: profile {index} declares no input shapes (tensorrt {facts.version})")
        flags += [f"--profile={index}", *_profile_flags(facts, profile)]
    return flags


def _profile_flags(facts: TrtexecFacts, profile: dict[str, dict[str, list[int]]]) -> list[str]:
    return [
        f"--{bound}Shapes="
        + ",".join(
            f"{_input_name(facts, name)}:{_dims(facts, name, shapes[bound])}" for name, shapes in profile.items()
        )
        for bound in ("min", "opt", "max")
    ]


def _input_name(facts: TrtexecFacts, name: str) -> str:
    if "," in name or "'" in name:
        raise BuildError(
            f"inputs: input name {name!r}: trtexec of tensorrt {facts.version} cannot spell a name with ',' or "
            '"\'" in --minShapes/--optShapes/--maxShapes; rename the ONNX input'
        )
    return f"'{name}'" if ":" in name else name


def _dims(facts: TrtexecFacts, name: str, dims: list[int]) -> str:
    if dims:
        return "x".join(str(int(dim)) for dim in dims)
    if not facts.scalar_shapes:
        raise BuildError(
            f"inputs: input {name!r} is rank 0: trtexec of tensorrt {facts.version} has no spelling for a scalar "
            "shape ('scalar' from TensorRT 10.0)"
        )
    return "scalar"
