"""Staleness keys: what an engine depends on, hashed, and why two of them differ.

An engine's key is the sha256 of canonical JSON (sorted keys, no whitespace) of its components:

- ``onnx``: the ONNX content digest (external data included);
- ``settings``: the build settings that change the plan (not the output path or comments);
- ``plugins``: plugin library name -> sha256;
- ``env``: the environment fingerprint (builder flavour and version, CUDA, L4T, device, GPU, ...);
- ``schema``: this module's ``KEY_SCHEMA``, bumped whenever the meaning of a component changes.

An export's key also holds ``discovered``: project file -> sha256 of every file the recipe read besides
its declared inputs (``export.discovered``), recorded after the export like a compiler's depfile.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: trtbuild.deploy uses diff_reasons without pydantic
    from trtbuild.manifest.loader import ModelTarget

KEY_SCHEMA = 1


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def build_settings(target: ModelTarget) -> dict[str, Any]:
    """The settings of ``target`` that change the engine; cosmetic ones (output path) are left out."""
    spec = target.spec
    return {
        "precision": spec.precision,
        "workspace": int(spec.workspace),
        "builder_optimization_level": spec.builder_optimization_level,
        "dla_core": spec.dla_core,
        "compute_capabilities": spec.compute_capabilities,
        "fp16_via": spec.fp16_via,
        "profiles": [
            {name: {"min": lo, "opt": opt, "max": hi} for name, (lo, opt, hi) in sorted(profile.items())}
            for profile in spec.profiles()
        ],
    }


def engine_components(onnx: str, settings: dict[str, Any], plugins: dict[str, str], env: dict[str, Any]) -> dict[str, Any]:
    """Assemble the key components (see the module docstring)."""
    return {"schema": KEY_SCHEMA, "onnx": onnx, "settings": settings, "plugins": plugins, "env": env}


def key_of(components: dict[str, Any]) -> str:
    """The key: sha256 of the components' canonical JSON, hex."""
    return hashlib.sha256(canonical_json(components).encode()).hexdigest()


def export_components(source: str, recipe: str, code: str, params: dict[str, Any], exporters: dict[str, Any], version: int) -> dict[str, Any]:
    """The key components of an export: source hash, recipe name, code hash and version, params, exporter versions."""
    return {"schema": KEY_SCHEMA, "source": source, "recipe": recipe, "code": code, "recipe_version": version,
            "params": params, "exporters": exporters}


def conversion_components(onnx: str, converter: str, code: str, params: dict[str, Any], versions: dict[str, Any]) -> dict[str, Any]:
    """The key components of a precision step (FP16 conversion, INT8 quantization, accuracy gate): the
    input ONNX digest, the step's name and version, its code's hash, its parameters (for INT8 and the gate
    including every image's sha256) and the versions of the libraries doing the work."""
    return {"schema": KEY_SCHEMA, "onnx": onnx, "recipe": converter, "code": code, "params": params, "exporters": versions}


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return value if isinstance(value, str) else canonical_json(value)


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [field for field in sorted(set(old) | set(new)) if old.get(field) != new.get(field)]


def _field_reasons(old: dict[str, Any], new: dict[str, Any], label: Any, prefix: str = "") -> list[str]:
    """One reason per changed field; nested mappings are followed (``calibration.algorithm minmax -> entropy``)."""
    reasons = []
    for field in _changed(old, new):
        before, after = old.get(field), new.get(field)
        if isinstance(before, dict) and isinstance(after, dict):
            reasons += _field_reasons(before, after, label, f"{prefix}{field}.")
        else:
            reasons.append(f"{prefix}{label(field, new)} {_show(before)} -> {_show(after)}")
    return reasons


def _plain_label(field: str, _: dict[str, Any]) -> str:
    return field


def _env_label(field: str, env: dict[str, Any]) -> str:
    """``builder_version`` is shown as the flavour: ``tensorrt 10.3.0 -> 10.7.0``."""
    if field == "builder_version":
        return str(env.get("builder", "builder"))
    return field.replace("_", " ")


def _file_reasons(old: dict[str, Any], new: dict[str, Any], label: str) -> list[str]:
    reasons = []
    for name in _changed(old, new):
        state = "added" if name not in old else "removed" if new.get(name) is None else "changed"
        reasons.append(f"{label}{name} {state}")
    return reasons


#: Components compared as one hash: reason "<label> changed".
_HASHES = {"onnx": "onnx", "source": "source", "code": "code"}


def diff_reasons(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why the components ``old`` (from the lock) and ``new`` (now) give different keys.

    Returns:
        human-readable reasons, one per changed field, e.g. ``onnx changed``, ``precision fp16 -> fp32``,
        ``tensorrt 10.3.0 -> 10.7.0``, ``l4t 35.4.1 -> 36.4.3``, ``imgsz 640 -> 320``, ``torch 2.12.0 -> 2.13.0``.
    """
    reasons: list[str] = []
    for field in ("schema", "recipe", "recipe_version"):
        if old.get(field) != new.get(field):
            reasons.append(f"{field.replace('_', ' ')} {_show(old.get(field))} -> {_show(new.get(field))}")
    reasons += [f"{label} changed" for field, label in _HASHES.items() if old.get(field) != new.get(field)]
    old_settings, new_settings = old.get("settings") or {}, new.get("settings") or {}
    if old_settings.get("profiles") != new_settings.get("profiles"):
        reasons.append("optimization profiles changed")
    reasons += _field_reasons({k: v for k, v in old_settings.items() if k != "profiles"},
                              {k: v for k, v in new_settings.items() if k != "profiles"}, _plain_label)
    reasons += _field_reasons(old.get("params") or {}, new.get("params") or {}, _plain_label)
    reasons += _file_reasons(old.get("plugins") or {}, new.get("plugins") or {}, "plugin ")
    reasons += _file_reasons(old.get("discovered") or {}, new.get("discovered") or {}, "")
    reasons += _field_reasons(old.get("exporters") or {}, new.get("exporters") or {}, _plain_label)
    reasons += _field_reasons(old.get("env") or {}, new.get("env") or {}, _env_label)
    return reasons or ["key changed"]
