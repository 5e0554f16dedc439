"""A loaded project: its models with every path resolved (``ModelTarget``) and the project's own files
(``Project``: lock, state, logs, timing cache). ``loader.load_project`` makes them from builds.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtbuild.export.registry import Recipe
from trtbuild.manifest.devices import LOCK_DIR
from trtbuild.manifest.schema import ModelSpec, RemoteBuilder

DEFAULT_ENGINE_DIR = "engines"
EXPORT_DIR = "exports"
REPORT_DIR = "reports"


@dataclass(frozen=True)
class ModelTarget:
    """One model with everything resolved: absolute paths and where its fields were written.

    Attributes:
        name: the model's name in the manifest.
        spec: its validated settings, defaults merged.
        source: absolute path of the source file: the local path, or the pin's entry in the source cache.
        recipe: the recipe that exports the source to ONNX; ``None`` when the source is the ONNX.
        onnx: absolute path of the model's FP32 ONNX (the source, or ``exports/<name>.onnx`` after a recipe).
        fp16_onnx: where its FP16 conversion goes (``exports/<name>.fp16.onnx``) when one is needed.
        int8_onnx: where its Q/DQ INT8 ONNX goes (``exports/<name>.int8.onnx``) for ``precision: int8``.
        report: its accuracy-gate report (``reports/<name>.accuracy.json``) for reduced precision.
        export_owner: the model whose export this one shares: models with the same source and recipe
            (precision variants of one network) are exported once, to the first one's ``exports/`` file.
        engine: absolute path of the engine (plan) file.
        plugins: absolute paths of the plugin libraries.
        plugin_sha256: each plugin's sha256 pin, or ``None`` (same order as ``plugins``).
        field_lines: field name -> ``file:line`` where its value was written (model or defaults).
    """

    name: str
    spec: ModelSpec
    source: Path
    recipe: Recipe | None
    onnx: Path
    fp16_onnx: Path
    int8_onnx: Path
    report: Path
    engine: Path
    plugins: tuple[Path, ...]
    field_lines: dict[str, str] = field(default_factory=dict, compare=False)
    export_owner: str = ""
    plugin_sha256: tuple[str | None, ...] = ()

    def where(self, *path: str | int) -> str:
        """``file:line: models.NAME.path`` for error messages about this model's field ``path``."""
        location = self.field_lines.get(str(path[0])) if path else None
        location = location or self.field_lines.get("", "")
        dotted = ".".join(str(part) for part in ("models", self.name, *path))
        return f"{location}: {dotted}"


@dataclass(frozen=True)
class Project:
    """A loaded manifest.

    Attributes:
        manifest: the builds.yaml path (absolute).
        root: the folder relative paths are resolved against (the manifest's folder).
        models: name -> ``ModelTarget``, in manifest order.
        device: the device overlay applied (``devices/<device>.yaml``), or ``None``.
        document: the merged manifest as plain data (what ``trtbuild config`` prints).
    """

    manifest: Path
    root: Path
    models: dict[str, ModelTarget]
    device: str | None = None
    document: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def remote_cache(self) -> str | None:
        """The manifest's (or the device overlay's) ``remote_cache`` URL, or ``None``."""
        url = self.document.get("remote_cache")
        return url if isinstance(url, str) else None

    @property
    def remote_cache_trusted_keys(self) -> list[Path] | None:
        """The manifest's ``remote_cache_trusted_keys``, as absolute paths, or ``None``."""
        keys = self.document.get("remote_cache_trusted_keys")
        return [self.root / key for key in keys] if isinstance(keys, list) else None

    @property
    def remote_builder(self) -> dict[str, Any] | None:
        """The overlay's ``remote:`` builder device with every default filled in (``schema.RemoteBuilder``),
        or ``None``: the engines are built on this machine."""
        spec = self.document.get("remote")
        return RemoteBuilder.model_validate(spec).model_dump() if isinstance(spec, dict) else None

    @property
    def state_dir(self) -> Path:
        """``.trtbuild/`` beside the manifest: stat cache, environment probe, logs."""
        return self.root / ".trtbuild"

    @property
    def log_dir(self) -> Path:
        """Where the steps' logs go: ``.trtbuild/logs/``, ``.trtbuild/logs/<device>/`` for a device (the
        devices of one run build side by side)."""
        logs = self.state_dir / "logs"
        return logs / self.device if self.device else logs

    @property
    def lock_path(self) -> Path:
        """``builds.lock`` beside ``builds.yaml`` (``<stem>.lock``); ``locks/<device>.lock`` for a device."""
        if self.device:
            return self.root / LOCK_DIR / f"{self.device}.lock"
        return self.manifest.with_suffix(".lock")

    @property
    def timing_cache(self) -> Path:
        """The builder's timing cache for this project (and device): ``.trtbuild/timing[-device].cache``."""
        return self.state_dir / (f"timing-{self.device}.cache" if self.device else "timing.cache")

    def relative(self, path: Path) -> str:
        """``path`` relative to the project root, with forward slashes, for the lock and reports."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()
