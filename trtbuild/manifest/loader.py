"""builds.yaml -> a validated ``Project``: defaults merged into models, paths resolved, errors located.

Every problem becomes one line ``file:line: models.NAME.field: message`` and all of them are reported
together in one ``ManifestError`` (exit code 2).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trtbuild.errors import ManifestError, did_you_mean
from trtbuild.export.registry import Recipe, load_recipe
from trtbuild.files import confine, inside_project, sha256_file
from trtbuild.locate import source_path
from trtbuild.manifest.devices import overlay_path
from trtbuild.manifest.paths import check_derived_paths, check_outputs, check_state_folders
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
from trtbuild.manifest.target import DEFAULT_ENGINE_DIR, EXPORT_DIR, REPORT_DIR, ModelTarget, Project
from trtbuild.manifest.yamlsource import LocatedData, load_located, overlay

TOP_LEVEL_KEYS = set(Manifest.model_fields)
#: Top-level keys with this prefix are ignored: a place for YAML anchors shared by models (as in Compose files).
EXTENSION_PREFIX = "x-"
#: Every field name the manifest's models know, for "did you mean" on unknown fields.
FIELD_NAMES = sorted(
    {
        name
        for model in (Manifest, ModelSpec, BuildSettings, RemoteBuilder, *SCHEMA_MODELS)
        for name in model.model_fields
    }
)


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
    check_outputs(models, manifest, root, errors)
    check_derived_paths(models, root, errors)
    check_state_folders(manifest, root, device, errors)
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
