"""The builder feature table (``builder/compat.py``) for every TensorRT release trtbuild meets, without
those releases installed: the decisions are pure functions of (flavour, version).

Expected values come from NVIDIA's version history (sources on ``compat.Features``), written out per
release here rather than recomputed from thresholds.
"""

from __future__ import annotations

import re
from importlib import util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from trtbuild.builder import compat
from trtbuild.builder.compat import Features, features_for
from trtbuild.errors import BuildError, TrtbuildError

TRT_8_2 = ("tensorrt", "8.2.1")  # JetPack 4.6 (Jetson Nano / Xavier)
TRT_8_6 = ("tensorrt", "8.6.1")
TRT_10_3 = ("tensorrt", "10.3.0")  # JetPack 6.x (Orin)
TRT_10_13 = ("tensorrt", "10.13.0")
TRT_11 = ("tensorrt", "11.0.0")
RTX = ("tensorrt-rtx", "1.7.1")
RELEASES = [TRT_8_2, TRT_8_6, TRT_10_3, TRT_10_13, TRT_11, RTX]
IDS = [f"{flavour}-{version}" for flavour, version in RELEASES]

EXPECTED: dict[tuple[str, str], dict[str, bool]] = {
    TRT_8_2: {
        "strongly_typed": False,
        "strongly_typed_flag": False,
        "precision_flags": True,
        "explicit_quantization": True,
        "builder_optimization_level": False,
        "memory_pool_limits": False,
        "timing_cache": True,
        "compute_capability_targets": False,
        "dla": True,
    },
    TRT_8_6: {
        "strongly_typed": False,
        "strongly_typed_flag": False,
        "precision_flags": True,
        "explicit_quantization": True,
        "builder_optimization_level": True,
        "memory_pool_limits": True,
        "timing_cache": True,
        "compute_capability_targets": False,
        "dla": True,
    },
    TRT_10_3: {
        "strongly_typed": False,
        "strongly_typed_flag": True,
        "precision_flags": True,
        "explicit_quantization": True,
        "builder_optimization_level": True,
        "memory_pool_limits": True,
        "timing_cache": True,
        "compute_capability_targets": False,
        "dla": True,
    },
    TRT_10_13: {
        "strongly_typed": False,
        "strongly_typed_flag": True,
        "precision_flags": True,
        "explicit_quantization": True,
        "builder_optimization_level": True,
        "memory_pool_limits": True,
        "timing_cache": True,
        "compute_capability_targets": False,
        "dla": False,
    },
    TRT_11: {
        "strongly_typed": True,
        "strongly_typed_flag": True,
        "precision_flags": False,
        "explicit_quantization": True,
        "builder_optimization_level": True,
        "memory_pool_limits": True,
        "timing_cache": True,
        "compute_capability_targets": False,
        "dla": False,
    },
    RTX: {
        "strongly_typed": True,
        "strongly_typed_flag": True,
        "precision_flags": False,
        "explicit_quantization": True,
        "builder_optimization_level": True,
        "memory_pool_limits": True,
        "timing_cache": False,
        "compute_capability_targets": True,
        "dla": False,
    },
}

NO_FP16_TENSORS = "is strongly typed (no FP16 builder flag) and this ONNX has no FP16 tensors"
NO_QDQ = "this ONNX has no Q/DQ layers"
FAILS = object()  # an expected BuildError

#: precision -> (kwargs with FP16 tensors / Q/DQ layers in the network, kwargs without), per release.
FLAG_PRECISION = {"fp32": ({}, {}), "fp16": ({"fp16": True}, {"fp16": True}), "int8": ({"int8": True}, NO_QDQ)}
TYPED_PRECISION = {"fp32": ({}, {}), "fp16": ({}, NO_FP16_TENSORS), "int8": ({}, NO_QDQ)}
PRECISION: dict[tuple[str, str], dict[str, tuple[Any, Any]]] = {
    TRT_8_2: FLAG_PRECISION,
    TRT_8_6: FLAG_PRECISION,
    TRT_10_3: FLAG_PRECISION,
    TRT_10_13: FLAG_PRECISION,
    TRT_11: TYPED_PRECISION,
    RTX: TYPED_PRECISION,
}

GiB = 1 << 30
#: A stand-in for the module's enum members that the thin (features, trt) functions read.
STUB_TRT = SimpleNamespace(MemoryPoolType=SimpleNamespace(WORKSPACE="MemoryPoolType.WORKSPACE"))


@pytest.mark.parametrize(("flavour", "version"), RELEASES, ids=IDS)
def test_each_release_has_its_documented_features(flavour: str, version: str) -> None:
    assert features_for(flavour, version) == Features(flavour=flavour, version=version, **EXPECTED[(flavour, version)])


@pytest.mark.parametrize(("flavour", "version"), RELEASES, ids=IDS)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_precision_gives_these_create_config_kwargs(flavour: str, version: str, precision: str) -> None:
    features = features_for(flavour, version)
    with_reduced, without = PRECISION[(flavour, version)][precision]
    for network_has_it, expected in ((True, with_reduced), (False, without)):
        if isinstance(expected, str):
            with pytest.raises(BuildError, match=re.escape(expected)):
                compat.precision_kwargs(features, precision, fp16_tensors=network_has_it, qdq_layers=network_has_it)
        else:
            assert (
                compat.precision_kwargs(features, precision, fp16_tensors=network_has_it, qdq_layers=network_has_it)
                == expected
            )


@pytest.mark.parametrize(("flavour", "version"), RELEASES, ids=IDS)
def test_a_precision_no_builder_has_is_refused(flavour: str, version: str) -> None:
    with pytest.raises(BuildError, match=f"precision bf16: not supported by {flavour} {version}"):
        compat.precision_kwargs(features_for(flavour, version), "bf16", fp16_tensors=True, qdq_layers=True)


@pytest.mark.parametrize(
    ("flavour", "version", "kwargs", "max_workspace_size"),
    [
        (*TRT_8_2, {}, GiB),
        (*TRT_8_6, {"memory_pool_limits": {"MemoryPoolType.WORKSPACE": GiB}}, None),
        (*TRT_10_3, {"memory_pool_limits": {"MemoryPoolType.WORKSPACE": GiB}}, None),
        (*TRT_10_13, {"memory_pool_limits": {"MemoryPoolType.WORKSPACE": GiB}}, None),
        (*TRT_11, {"memory_pool_limits": {"MemoryPoolType.WORKSPACE": GiB}}, None),
        (*RTX, {"memory_pool_limits": {"MemoryPoolType.WORKSPACE": GiB}}, None),
    ],
    ids=IDS,
)
def test_the_workspace_is_a_memory_pool_limit_from_8_4_and_max_workspace_size_before(
    flavour: str, version: str, kwargs: dict[str, Any], max_workspace_size: int | None
) -> None:
    features = features_for(flavour, version)
    assert compat.workspace_options(features, STUB_TRT, GiB) == kwargs
    config = SimpleNamespace()
    for callback in compat.config_callbacks(features, None, GiB):
        callback(None, None, config)
    assert getattr(config, "max_workspace_size", None) == max_workspace_size


@pytest.mark.parametrize(
    ("flavour", "version", "level_5", "level_3"),
    [
        (*TRT_8_2, FAILS, {}),
        (*TRT_8_6, {"builder_optimization_level": 5}, {"builder_optimization_level": 3}),
        (*TRT_10_3, {"builder_optimization_level": 5}, {"builder_optimization_level": 3}),
        (*TRT_10_13, {"builder_optimization_level": 5}, {"builder_optimization_level": 3}),
        (*TRT_11, {"builder_optimization_level": 5}, {"builder_optimization_level": 3}),
        (*RTX, {"builder_optimization_level": 5}, {"builder_optimization_level": 3}),
    ],
    ids=IDS,
)
def test_builder_optimization_levels_exist_from_8_6(
    flavour: str, version: str, level_5: Any, level_3: dict[str, int]
) -> None:
    features = features_for(flavour, version)
    assert compat.optimization_level_options(features, 3) == level_3
    if level_5 is FAILS:
        with pytest.raises(
            BuildError, match=f"builder_optimization_level 5: tensorrt {version} has no builder optimization levels"
        ):
            compat.optimization_level_options(features, 5)
    else:
        assert compat.optimization_level_options(features, 5) == level_5


@pytest.mark.parametrize(
    ("flavour", "version", "dla_kwargs"),
    [
        (*TRT_8_2, {"use_dla": True, "allow_gpu_fallback": True}),
        (*TRT_8_6, {"use_dla": True, "allow_gpu_fallback": True}),
        (*TRT_10_3, {"use_dla": True, "allow_gpu_fallback": True}),
        (*TRT_10_13, FAILS),
        (*TRT_11, FAILS),
        (*RTX, FAILS),
    ],
    ids=IDS,
)
def test_dla_core_options(flavour: str, version: str, dla_kwargs: Any) -> None:
    features = features_for(flavour, version)
    assert compat.dla_options(features, None) == {}
    if dla_kwargs is FAILS:
        with pytest.raises(BuildError, match=f"dla_core 1: {flavour} {version} cannot target DLA cores"):
            compat.dla_options(features, 1)
        return
    assert compat.dla_options(features, 1) == dla_kwargs
    config = SimpleNamespace()
    for callback in compat.config_callbacks(features, 1, GiB):
        callback(None, None, config)
    assert config.DLA_core == 1  # Polygraphy's CreateConfig always picks core 0


@pytest.mark.parametrize(("flavour", "version"), RELEASES, ids=IDS)
def test_compute_capability_targets_are_a_tensorrt_rtx_setting(flavour: str, version: str) -> None:
    features = features_for(flavour, version)
    assert compat.target_options(features, None) == {}
    if flavour == "tensorrt-rtx":
        assert compat.target_options(features, ["7.5", "8.6", "12.0"]) == {
            "compute_capabilities": [(7, 5), (8, 6), (12, 0)]
        }
    else:
        with pytest.raises(BuildError, match=f"{flavour} {version} builds for the GPU it runs on"):
            compat.target_options(features, ["8.6"])


@pytest.mark.parametrize(
    ("flavour", "version", "keeps_a_timing_cache"),
    [
        (*TRT_8_2, True),
        (*TRT_8_6, True),
        (*TRT_10_3, True),
        (*TRT_10_13, True),
        (*TRT_11, True),
        (*RTX, False),
    ],
    ids=IDS,
)
def test_timing_cache_is_loaded_when_present_and_saved_on_tensorrt_only(
    flavour: str, version: str, keeps_a_timing_cache: bool, tmp_path: Path
) -> None:
    features = features_for(flavour, version)
    cache = tmp_path / "timing.cache"
    absent = compat.timing_cache_options(features, str(cache))
    cache.write_bytes(b"cache")
    present = compat.timing_cache_options(features, str(cache))
    if keeps_a_timing_cache:
        assert absent == ({}, str(cache))
        assert present == ({"load_timing_cache": str(cache)}, str(cache))
    else:
        assert absent == present == ({}, None)
    assert compat.timing_cache_options(features, None) == ({}, None)


@pytest.mark.parametrize(
    ("flavour", "version", "builder_needs_no_callbacks"),
    [
        (*TRT_8_2, False),
        (*TRT_8_6, True),
        (*TRT_10_3, True),
        (*TRT_10_13, True),
        (*TRT_11, True),
        (*RTX, True),
    ],
    ids=IDS,
)
def test_no_config_callbacks_without_dla_from_8_4(flavour: str, version: str, builder_needs_no_callbacks: bool) -> None:
    assert (compat.config_callbacks(features_for(flavour, version), None, GiB) == []) is builder_needs_no_callbacks


@pytest.mark.parametrize(
    ("flavour", "version", "typed"),
    [
        (*TRT_8_2, False),
        (*TRT_8_6, False),
        (*TRT_10_3, False),
        (*TRT_10_13, False),
        (*TRT_11, True),
        (*RTX, True),
        ("tensorrt", "10.13.0.35", False),
        ("tensorrt", "11.1.0.2", True),
        ("tensorrt", None, False),
        ("tensorrt", "", False),
        ("tensorrt-rtx", None, True),
    ],
)
def test_strongly_typed_is_the_tables_decision(flavour: str, version: str | None, typed: bool) -> None:
    assert compat.strongly_typed(flavour, version) is typed
    if version:
        assert features_for(flavour, version).strongly_typed is typed


# --- the edges of each documented change ---------------------------------------------------------


@pytest.mark.parametrize(
    ("feature", "last_without", "first_with"),
    [
        ("memory_pool_limits", "8.3.2", "8.4.0"),
        ("builder_optimization_level", "8.5.3", "8.6.0"),
        ("strongly_typed_flag", "8.6.1", "10.0.1"),
        ("strongly_typed", "10.16.1", "11.0.0"),
        ("explicit_quantization", "7.2.3", "8.0.1"),
        ("timing_cache", "7.2.3", "8.0.1"),
        ("dla", "11.4.0", "11.4.1"),
    ],
)
def test_a_feature_starts_at_its_documented_release(feature: str, last_without: str, first_with: str) -> None:
    assert getattr(features_for("tensorrt", last_without), feature) is False
    assert getattr(features_for("tensorrt", first_with), feature) is True


@pytest.mark.parametrize(
    ("feature", "last_with", "first_without"),
    [
        ("precision_flags", "10.16.1", "11.0.0"),
        ("dla", "10.7.0", "10.8.0"),
    ],
)
def test_a_feature_ends_at_its_documented_release(feature: str, last_with: str, first_without: str) -> None:
    assert getattr(features_for("tensorrt", last_with), feature) is True
    assert getattr(features_for("tensorrt", first_without), feature) is False


def test_int8_needs_explicit_quantization() -> None:
    with pytest.raises(BuildError, match="precision int8: not supported by tensorrt 7.2.3"):
        compat.precision_kwargs(features_for("tensorrt", "7.2.3"), "int8", fp16_tensors=False, qdq_layers=True)


@pytest.mark.parametrize("version", ["10.3.0.30", "10.3.0", "10.3", "10.3.0.post1", "10.3.0b6"])
def test_only_major_minor_patch_of_a_version_matter(version: str) -> None:
    decisions = features_for("tensorrt", version)
    assert decisions.version == version
    assert decisions == Features(flavour="tensorrt", version=version, **EXPECTED[TRT_10_3])


@pytest.mark.parametrize(
    ("flavour", "version", "message"),
    [
        ("tensorrt", "unknown", "tensorrt version 'unknown': expected a version such as 10.3.0"),
        ("tensorrt", "", "tensorrt version '': expected a version such as 10.3.0"),
        ("onnxruntime", "1.20.0", "unknown builder flavour 'onnxruntime': expected one of tensorrt, tensorrt-rtx"),
    ],
)
def test_an_unreadable_version_or_unknown_flavour_is_an_error(flavour: str, version: str, message: str) -> None:
    with pytest.raises(TrtbuildError, match=re.escape(message)):
        features_for(flavour, version)


# --- the thin functions that read the imported module ---------------------------------------------


class _Layer:
    def __init__(self, kind: str, dtypes: list[str]) -> None:
        self.type, self._dtypes = kind, dtypes
        self.num_outputs = len(dtypes)

    def get_output(self, index: int) -> Any:
        return SimpleNamespace(dtype=self._dtypes[index])


class _Network:
    def __init__(self, *layers: _Layer) -> None:
        self._layers = layers
        self.num_layers = len(layers)

    def get_layer(self, index: int) -> _Layer:
        return self._layers[index]


LAYER_TRT = SimpleNamespace(
    DataType=SimpleNamespace(HALF="HALF", FLOAT="FLOAT"),
    LayerType=SimpleNamespace(QUANTIZE="QUANTIZE", DEQUANTIZE="DEQUANTIZE", CONV="CONV"),
)


@pytest.mark.parametrize(
    ("flavour", "version"), [TRT_10_3, TRT_11, RTX], ids=["tensorrt-10.3.0", "tensorrt-11.0.0", "tensorrt-rtx-1.7.1"]
)
def test_precision_options_read_the_parsed_network(flavour: str, version: str) -> None:
    features = features_for(flavour, version)
    fp32 = _Network(_Layer("CONV", ["FLOAT"]))
    fp16 = _Network(_Layer("CONV", ["FLOAT"]), _Layer("CONV", ["HALF"]))
    qdq = _Network(_Layer("QUANTIZE", ["FLOAT"]), _Layer("DEQUANTIZE", ["FLOAT"]), _Layer("CONV", ["FLOAT"]))
    typed = features.strongly_typed
    assert compat.precision_options(features, "fp16", LAYER_TRT, fp16) == ({} if typed else {"fp16": True})
    assert compat.precision_options(features, "int8", LAYER_TRT, qdq) == ({} if typed else {"int8": True})
    with pytest.raises(BuildError, match=re.escape(NO_QDQ)):
        compat.precision_options(features, "int8", LAYER_TRT, fp16)
    if typed:
        with pytest.raises(BuildError, match=re.escape(NO_FP16_TENSORS)):
            compat.precision_options(features, "fp16", LAYER_TRT, fp32)


def _module(version: str, **members: Any) -> Any:
    """A stand-in for ``tensorrt`` 10.x with the members the table expects of it, overridable."""
    names = {
        "__version__": version,
        "BuilderFlag": SimpleNamespace(FP16=1, INT8=2),
        "NetworkDefinitionCreationFlag": SimpleNamespace(STRONGLY_TYPED=0),
        "LayerType": SimpleNamespace(QUANTIZE=1, DEQUANTIZE=2),
        "IBuilderConfig": SimpleNamespace(builder_optimization_level=3),
        "MemoryPoolType": SimpleNamespace(WORKSPACE=0),
        "ITimingCache": object,
        "DeviceType": SimpleNamespace(GPU=0, DLA=1),
    }
    names.update(members)
    return SimpleNamespace(**names)


def test_the_child_refuses_a_module_that_lacks_what_its_version_promises() -> None:
    assert compat.features_of("tensorrt", _module("10.3.0.30")) == Features(
        flavour="tensorrt", version="10.3.0.30", **EXPECTED[TRT_10_3]
    )
    stripped = _module("10.3.0.30", BuilderFlag=SimpleNamespace(TF32=0), MemoryPoolType=None)
    assert compat.missing_apis(features_for("tensorrt", "10.3.0.30"), stripped) == [
        "BuilderFlag.FP16",
        "BuilderFlag.INT8",
        "MemoryPoolType.WORKSPACE",
    ]
    with pytest.raises(
        BuildError,
        match=re.escape("tensorrt 10.3.0.30 has no BuilderFlag.FP16, BuilderFlag.INT8, MemoryPoolType.WORKSPACE,"),
    ):
        compat.features_of("tensorrt", stripped)


def test_before_memory_pools_the_module_needs_max_workspace_size() -> None:
    old = _module(
        "8.2.1.8", IBuilderConfig=SimpleNamespace(), NetworkDefinitionCreationFlag=SimpleNamespace(EXPLICIT_BATCH=0)
    )
    assert compat.missing_apis(features_for("tensorrt", "8.2.1.8"), old) == ["IBuilderConfig.max_workspace_size"]
    old.IBuilderConfig.max_workspace_size = 0
    assert compat.missing_apis(features_for("tensorrt", "8.2.1.8"), old) == []


@pytest.mark.skipif(util.find_spec("tensorrt_rtx") is None, reason="TensorRT-RTX is not installed")
def test_the_installed_tensorrt_rtx_matches_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYGRAPHY_USE_TENSORRT_RTX", "0")  # restored after the test; import_trt sets it
    trt = compat.import_trt("tensorrt-rtx")
    as_the_child_sees_it = compat.features_of("tensorrt-rtx", trt)  # what builder/child.py computes
    assert as_the_child_sees_it == features_for("tensorrt-rtx", trt.__version__)
    assert compat.missing_apis(as_the_child_sees_it, trt) == []
    distribution = compat.distribution_of("tensorrt-rtx")  # what the orchestrator reads, without the import
    assert distribution is not None and distribution[1] == trt.__version__
    assert features_for("tensorrt-rtx", distribution[1]) == as_the_child_sees_it
    assert as_the_child_sees_it == Features(flavour="tensorrt-rtx", version=trt.__version__, **EXPECTED[RTX])
