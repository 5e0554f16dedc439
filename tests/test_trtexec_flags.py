"""trtexec's command line per TensorRT release (``builder/trtexec.py``), without trtexec installed: the flags
are a pure function of (version, settings).

Expected argument lists are written out per release (JetPack 4.6 = 8.2, JetPack 5 = 8.5, 8.6, JetPack 6 =
10.3, 10.13, 11.0), from trtexec's source at each release tag (sources on ``trtexec.FLAG_SOURCES``,
``TrtexecFacts`` and ``compat.Features``), rather than recomputed from thresholds.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from trtbuild.builder import trtexec
from trtbuild.builder.trtexec import trtexec_flags
from trtbuild.errors import BuildError, TrtbuildError

GiB = 1 << 30
V8_2, V8_5, V8_6, V10_3, V10_13, V11 = "8.2.1.8", "8.5.2.2", "8.6.1.6", "10.3.0.30", "10.13.0.35", "11.0.0.8"
RELEASES = [V8_2, V8_5, V8_6, V10_3, V10_13, V11]

ONNX, ENGINE, CACHE = "/w/m.onnx", "/w/m.plan", "/w/timing.cache"
IO = ["--onnx=/w/m.onnx", "--saveEngine=/w/m.plan"]
SAME_AS_POLYGRAPHY = ["--noTF32", "--avgTiming=1"]


def settings(**changes: Any) -> dict[str, Any]:
    """``state.keys.build_settings`` of a model with defaults (fp32, 1 GiB, level 3, static shapes)."""
    base: dict[str, Any] = {
        "precision": "fp32",
        "workspace": GiB,
        "builder_optimization_level": 3,
        "dla_core": None,
        "compute_capabilities": None,
        "fp16_via": "auto",
        "profiles": [{}],
    }
    return {**base, **changes}


def flags(version: str, build: dict[str, Any], **kwargs: Any) -> list[str]:
    options: dict[str, Any] = {
        "onnx": ONNX,
        "engine": ENGINE,
        "timing_cache": None,
        "fp16_tensors": False,
        "qdq_layers": False,
    }
    return trtexec_flags(version, build, **{**options, **kwargs})


DYNAMIC = [{"images": {"min": [1, 3, 320, 320], "opt": [4, 3, 640, 640], "max": [8, 3, 1280, 1280]}}]
DYNAMIC_FLAGS = [
    "--minShapes=images:1x3x320x320",
    "--optShapes=images:4x3x640x640",
    "--maxShapes=images:8x3x1280x1280",
]


# --- full argument lists per release ---------------------------------------------------------------


FP32_STATIC = {
    V8_2: [*IO, "--workspace=1024", *SAME_AS_POLYGRAPHY, "--buildOnly"],
    V8_5: [*IO, "--memPoolSize=workspace:1024", *SAME_AS_POLYGRAPHY, "--buildOnly"],
    V8_6: [*IO, "--memPoolSize=workspace:1024", "--builderOptimizationLevel=3", *SAME_AS_POLYGRAPHY, "--skipInference"],
    V10_3: [
        *IO,
        "--memPoolSize=workspace:1024",
        "--builderOptimizationLevel=3",
        *SAME_AS_POLYGRAPHY,
        "--skipInference",
    ],
    V10_13: [
        *IO,
        "--memPoolSize=workspace:1024",
        "--builderOptimizationLevel=3",
        *SAME_AS_POLYGRAPHY,
        "--skipInference",
    ],
    V11: [*IO, "--memPoolSize=workspace:1024", "--builderOptimizationLevel=3", *SAME_AS_POLYGRAPHY, "--skipInference"],
}


@pytest.mark.parametrize("version", RELEASES)
def test_fp32_static_shapes(version: str) -> None:
    assert flags(version, settings()) == FP32_STATIC[version]


FP16_DYNAMIC = {
    V8_2: [*IO, *DYNAMIC_FLAGS, "--workspace=2048", "--fp16", *SAME_AS_POLYGRAPHY, "--buildOnly"],
    V8_5: [*IO, *DYNAMIC_FLAGS, "--memPoolSize=workspace:2048", "--fp16", *SAME_AS_POLYGRAPHY, "--buildOnly"],
    V8_6: [
        *IO,
        *DYNAMIC_FLAGS,
        "--memPoolSize=workspace:2048",
        "--builderOptimizationLevel=3",
        "--fp16",
        *SAME_AS_POLYGRAPHY,
        "--skipInference",
    ],
    V10_3: [
        *IO,
        *DYNAMIC_FLAGS,
        "--memPoolSize=workspace:2048",
        "--builderOptimizationLevel=3",
        "--fp16",
        *SAME_AS_POLYGRAPHY,
        "--skipInference",
    ],
    V10_13: [
        *IO,
        *DYNAMIC_FLAGS,
        "--memPoolSize=workspace:2048",
        "--builderOptimizationLevel=3",
        "--fp16",
        *SAME_AS_POLYGRAPHY,
        "--skipInference",
    ],
    # strongly typed: the FP16 ONNX is the precision, no flag
    V11: [
        *IO,
        *DYNAMIC_FLAGS,
        "--memPoolSize=workspace:2048",
        "--builderOptimizationLevel=3",
        *SAME_AS_POLYGRAPHY,
        "--skipInference",
    ],
}


@pytest.mark.parametrize("version", RELEASES)
def test_fp16_with_a_dynamic_profile(version: str) -> None:
    build = settings(precision="fp16", workspace=2 * GiB, profiles=DYNAMIC)
    assert flags(version, build, fp16_tensors=True) == FP16_DYNAMIC[version]


INT8_QDQ = {
    V8_2: [*IO, "--workspace=1024", "--int8", *SAME_AS_POLYGRAPHY, "--buildOnly"],
    V8_5: [*IO, "--memPoolSize=workspace:1024", "--int8", *SAME_AS_POLYGRAPHY, "--buildOnly"],
    V8_6: [
        *IO,
        "--memPoolSize=workspace:1024",
        "--builderOptimizationLevel=5",
        "--int8",
        *SAME_AS_POLYGRAPHY,
        "--skipInference",
    ],
    V10_3: [
        *IO,
        "--memPoolSize=workspace:1024",
        "--builderOptimizationLevel=5",
        "--int8",
        *SAME_AS_POLYGRAPHY,
        "--skipInference",
    ],
    V10_13: [
        *IO,
        "--memPoolSize=workspace:1024",
        "--builderOptimizationLevel=5",
        "--int8",
        *SAME_AS_POLYGRAPHY,
        "--skipInference",
    ],
    V11: [*IO, "--memPoolSize=workspace:1024", "--builderOptimizationLevel=5", *SAME_AS_POLYGRAPHY, "--skipInference"],
}


@pytest.mark.parametrize("version", RELEASES)
def test_int8_with_qdq_layers(version: str) -> None:
    level = 3 if version in (V8_2, V8_5) else 5  # before 8.6 only the default level is accepted
    build = settings(precision="int8", builder_optimization_level=level)
    assert flags(version, build, qdq_layers=True) == INT8_QDQ[version]


DLA = {
    V8_2: [
        *IO,
        "--workspace=1024",
        "--fp16",
        *SAME_AS_POLYGRAPHY,
        "--useDLACore=1",
        "--allowGPUFallback",
        "--buildOnly",
    ],
    V8_5: [
        *IO,
        "--memPoolSize=workspace:1024",
        "--fp16",
        *SAME_AS_POLYGRAPHY,
        "--useDLACore=1",
        "--allowGPUFallback",
        "--buildOnly",
    ],
    V8_6: [
        *IO,
        "--memPoolSize=workspace:1024",
        "--builderOptimizationLevel=3",
        "--fp16",
        *SAME_AS_POLYGRAPHY,
        "--useDLACore=1",
        "--allowGPUFallback",
        "--skipInference",
    ],
    V10_3: [
        *IO,
        "--memPoolSize=workspace:1024",
        "--builderOptimizationLevel=3",
        "--fp16",
        *SAME_AS_POLYGRAPHY,
        "--useDLACore=1",
        "--allowGPUFallback",
        "--skipInference",
    ],
}


@pytest.mark.parametrize("version", [V8_2, V8_5, V8_6, V10_3])
def test_dla_core_with_gpu_fallback(version: str) -> None:
    assert flags(version, settings(precision="fp16", dla_core=1)) == DLA[version]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (V8_2, [*IO, "--workspace=1024", *SAME_AS_POLYGRAPHY, "--timingCacheFile=/w/timing.cache", "--buildOnly"]),
        (
            V8_5,
            [
                *IO,
                "--memPoolSize=workspace:1024",
                *SAME_AS_POLYGRAPHY,
                "--timingCacheFile=/w/timing.cache",
                "--buildOnly",
            ],
        ),
        (
            V10_3,
            [
                *IO,
                "--memPoolSize=workspace:1024",
                "--builderOptimizationLevel=3",
                *SAME_AS_POLYGRAPHY,
                "--timingCacheFile=/w/timing.cache",
                "--skipInference",
            ],
        ),
        (
            V11,
            [
                *IO,
                "--memPoolSize=workspace:1024",
                "--builderOptimizationLevel=3",
                *SAME_AS_POLYGRAPHY,
                "--timingCacheFile=/w/timing.cache",
                "--skipInference",
            ],
        ),
    ],
)
def test_timing_cache_file(version: str, expected: list[str]) -> None:
    assert flags(version, settings(), timing_cache=CACHE) == expected


PLUGINS = ["/w/libnms.so", "/w/libyolo.so"]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (
            V8_2,
            [
                *IO,
                "--workspace=1024",
                *SAME_AS_POLYGRAPHY,
                "--plugins=/w/libnms.so",
                "--plugins=/w/libyolo.so",
                "--buildOnly",
            ],
        ),
        (
            V8_5,
            [
                *IO,
                "--memPoolSize=workspace:1024",
                *SAME_AS_POLYGRAPHY,
                "--plugins=/w/libnms.so",
                "--plugins=/w/libyolo.so",
                "--buildOnly",
            ],
        ),
        (
            V8_6,
            [
                *IO,
                "--memPoolSize=workspace:1024",
                "--builderOptimizationLevel=3",
                *SAME_AS_POLYGRAPHY,
                "--staticPlugins=/w/libnms.so",
                "--staticPlugins=/w/libyolo.so",
                "--skipInference",
            ],
        ),
        (
            V10_13,
            [
                *IO,
                "--memPoolSize=workspace:1024",
                "--builderOptimizationLevel=3",
                *SAME_AS_POLYGRAPHY,
                "--staticPlugins=/w/libnms.so",
                "--staticPlugins=/w/libyolo.so",
                "--skipInference",
            ],
        ),
    ],
)
def test_plugins_load_into_the_builder_in_order(version: str, expected: list[str]) -> None:
    assert flags(version, settings(), plugins=PLUGINS) == expected


# --- per-flag decisions across releases ----------------------------------------------------------


@pytest.mark.parametrize("version", RELEASES)
def test_no_strongly_typed_verbose_or_explicit_batch_flag_from_8_2(version: str) -> None:
    every = flags(version, settings(precision="int8", profiles=DYNAMIC), qdq_layers=True, timing_cache=CACHE)
    assert not {"--stronglyTyped", "--verbose", "--explicitBatch", "--best"} & set(every)


def test_before_8_2_an_onnx_needs_explicit_batch() -> None:
    assert flags("8.0.1", settings()) == [
        *IO,
        "--explicitBatch",
        "--workspace=1024",
        *SAME_AS_POLYGRAPHY,
        "--buildOnly",
    ]


@pytest.mark.parametrize(
    ("version", "skip", "plugin_flag"),
    [
        ("8.5.3", "--buildOnly", "--plugins"),
        ("8.6.0", "--skipInference", "--staticPlugins"),
        ("10.0.0", "--skipInference", "--staticPlugins"),
    ],
)
def test_skip_inference_and_plugin_flags_change_at_8_6(version: str, skip: str, plugin_flag: str) -> None:
    built = flags(version, settings(), plugins=["/w/p.so"])
    assert built[-1] == skip
    assert f"{plugin_flag}=/w/p.so" in built


@pytest.mark.parametrize(
    ("version", "workspace", "flag"),
    [
        ("8.3.2", 512 * (1 << 20), "--workspace=512"),
        ("8.4.0", 512 * (1 << 20), "--memPoolSize=workspace:512"),
        (V8_6, 3 * (1 << 19), "--memPoolSize=workspace:1.5"),
        (V10_3, (1 << 20) + 1, "--memPoolSize=workspace:1.00000095367431640625"),
        (V11, 1 << 40, "--memPoolSize=workspace:1048576"),
    ],
)
def test_the_workspace_in_mib_without_a_suffix(version: str, workspace: int, flag: str) -> None:
    built = flags(version, settings(workspace=workspace))
    assert [arg for arg in built if arg.startswith(("--workspace", "--memPoolSize"))] == [flag]
    value = flag.rpartition(":")[2] if "memPool" in flag else flag.rpartition("=")[2]
    assert float(value) * (1 << 20) == workspace  # trtexec's double of MiB gives the bytes back exactly


SEVERAL = [
    {
        "images": {"min": [1, 3, 320, 320], "opt": [1, 3, 320, 320], "max": [1, 3, 640, 640]},
        "scale": {"min": [1, 2], "opt": [1, 2], "max": [1, 2]},
    },
    {
        "images": {"min": [8, 3, 640, 640], "opt": [8, 3, 640, 640], "max": [16, 3, 640, 640]},
        "scale": {"min": [8, 2], "opt": [8, 2], "max": [16, 2]},
    },
]


@pytest.mark.parametrize("version", [V10_3, V10_13, V11])
def test_several_profiles_from_10_0(version: str) -> None:
    built = flags(version, settings(profiles=SEVERAL))
    assert built[2:10] == [
        "--profile=0",
        "--minShapes=images:1x3x320x320,scale:1x2",
        "--optShapes=images:1x3x320x320,scale:1x2",
        "--maxShapes=images:1x3x640x640,scale:1x2",
        "--profile=1",
        "--minShapes=images:8x3x640x640,scale:8x2",
        "--optShapes=images:8x3x640x640,scale:8x2",
        "--maxShapes=images:16x3x640x640,scale:16x2",
    ]


def test_input_names_with_a_colon_are_quoted_and_scalars_spelled_from_10_0() -> None:
    profile = [{"input:0": {"min": [1, 3], "opt": [2, 3], "max": [4, 3]}, "k": {"min": [], "opt": [], "max": []}}]
    assert flags(V10_3, settings(profiles=profile))[2:5] == [
        "--minShapes='input:0':1x3,k:scalar",
        "--optShapes='input:0':2x3,k:scalar",
        "--maxShapes='input:0':4x3,k:scalar",
    ]
    named = [{"input:0": {"min": [1, 3], "opt": [2, 3], "max": [4, 3]}}]
    assert flags(V8_2, settings(profiles=named))[2] == "--minShapes='input:0':1x3"


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "build", "kwargs", "message"),
    [
        (
            V8_2,
            settings(builder_optimization_level=5),
            {},
            "builder_optimization_level 5: tensorrt 8.2.1.8 has no builder optimization levels",
        ),
        (
            V8_5,
            settings(builder_optimization_level=0),
            {},
            "builder_optimization_level 0: tensorrt 8.5.2.2 has no builder optimization levels",
        ),
        (V10_13, settings(precision="fp16", dla_core=0), {}, "dla_core 0: tensorrt 10.13.0.35 cannot target DLA cores"),
        (
            V11,
            settings(precision="int8", dla_core=0),
            {"qdq_layers": True},
            "dla_core 0: tensorrt 11.0.0.8 cannot target DLA",
        ),
        (
            V10_3,
            settings(compute_capabilities=["8.7"]),
            {},
            "compute_capabilities ['8.7']: tensorrt 10.3.0.30 builds for the GPU it runs on",
        ),
        (V8_2, settings(precision="int8"), {}, "precision int8: this ONNX has no Q/DQ layers; tensorrt 8.2.1.8"),
        (V10_3, settings(precision="int8"), {}, "precision int8: this ONNX has no Q/DQ layers; tensorrt 10.3.0.30"),
        (V11, settings(precision="int8"), {}, "precision int8: this ONNX has no Q/DQ layers; tensorrt 11.0.0.8"),
        (
            V11,
            settings(precision="fp16"),
            {},
            "precision fp16: tensorrt 11.0.0.8 is strongly typed (no FP16 builder flag) and this ONNX has no FP16",
        ),
        (V10_3, settings(precision="bf16"), {}, "precision bf16: not supported by tensorrt 10.3.0.30"),
        (
            V8_2,
            settings(profiles=SEVERAL),
            {},
            "profiles: 2 optimization profiles: trtexec of tensorrt 8.2.1.8 builds one (--profile=N from "
            "TensorRT 10.0)",
        ),
        (
            V8_6,
            settings(profiles=SEVERAL),
            {},
            "profiles: 2 optimization profiles: trtexec of tensorrt 8.6.1.6 builds one",
        ),
        (
            V8_2,
            settings(workspace=1536 * 1024),
            {},
            "workspace 1572864 bytes: trtexec of tensorrt 8.2.1.8 takes whole MiB (--workspace=N)",
        ),
        (
            V8_2,
            settings(dla_core=0),
            {},
            "dla_core 0 with precision fp32: trtexec of tensorrt 8.2.1.8 enables FP16 on every DLA build",
        ),
        (
            V10_3,
            settings(dla_core=1),
            {},
            "dla_core 1 with precision fp32: trtexec of tensorrt 10.3.0.30 enables FP16 on every DLA build",
        ),
        (
            V10_3,
            settings(profiles=[{"a,b": {"min": [1], "opt": [1], "max": [2]}}]),
            {},
            "inputs: input name 'a,b': trtexec of tensorrt 10.3.0.30 cannot spell a name with ','",
        ),
        (
            V8_6,
            settings(profiles=[{"it's": {"min": [1], "opt": [1], "max": [2]}}]),
            {},
            'inputs: input name "it\'s": trtexec of tensorrt 8.6.1.6 cannot spell',
        ),
        (
            V8_6,
            settings(profiles=[{"k": {"min": [], "opt": [], "max": []}}]),
            {},
            "inputs: input 'k' is rank 0: trtexec of tensorrt 8.6.1.6 has no spelling for a scalar shape",
        ),
        (
            V10_3,
            settings(profiles=[SEVERAL[0], {}]),
            {},
            "profiles: profile 1 declares no input shapes (tensorrt 10.3.0.30)",
        ),
        ("7.0.0", settings(), {}, "trtexec of tensorrt 7.0.0: trtbuild tables trtexec's flags from TensorRT 7.1 on"),
    ],
)
def test_settings_a_release_cannot_honour_are_refused(
    version: str, build: dict[str, Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(BuildError, match=re.escape(message)) as refused:
        flags(version, build, **kwargs)
    assert "\n" not in str(refused.value)


def test_an_unreadable_version_is_an_error() -> None:
    with pytest.raises(TrtbuildError, match=re.escape("tensorrt version 'unknown': expected a version such as 10.3.0")):
        flags("unknown", settings())


@pytest.mark.parametrize("version", ["8.2.1", "8.2.1.8", "8.2.1.post1", "8.2"])
def test_only_major_minor_patch_of_a_version_matter(version: str) -> None:
    assert flags(version, settings()) == FP32_STATIC[V8_2]


# --- purity ------------------------------------------------------------------------------------


def test_the_flags_are_a_pure_function_of_their_arguments() -> None:
    """The paths name files on a device: none exists here, and the same arguments give the same flags."""
    build = settings(precision="fp16", profiles=SEVERAL, workspace=3 * (1 << 19))
    frozen = copy.deepcopy(build)
    assert not any(Path(path).exists() for path in (CACHE, *PLUGINS))
    first = flags(V10_3, build, timing_cache=CACHE, plugins=PLUGINS, fp16_tensors=True)
    again = [flags(V10_3, build, timing_cache=CACHE, plugins=PLUGINS, fp16_tensors=True) for _ in range(3)]
    assert again == [first] * 3
    assert build == frozen  # the settings are not modified
    assert first[-3:] == ["--staticPlugins=/w/libnms.so", "--staticPlugins=/w/libyolo.so", "--skipInference"]


def test_every_emitted_flag_has_a_documented_source() -> None:
    documented = {part.split("=")[0] for key in trtexec.FLAG_SOURCES for part in key.replace(" / ", " ").split()}
    every = set()
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("8.0.1", settings(precision="fp16", dla_core=0, profiles=DYNAMIC), {}),
        (V8_5, settings(precision="int8"), {"qdq_layers": True}),
        (V10_3, settings(profiles=SEVERAL), {}),
    ]
    for version, build, extra in cases:
        every |= {arg.split("=")[0] for arg in flags(version, build, timing_cache=CACHE, plugins=PLUGINS, **extra)}
    every |= {arg.split("=")[0] for arg in flags(V8_6, settings(), plugins=PLUGINS)}
    assert every <= documented
