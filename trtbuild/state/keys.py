"""Staleness keys: a step's key is the sha256 of the canonical JSON (sorted keys, no whitespace) of its
components, the inputs it read. Each step kind declares its components (``trtbuild.steps``):

- engine: ``onnx`` (content digest, external data included), ``settings`` (what changes the plan, not the
  output path), ``plugins`` (library -> sha256), ``env`` (builder flavour and version, CUDA, L4T, device,
  GPU, ...);
- export: ``source``, ``recipe``, ``code``, ``recipe_version``, ``params``, ``exporters`` (library
  versions) and ``discovered`` (project file -> sha256 of every file the recipe read besides its declared
  inputs, recorded after the export like a compiler's depfile);
- fp16 / int8 / accuracy: ``onnx``, ``converter``, ``code``, ``params`` (images by sha256), ``versions``.

Every key holds ``schema``: ``KEY_SCHEMA``, bumped whenever the meaning of a component changes. Why two
keys differ is ``trtbuild.reasons.diff``.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: this module stays free of pydantic
    from trtbuild.manifest.target import ModelTarget

KEY_SCHEMA = 1


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def build_settings(target: ModelTarget) -> dict[str, Any]:
    """The settings of ``target`` that change the engine; cosmetic ones (output path) are left out."""
    spec = target.spec
    gate = {"gate": "skip"} if spec.gate == "skip" and spec.precision != "fp32" else {}  # absent: the old keys hold
    return {
        **gate,
        "precision": spec.precision,
        "workspace": int(spec.workspace),
        "builder_optimization_level": spec.builder_optimization_level,
        "dla_core": spec.dla_core,
        "compute_capabilities": spec.compute_capabilities,
        "fp16_via": spec.fp16_via,
        "profiles": profiles(target),
    }


def profiles(target: ModelTarget) -> list[dict[str, dict[str, list[int]]]]:
    """The optimization profiles of ``target`` as key data: ``[{input: {"min", "opt", "max"}}, ...]``."""
    return [
        {name: {"min": lo, "opt": opt, "max": hi} for name, (lo, opt, hi) in sorted(profile.items())}
        for profile in target.spec.profiles()
    ]


def key_of(components: dict[str, Any]) -> str:
    """The key: sha256 of the components' canonical JSON, hex."""
    return hashlib.sha256(canonical_json(components).encode()).hexdigest()
