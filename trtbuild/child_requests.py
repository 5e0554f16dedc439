"""What a parent asks of a child process: one frozen dataclass per child kind, defined once below both sides.

The step factories (``steps/``, ``ops/``) build these; ``isolation.run_isolated`` adds the protocol
fields (``partial``, ``result``, ``target``) and writes ``to_json``; the child reads it back with
``read_request``. A builder device gets the same JSON: ``ssh.child`` writes an ``EngineRequest`` for the
builder child it runs there. Standard library only: the device's bundle (``ssh.bundle``) carries this
module, and pydantic is not on a Jetson.

Fields that are manifest settings (``calibration``, ``preprocess``, ``head``, ...) travel as the schema's
JSON (``model_dump(mode="json")``); the child validates them with ``manifest.schema``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from trtbuild.errors import BuildError


@dataclass(frozen=True, kw_only=True)
class ChildRequest:
    """The protocol fields every request carries (set by ``isolation.run_isolated``).

    Attributes:
        partial: where the child writes its file (``/proc/self/fd/N``: an inherited descriptor).
        result: a JSON file for the child's small result dict.
        target: where the file will go, for messages.
    """

    MODULE: ClassVar[str] = ""

    partial: str = ""
    result: str = ""
    target: str = ""

    def to_json(self) -> str:
        """``{"kind": <class name>, <fields>}``."""
        return json.dumps({"kind": type(self).__name__, **dataclasses.asdict(self)})


@dataclass(frozen=True, kw_only=True)
class EngineRequest(ChildRequest):
    """ONNX -> engine through Polygraphy (``builder.child``), here or on a builder device.

    Attributes:
        flavour: ``tensorrt`` or ``tensorrt-rtx`` (``builder.compat``).
        onnx: the engine ONNX's path.
        plugins: plugin library paths; ``plugin_sha256`` their pins (``None``: unpinned), aligned.
        timing_cache: the timing cache file, used where the builder supports one.
        precision, workspace (bytes), builder_optimization_level, dla_core, compute_capabilities, profiles:
            the build settings (``state.keys.build_settings``; profiles ``[{input: {min, opt, max}}]``).
    """

    MODULE: ClassVar[str] = "trtbuild.builder.child"
    #: the build settings (``state.keys.build_settings``) the builder child reads.
    SETTINGS: ClassVar[tuple[str, ...]] = (
        "precision",
        "workspace",
        "builder_optimization_level",
        "dla_core",
        "compute_capabilities",
        "profiles",
    )

    flavour: str
    onnx: str
    plugins: list[str] = field(default_factory=list)
    plugin_sha256: list[str | None] = field(default_factory=list)
    timing_cache: str | None = None
    precision: str = "fp32"
    workspace: int = 0
    builder_optimization_level: int = 3
    dla_core: int | None = None
    compute_capabilities: list[str] | None = None
    profiles: list[dict[str, dict[str, list[int]]]] = field(default_factory=lambda: [{}])

    @classmethod
    def of(cls, settings: dict[str, Any], **fields: Any) -> EngineRequest:
        """The request with the builder's part of ``settings`` (a key's ``settings`` component).

        Raises:
            BuildError: ``settings`` lacks one (a lock entry edited by hand, which an audit rebuild reads).
        """
        missing = [name for name in cls.SETTINGS if name not in settings]
        if missing:
            raise BuildError(f"the build settings lack {', '.join(missing)}")
        return cls(**{name: settings[name] for name in cls.SETTINGS}, **fields)


@dataclass(frozen=True, kw_only=True)
class InspectRequest(ChildRequest):
    """Describe an engine with TensorRT's engine inspector (``builder.inspect_child``)."""

    MODULE: ClassVar[str] = "trtbuild.builder.inspect_child"

    engine: str
    flavour: str


@dataclass(frozen=True, kw_only=True)
class ExportRequest(ChildRequest):
    """Source -> canonical ONNX through a recipe (``export.child``).

    Attributes:
        recipe: the recipe's name (``export.registry``); project_root: the project, for project recipes.
        source: the source file; sha256: its pin (``None``: unpinned), checked on a private copy.
        params: the recipe's parameters (validated by its ``Params``).
        declared: files already in the key (relative paths), left out of what the export discovered.
    """

    MODULE: ClassVar[str] = "trtbuild.export.child"

    recipe: str
    project_root: str
    source: str
    sha256: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    declared: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class PrecisionRequest(ChildRequest):
    """The precision child's requests (``precision.child``): what they feed the model with.

    Attributes:
        onnx: the FP32 ONNX (the reference, for the gate).
        project_root: the project, where sample files are found.
        preprocess: the model's ``preprocess:`` (schema JSON).
        inputs: input name -> the shape each feed takes (``steps.precision.feed_inputs``).
    """

    MODULE: ClassVar[str] = "trtbuild.precision.child"

    onnx: str
    project_root: str = ""
    preprocess: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Fp16Request(PrecisionRequest):
    """FP32 ONNX -> FP16 ONNX. ``converter``: ``onnxconverter`` or ``autocast`` (ModelOpt, which needs
    ``calibration``, schema JSON, to see the data's magnitudes)."""

    converter: str = "onnxconverter"
    calibration: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Int8Request(PrecisionRequest):
    """FP32 ONNX -> Q/DQ ONNX, calibrated on ``calibration`` (schema JSON)."""

    calibration: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class AccuracyRequest(PrecisionRequest):
    """The accuracy gate: ``onnx`` (FP32) against ``reduced`` (FP16 / Q/DQ) on ``validation``; ``head``,
    ``tolerance`` (schema JSON) and ``precision`` decide the verdict; ``model`` names the report."""

    model: str
    precision: str
    reduced: str
    validation: dict[str, Any]
    head: dict[str, Any] = field(default_factory=dict)
    tolerance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class DeviceEngineRequest(ChildRequest):
    """An engine built on a builder device over SSH (``ssh.child``).

    Attributes:
        connection: ``ssh.transport.Connection``'s fields (host, port, options, connect_timeout,
            control_path, env).
        builder: ``trtexec`` or ``polygraphy``; trtexec, python: their paths on the device.
        workdir: the device's work folder; device: the device's name (its timing cache's).
        flavour, version: the device's TensorRT.
        onnx_digest: the engine ONNX's digest (its folder on the device); onnx_files: ``[local path, name]``,
            the model then its external data.
        plugins, plugin_sha256: as ``EngineRequest``.
        fp16_tensors, qdq_layers: the ONNX holds FP16 tensors / Q/DQ layers (trtexec's flags).
        settings: the build settings (``state.keys.build_settings``).
    """

    MODULE: ClassVar[str] = "trtbuild.ssh.child"

    connection: dict[str, Any]
    builder: str
    trtexec: str
    python: str
    workdir: str
    device: str
    flavour: str
    version: str
    onnx_digest: str
    onnx_files: list[list[str]]
    plugins: list[str] = field(default_factory=list)
    plugin_sha256: list[str | None] = field(default_factory=list)
    fp16_tensors: bool = False
    qdq_layers: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


KINDS: dict[str, type[ChildRequest]] = {
    kind.__name__: kind
    for kind in (
        EngineRequest,
        InspectRequest,
        ExportRequest,
        Fp16Request,
        Int8Request,
        AccuracyRequest,
        DeviceEngineRequest,
    )
}


def read_request(path: Path) -> ChildRequest:
    """The request in ``path`` (``ChildRequest.to_json``).

    Raises:
        ValueError: not JSON, or an unknown ``kind``.
        TypeError: a field missing or unknown for its kind.
    """
    data = json.loads(path.read_text())
    kind = KINDS.get(data.pop("kind", None))
    if kind is None:
        raise ValueError(f"{path}: not a trtbuild child request")
    return kind(**data)
