"""The keys of the remote cache, pure functions of a step's components: the declared key a step is stored
and looked up under (``remote_key``, ``lookup_key``), what a machine without the step's tool sees
(``toolless``, ``observed``) and what a pulled record must satisfy (``intact``, ``discovered_problem``).
``steps.remote`` explains the rules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtbuild.state.keys import key_of

if TYPE_CHECKING:
    from trtbuild.state.statcache import StatCache


#: The environment fields a TensorRT-RTX ahead-of-time engine depends on when its targets are explicit.
AOT_ENV = ("builder", "builder_version", "cuda")


def remote_key(components: dict[str, Any], without: str = "") -> str:
    """The key a step is stored under: its components' key without ``discovered`` (see the module docstring).

    A TensorRT-RTX engine built ahead of time for explicit ``compute_capabilities`` does not depend on the
    machine that built it (TensorRT-RTX "CPU-only AOT" builds: the plan is made for the targets, not the
    host): its environment counts only as the builder, its version and its CUDA major (``AOT_ENV``), so a
    CPU-only CI machine builds for a fleet of RTX machines and they pull. Every other engine keeps the
    whole environment fingerprint: it belongs to the exact device model and software stack.

    ``without``: a component left out as well: the tool versions, for the key a device without the tool
    looks up (``lookup_key``).
    """
    declared = {name: value for name, value in components.items() if name not in ("discovered", without)}
    env, settings = declared.get("env"), declared.get("settings")
    if (
        isinstance(env, dict)
        and env.get("builder") == "tensorrt-rtx"
        and isinstance(settings, dict)
        and settings.get("compute_capabilities")
    ):
        declared["env"] = {name: env.get(name) for name in AOT_ENV}
    return key_of(declared)


def toolless(components: dict[str, Any], tool: str) -> bool:
    """Whether this machine lacks the tool a step runs (an exporter, ModelOpt, ONNX Runtime): one of the
    library versions in its ``tool`` component is ``None``. Such a step cannot run here; the fleet's
    builder ran it. (A Jetson that builds engines only has no torch, no Ultralytics, no ModelOpt.)"""
    versions = components.get(tool) if tool else None
    return isinstance(versions, dict) and any(version is None for version in versions.values())


def lookup_key(components: dict[str, Any], tool: str) -> tuple[str, str]:
    """(the key to look ``components`` up under, the component it leaves out): the declared key, or, on a
    machine without the step's tool, the key without the tool versions — every entry is pushed under both,
    so a device that cannot run the tool finds what the builder made with it."""
    if toolless(components, tool):
        return remote_key(components, without=tool), tool
    return remote_key(components), ""


def observed(local: dict[str, Any], recorded: dict[str, Any], tool: str) -> dict[str, Any] | None:
    """``local`` components with the tool versions the lock recorded, when this machine cannot observe them
    (``None``) and agrees on every one it can; else ``None``. A step pulled onto a machine without its tool
    stays fresh there: what it could check still holds, and the rest is the builder's record."""
    mine, theirs = local.get(tool), recorded.get(tool)
    if not (tool and toolless(local, tool) and isinstance(mine, dict) and isinstance(theirs, dict)):
        return None
    if set(mine) != set(theirs) or any(
        version is not None and theirs[name] != version for name, version in mine.items()
    ):
        return None
    return {**local, tool: theirs}


def intact(record: Any, declared: str, kind: str, digest: str, without: str = "") -> str | None:
    """What is wrong with a pulled step record, or ``None``: it must be a lock entry of step ``kind``
    whose key is the sha256 of its own components, whose declared key (``without`` a component: see
    ``lookup_key``) is ``declared`` and whose one output has the sha256 of the layer pulled (``digest``,
    hex)."""
    if not isinstance(record, dict) or not isinstance(record.get("components"), dict):
        return "its record is not a lock entry"
    if record.get("kind") != kind:
        return f"its record is a {record.get('kind')!r} step, not {kind!r}"
    if record.get("key") != key_of(record["components"]) or remote_key(record["components"], without) != declared:
        return "its record's key is not the sha256 of its components"
    outputs = record.get("outputs")
    if not (isinstance(outputs, list) and len(outputs) == 1 and isinstance(outputs[0], dict)):
        return "its record does not list one output"
    if outputs[0].get("sha256") != digest:
        return "its record's output is not the file stored with it"
    return None


def discovered_problem(cache: StatCache, root: Path, components: dict[str, Any]) -> str | None:
    """Whether the files an export discovered (recorded by the device that built it) have the same sha256
    under ``root`` here; ``None`` when they do (or there are none)."""
    recorded = components.get("discovered")
    if not recorded:
        return None
    here = cache.project_digests(root, sorted(recorded))
    changed = sorted(name for name in recorded if here.get(name) != recorded[name])
    return f"{', '.join(changed)} differ here from the build that was stored" if changed else None
