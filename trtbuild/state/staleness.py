"""Is an engine fresh, and if not, why — as data.

An engine is fresh only when its file exists, its sha256 is the one the lock recorded, and the key of
its components now equals the lock's key. Cheap checks first: the engine's and the ONNX's hashes come
from the stat cache, so a no-op run reads neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtbuild.manifest.loader import ModelTarget
from trtbuild.state import keys
from trtbuild.state.lockfile import LockFile
from trtbuild.state.onnx_digest import onnx_digest
from trtbuild.state.statcache import StatCache


@dataclass
class Assessment:
    """The staleness of one engine.

    Attributes:
        components: the key components now (``None`` when the ONNX is missing).
        key: their key.
        reasons: why the engine must be built; empty when it is fresh.
    """

    components: dict[str, Any] | None
    key: str | None
    reasons: list[str] = field(default_factory=list)

    @property
    def fresh(self) -> bool:
        return not self.reasons


def plugin_digests(cache: StatCache, plugins: tuple[Path, ...], root: Path) -> dict[str, str]:
    """Plugin library (path relative to ``root``) -> sha256.

    Raises:
        FileNotFoundError: a plugin library is missing.
    """
    return {_relative(path, root): cache.sha256(path) for path in plugins}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def assess(target: ModelTarget, root: Path, cache: StatCache, lock: LockFile, env: dict[str, Any]) -> Assessment:
    """Compare ``target``'s engine and inputs now with what ``lock`` recorded.

    Reasons, in this order: ``onnx missing``, ``never built``, ``engine missing``, ``engine modified``,
    then one per changed key component (``keys.diff_reasons``).

    Raises:
        FileNotFoundError: a plugin library is missing.
        ManifestError: the ONNX is unreadable or its external data points outside its folder.
    """
    if not target.onnx.is_file():
        return Assessment(None, None, ["onnx missing"])
    components = keys.engine_components(
        onnx=onnx_digest(cache, target.onnx),
        settings=keys.build_settings(target),
        plugins=plugin_digests(cache, target.plugins, root),
        env=env,
    )
    key = keys.key_of(components)
    entry = lock.get(target.name)
    if entry is None:
        return Assessment(components, key, ["never built"])
    reasons = []
    if not target.engine.is_file():
        reasons.append("engine missing")
    elif cache.sha256(target.engine) != entry["engine"].get("sha256"):
        reasons.append("engine modified")
    if entry["key"] != key:
        reasons += keys.diff_reasons(entry["components"], components)
    return Assessment(components, key, reasons)
