"""builds.yaml -> a validated ``Project``: defaults merged into models, paths resolved, errors located.

Every problem becomes one line ``file:line: models.NAME.field: message`` and all of them are reported
together in one ``ManifestError`` (exit code 2).
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trtbuild.errors import ManifestError, did_you_mean
from trtbuild.export.registry import Recipe, load_recipe
from trtbuild.files import confine, inside_project, sha256_file
from trtbuild.locate import cache_root, source_path
from trtbuild.manifest.devices import DEVICE_DIR, LOCK_DIR, overlay_path
from trtbuild.manifest.schema import (
    INPUT_KIND_TAGS,
    MAX_NAME_LENGTH,
    PLUGIN_KIND_TAGS,
    SCHEMA_MODELS,
    SOURCE_KIND_TAGS,
    BuildSettings,
    Manifest,
    ModelSpec,
    PypiSource,
    RemoteBuilder,
    is_valid_name,
)
from trtbuild.manifest.yamlsource import LocatedData, load_located, overlay

TOP_LEVEL_KEYS = set(Manifest.model_fields)
#: Every field name the manifest's models know, for "did you mean" on unknown fields.
FIELD_NAMES = sorted(
    {
        name
        for model in (Manifest, ModelSpec, BuildSettings, RemoteBuilder, *SCHEMA_MODELS)
        for name in model.model_fields
    }
)
DEFAULT_ENGINE_DIR = "engines"
EXPORT_DIR = "exports"
#: Top-level keys with this prefix are ignored: a place for YAML anchors shared by models (as in Compose files).
EXTENSION_PREFIX = "x-"
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


def _format_loc(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """Drop pydantic's discriminator tags (``fixed``/``profile``/``profiles``) after an input name."""
    parts = list(loc)
    if len(parts) >= 3 and parts[0] == "inputs" and parts[2] in INPUT_KIND_TAGS:
        del parts[2]
    if len(parts) >= 2 and parts[0] == "source" and parts[1] in SOURCE_KIND_TAGS:
        del parts[1]
    if len(parts) >= 3 and parts[0] == "plugins" and parts[2] in PLUGIN_KIND_TAGS:
        del parts[2]
    return tuple(parts)


def _messages(
    error: ValidationError, doc: LocatedData, prefix: tuple[str, ...], origin: dict[str, tuple[str | int, ...]]
) -> list[str]:
    """pydantic errors -> ``file:line: dotted.path: message`` lines.

    ``origin`` maps a top-level field name to the YAML path it was read from (defaults or the model).
    """
    lines = []
    for item in error.errors():
        loc = _format_loc(item["loc"])
        yaml_base = origin.get(str(loc[0]), prefix) if loc else prefix
        where = doc.where(yaml_base + loc[1:] if loc and yaml_base != prefix else prefix + loc)
        dotted = ".".join(str(part) for part in prefix + loc)
        if loc and yaml_base != prefix:
            dotted += f" (from {'.'.join(str(p) for p in yaml_base)})"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field" + did_you_mean(str(loc[-1]), FIELD_NAMES)
        lines.append(f"{where}: {dotted}: {message}")
    return lines


def _normal(path: Path) -> Path:
    """``path`` absolute with ``.``/``..`` folded (symlinks not resolved)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _recipe(
    name: str, spec: ModelSpec, doc: LocatedData, root: Path, field_lines: dict[str, str], errors: list[str]
) -> Recipe | None:
    """Load the model's recipe and validate its parameters with the recipe's ``Params``."""
    assert spec.recipe is not None
    where = f"{field_lines['recipe']}: models.{name}.recipe"
    try:
        recipe = load_recipe(spec.recipe.name, root)
    except ManifestError as exc:
        errors.append(f"{where}: {exc}")
        return None
    try:
        recipe.module.Params.model_validate(spec.recipe.params())
    except ValidationError as exc:
        errors += _messages(exc, doc, ("models", name, "recipe"), {})
    if recipe.module.NEEDS_PIN and spec.pinned_sha256() is None:
        local = root / spec.source if isinstance(spec.source, str) else None
        pin = (
            f"; this file's is {sha256_file(local)}: source: {{path: {spec.source}, sha256: {sha256_file(local)}}}"
            if local is not None and local.is_file()
            else "; write source: {path: FILE, sha256: HEX}"
        )
        errors.append(
            f"{field_lines['source']}: models.{name}.source: recipe {recipe.name} loads code-carrying files "
            f"(pickles); pin the source with sha256 so nothing unverified is ever loaded{pin}"
        )
    return recipe


def artefact_dirs(device: str | None) -> tuple[str, str, str]:
    """(engine, export, report) folders relative to the project: per device when there is one."""
    suffix = f"/{device}" if device else ""
    return DEFAULT_ENGINE_DIR + suffix, EXPORT_DIR + suffix, REPORT_DIR + suffix


def _resolve_model(
    name: str, spec: ModelSpec, doc: LocatedData, root: Path, device: str | None, errors: list[str]
) -> ModelTarget:
    field_lines = {key: doc.where(("models", name, key)) for key in type(spec).model_fields}
    for key in BuildSettings.model_fields:
        if key not in (doc.data["models"][name] or {}):
            field_lines[key] = (
                doc.where(("defaults", key)) if ("defaults", key) in doc.lines else doc.where(("models", name))
            )
    field_lines[""] = doc.where(("models", name))
    engine_dir, export_dir, report_dir = artefact_dirs(device)
    output = spec.output or f"{engine_dir}/{name}.engine"
    engine = _normal(root / output)
    source = (
        source_path(spec.source.sha256)
        if isinstance(spec.source, PypiSource)
        else root / (spec.source if isinstance(spec.source, str) else spec.source.path)
    )
    recipe = _recipe(name, spec, doc, root, field_lines, errors) if spec.exports() else None
    target = ModelTarget(
        name=name,
        spec=spec,
        source=source,
        recipe=recipe,
        onnx=root / export_dir / f"{name}.onnx" if spec.exports() else source,
        fp16_onnx=root / export_dir / f"{name}.fp16.onnx",
        int8_onnx=root / export_dir / f"{name}.int8.onnx",
        report=root / report_dir / f"{name}.accuracy.json",
        engine=engine,
        plugins=tuple(_normal(root / plugin) for plugin, _ in spec.plugin_pins()),
        plugin_sha256=tuple(pin for _, pin in spec.plugin_pins()),
        field_lines=field_lines,
    )
    if Path(output).is_absolute() or not inside_project(root, engine):
        errors.append(f"{target.where('output')}: {output!r} is outside the project folder {root}")
    for index, ((written, pin), path) in enumerate(zip(spec.plugin_pins(), target.plugins)):
        if pin is None and not inside_project(root, path):
            digest = sha256_file(path) if path.is_file() else "HEX"
            errors.append(
                f"{target.where('plugins', index)}: {written} is outside the project folder {root}; a plugin "
                f"from outside is loaded only when pinned: {{path: {written}, sha256: {digest}}}"
            )
    return target


def load_project(manifest: Path, device: str | None = None) -> Project:
    """Load and validate ``manifest`` (builds.yaml), with ``devices/<device>.yaml`` merged over it.

    Returns:
        the ``Project`` with every model's defaults merged and paths resolved.

    Raises:
        ManifestError: YAML syntax, unknown keys, wrong types, bad shapes, duplicate engine outputs, or
            an engine output outside the project folder; one line per problem with ``file:line``.
    """
    doc = load_located(Path(manifest))  # messages name the file as the user wrote it
    if device is not None:
        doc = overlay(doc, load_located(overlay_path(Path(manifest).parent, device)))
    manifest = Path(os.path.abspath(manifest))
    data = doc.data
    if not isinstance(data, dict):
        raise ManifestError(f"{doc.file}:1: the manifest must be a mapping with 'models:'")
    errors: list[str] = []
    data = {key: value for key, value in data.items() if not str(key).startswith(EXTENSION_PREFIX)}
    raw_defaults = data.get("defaults") or {}
    try:  # everything but the models; models are validated one by one below, defaults merged
        Manifest.model_validate({key: value for key, value in data.items() if key != "models"})
    except ValidationError as exc:
        errors += _messages(exc, doc, (), {})
        raw_defaults = {}  # reported once here, not again under every model
    raw_models = data.get("models")
    if raw_models is None:
        errors.append(f"{doc.file}:1: models: missing (declare at least one model)")
        raw_models = {}
    if not isinstance(raw_models, dict):
        errors.append(f"{doc.where(('models',))}: models: must be a mapping of name -> model")
        raw_models = {}
    root = manifest.parent
    defaults = raw_defaults if isinstance(raw_defaults, dict) else {}
    models: dict[str, ModelTarget] = {}
    for name, raw in raw_models.items():
        spec = _model_spec(doc, name, raw, defaults, errors)
        if spec is not None:
            models[name] = _resolve_model(name, spec, doc, root, device, errors)
    models = _share_exports(models)
    _check_outputs(models, manifest, root, errors)
    _check_derived_paths(models, root, errors)
    _check_state_folders(manifest, root, device, errors)
    if errors:
        raise ManifestError(errors)
    confine(root)
    return Project(manifest=manifest, root=root, models=models, device=device, document=data)


def _model_spec(doc: LocatedData, name: Any, raw: Any, defaults: dict[str, Any], errors: list[str]) -> ModelSpec | None:
    """Model ``name``'s settings, ``defaults`` merged under its own (``raw``); ``None`` with the problems
    appended to ``errors``, each naming the line of the model's field or of the default it came from."""
    if not is_valid_name(name):
        errors.append(
            f"{doc.where(('models', name))}: models.{name!r}: invalid name (letters, digits, '_', '.', '-'; "
            f"at most {MAX_NAME_LENGTH} characters)"
        )
        return None
    raw = raw if raw is not None else {}
    if not isinstance(raw, dict):
        errors.append(f"{doc.where(('models', name))}: models.{name}: must be a mapping")
        return None
    origin: dict[str, tuple[str | int, ...]] = {key: ("defaults", key) for key in defaults if key not in raw}
    try:
        return ModelSpec.model_validate({**defaults, **raw})
    except ValidationError as exc:
        errors += _messages(exc, doc, ("models", name), origin)
        return None


def _share_exports(models: dict[str, ModelTarget]) -> dict[str, ModelTarget]:
    """Point every model whose source and recipe equal an earlier model's at that model's export."""
    owners: dict[str, ModelTarget] = {}
    shared = {}
    for name, target in models.items():
        if target.recipe is None:
            shared[name] = replace(target, export_owner=name)
            continue
        identity = json.dumps(
            [
                target.spec.source if isinstance(target.spec.source, str) else target.spec.source.model_dump(),
                target.spec.recipe.model_dump() if target.spec.recipe else None,
            ],
            sort_keys=True,
        )
        owner = owners.setdefault(identity, target)
        shared[name] = replace(target, export_owner=owner.name, onnx=owner.onnx)
    return shared


#: trtbuild's own folders in a project: no engine output may lie in them.
OWN_FOLDERS = {
    ".trtbuild": "trtbuild's state folder .trtbuild/",
    EXPORT_DIR: f"trtbuild's exports folder {EXPORT_DIR}/",
    REPORT_DIR: f"trtbuild's reports folder {REPORT_DIR}/",
    LOCK_DIR: f"the device locks folder {LOCK_DIR}/",
    DEVICE_DIR: f"the device manifests folder {DEVICE_DIR}/",
    "recipes": "the project recipes folder recipes/",
}


def _is_or_under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_outputs(models: dict[str, ModelTarget], manifest: Path, root: Path, errors: list[str]) -> None:
    """Engine outputs must be disjoint from each other, from every input (sources, plugins, image globs)
    and from trtbuild's own files (manifest, device overlays, locks, state, exports, reports, recipes, the
    source cache), compared with symlinks resolved."""
    real = os.path.realpath
    files = {
        real(manifest): f"the manifest {manifest.name}",
        real(manifest.with_suffix(".lock")): f"the lock {manifest.with_suffix('.lock').name}",
    }
    folders = {real(root / folder): what for folder, what in OWN_FOLDERS.items()}
    folders[real(cache_root())] = "the source cache"
    for target in models.values():
        files.setdefault(real(target.source), f"the source of model {target.name!r}")
        for plugin in target.plugins:
            files.setdefault(real(plugin), f"a plugin of model {target.name!r}")
    globs = [
        (pattern, noun, name)
        for name, target in models.items()
        for sample in (target.spec.calibration, target.spec.validation)
        for pattern, noun in _project_globs(sample)
    ]
    seen: dict[str, str] = {}
    for target in models.values():
        engine = real(target.engine)
        output = target.spec.output or target.engine.relative_to(root).as_posix()
        what = files.get(engine) or next(
            (what for folder, what in folders.items() if _is_or_under(engine, folder)), None
        )
        if what is None and inside_project(root, engine):
            relative = Path(engine).relative_to(real(root)).as_posix()
            what = next(
                (
                    f"{noun} of model {name!r} ({pattern})"
                    for pattern, noun, name in globs
                    if fnmatch.fnmatch(relative, pattern)
                ),
                None,
            )
        other = seen.setdefault(engine, target.name)
        if other != target.name:
            errors.append(
                f"{target.where('output')}: engine path {target.engine.name} is also the output of model {other!r}"
            )
        elif what:
            errors.append(
                f"{target.where('output')}: {output!r} is {what}; "
                "an engine must not overwrite an input or trtbuild's own files"
            )


def _project_globs(sample: Any) -> list[tuple[str, str]]:
    """(glob, "an image" / "an array") of a calibration or validation sample's files that lie in the
    project (images not inside a package, arrays); none for ``random``."""
    if sample is None or sample.random is not None or (sample.images and sample.images.package):
        return []
    found, noun = (sample.images, "an image") if sample.images else (sample.npy, "an array")
    return [(pattern, noun) for pattern in ([found.glob] if isinstance(found.glob, str) else found.glob)]


def _derived_paths(target: ModelTarget, root: Path) -> dict[str, str]:
    """Every file ``target``'s steps may write besides its engine (export, conversions, report, logs),
    as normalised path -> what it is."""
    spec, logs = target.spec, root / ".trtbuild" / "logs"
    paths = {
        logs / f"{target.name}.log": "engine log",
        logs / f"{target.name}.audit.log": "audit log",
        logs / f"{target.name}.inspect.log": "inspect log",
    }
    if target.recipe is not None and target.export_owner == target.name:
        paths |= {target.onnx: "export", logs / f"{target.name}.export.log": "export log"}
    if spec.precision in ("fp16", "int8"):
        step = spec.precision
        paths |= {
            target.fp16_onnx if step == "fp16" else target.int8_onnx: f"{step} ONNX",
            logs / f"{target.name}.{step}.log": f"{step} log",
            target.report: "accuracy report",
            logs / f"{target.name}.accuracy.log": "accuracy log",
        }
    return {os.path.normpath(path): what for path, what in paths.items()}


def _check_derived_paths(models: dict[str, ModelTarget], root: Path, errors: list[str]) -> None:
    """The files trtbuild derives from model names must differ between models (``a.fp16``'s export is
    ``exports/a.fp16.onnx``, model ``a``'s FP16 conversion too): one model would be built from another's."""
    owners: dict[str, tuple[str, str]] = {}
    for target in models.values():
        for path, what in _derived_paths(target, root).items():
            other, other_what = owners.setdefault(path, (target.name, what))
            if other != target.name:
                relative = Path(path).relative_to(root).as_posix()
                errors.append(
                    f"{target.where()}: its {what} {relative} is also the {other_what} of model {other!r}; "
                    "rename one of the models"
                )


def _check_state_folders(manifest: Path, root: Path, device: str | None, errors: list[str]) -> None:
    """trtbuild's state (``.trtbuild/``: run lock, stat cache, stamps, logs) and the lock's folder must
    resolve inside the project: they are written before any step runs."""
    lock_folder = root / LOCK_DIR if device else root
    for folder in (root / ".trtbuild", lock_folder):
        if not inside_project(root, folder):
            errors.append(
                f"{manifest.name}: {folder.relative_to(root).as_posix() or '.'}/ "
                f"resolves to {os.path.realpath(folder)}, "
                f"outside the project folder {root}; trtbuild writes only inside it"
            )
