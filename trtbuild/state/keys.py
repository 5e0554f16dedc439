"""Staleness keys: what an engine depends on, hashed, and why two of them differ.

An engine's key is the sha256 of canonical JSON (sorted keys, no whitespace) of its components:

- ``onnx``: the ONNX content digest (external data included);
- ``settings``: the build settings that change the plan (not the output path or comments);
- ``plugins``: plugin library name -> sha256;
- ``env``: the environment fingerprint (builder flavour and version, CUDA, L4T, device, GPU, ...);
- ``schema``: this module's ``KEY_SCHEMA``, bumped whenever the meaning of a component changes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from trtbuild.manifest.loader import ModelTarget

KEY_SCHEMA = 1

#: Labels used in reasons for environment fields (``tensorrt 10.3.0 -> 10.7.0``).
_ENV_LABELS = {"builder_version": "builder version"}


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


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return value if isinstance(value, str) else canonical_json(value)


def _env_reason(field: str, old: Any, new: Any, env: dict[str, Any]) -> str:
    if field == "builder_version":
        return f"{env.get('builder', 'builder')} {_show(old)} -> {_show(new)}"
    return f"{_ENV_LABELS.get(field, field.replace('_', ' '))} {_show(old)} -> {_show(new)}"


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [field for field in sorted(set(old) | set(new)) if old.get(field) != new.get(field)]


def diff_reasons(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why the components ``old`` (from the lock) and ``new`` (now) give different keys.

    Returns:
        human-readable reasons, one per changed component field, e.g. ``onnx changed``,
        ``precision fp16 -> fp32``, ``tensorrt 10.3.0 -> 10.7.0``, ``l4t 35.4.1 -> 36.4.3``.
    """
    reasons: list[str] = []
    if old.get("schema") != new.get("schema"):
        reasons.append(f"key schema {_show(old.get('schema'))} -> {_show(new.get('schema'))}")
    if old.get("onnx") != new.get("onnx"):
        reasons.append("onnx changed")
    old_settings, new_settings = old.get("settings") or {}, new.get("settings") or {}
    for field in _changed(old_settings, new_settings):
        if field == "profiles":
            reasons.append("optimization profiles changed")
        else:
            reasons.append(f"{field} {_show(old_settings.get(field))} -> {_show(new_settings.get(field))}")
    old_plugins, new_plugins = old.get("plugins") or {}, new.get("plugins") or {}
    for plugin in _changed(old_plugins, new_plugins):
        state = "added" if plugin not in old_plugins else "removed" if plugin not in new_plugins else "changed"
        reasons.append(f"plugin {plugin} {state}")
    old_env, new_env = old.get("env") or {}, new.get("env") or {}
    for field in _changed(old_env, new_env):
        reasons.append(_env_reason(field, old_env.get(field), new_env.get(field), new_env))
    return reasons or ["key changed"]
