"""``trtbuild audit``: prove that every engine in the lock is exactly what its inputs say.

Per engine in the lock:

- the file is present and its sha256 and size are the lock's;
- the lock entry is intact: its key is the sha256 of its own components;
- the key still matches the current manifest and environment (drift reported per component, as
  ``trtbuild plan`` does);
- with ``--rebuild``: the engine is built again into a temporary folder from the *recorded* settings and
  the current ONNX (whose digest must be the recorded one) and compared: byte-identical, or else
  structurally (I/O, layer count, precision mix from the build-time network summary).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtbuild.builder.summary import differences
from trtbuild.errors import BuildError, ManifestError
from trtbuild.isolation import run_isolated
from trtbuild.manifest.target import ModelTarget, Project
from trtbuild.ops.project import device_context
from trtbuild.reasons import diff, texts
from trtbuild.state import keys
from trtbuild.state.onnx_digest import onnx_digest
from trtbuild.steps.choices import engine_onnx
from trtbuild.steps.context import Context
from trtbuild.steps.engine import engine_step


@dataclass
class AuditResult:
    """One engine's audit.

    Attributes:
        ok: nothing differs (a structurally identical rebuild with other bytes counts as ok, noted).
        findings: one line per check that failed, or per note.
        rebuild: ``byte-identical``, ``structurally identical``, ``differs``, ``not attempted`` or why not.
    """

    ok: bool = True
    findings: list[str] = field(default_factory=list)
    rebuild: str = "not attempted"

    def fail(self, finding: str) -> None:
        self.ok = False
        self.findings.append(finding)


def _check_file(project: Project, entry: dict[str, Any], ctx: Context, result: AuditResult) -> bool:
    """Check the engine file against the lock; ``False`` when there is no file to check.

    The lock's path is relative and stays inside the project (``LockFile`` refuses others); a path that
    leaves it through a symlink is a finding, and the file it points to is neither read nor recorded in
    the stat cache.
    """
    recorded = entry["outputs"][0]
    engine = project.root / recorded["path"]
    real_root = os.path.realpath(project.root)
    if os.path.commonpath([real_root, os.path.realpath(engine)]) != real_root:
        result.fail(f"engine {recorded['path']} resolves outside the project ({os.path.realpath(engine)}); not read")
        return False
    if not engine.is_file():
        result.fail(f"engine {recorded['path']} is missing")
        return False
    size, digest = engine.stat().st_size, ctx.stats.sha256(engine)
    if digest != recorded["sha256"]:
        result.fail(f"engine sha256 {digest} differs from the lock's {recorded['sha256']}")
    if size != recorded["size"]:
        result.fail(f"engine size {size} differs from the lock's {recorded['size']}")
    return True


def _check_key(target: ModelTarget | None, entry: dict[str, Any], ctx: Context, result: AuditResult) -> None:
    if keys.key_of(entry["components"]) != entry["key"]:
        result.fail("lock entry edited: its key is not the sha256 of its recorded components")
    if target is None:
        result.fail("the model is no longer in the manifest")
        return
    step = engine_step(target, ctx.project, ctx.env)
    if not all(path.is_file() for path in step.inputs):
        result.fail("its ONNX is missing, so its key cannot be checked")
        return
    assert step.components is not None
    now = step.components(ctx, entry)
    if keys.key_of(now) != entry["key"]:
        for reason in diff(entry["components"], now, "engine"):
            result.fail(f"drift: {reason.text()}")


def _rebuild(target: ModelTarget, entry: dict[str, Any], ctx: Context, result: AuditResult) -> None:
    recorded = entry["components"]
    if recorded["env"] != ctx.env:
        drift = "; ".join(texts(diff({"env": recorded["env"]}, {"env": ctx.env}, "engine")))
        result.rebuild = f"not attempted: this machine is not the one recorded ({drift})"
        return
    onnx = engine_onnx(target, ctx.env)
    if not onnx.is_file() or onnx_digest(ctx.stats, onnx) != recorded["onnx"]:
        result.fail(f"cannot rebuild: {ctx.project.relative(onnx)} is not the ONNX the engine was built from")
        result.rebuild = "not attempted: ONNX differs"
        return
    step = engine_step(target, ctx.project, ctx.env)  # a builder device's engine is rebuilt on the device
    assert step.request is not None
    with tempfile.TemporaryDirectory(prefix="trtbuild-audit-", dir=ctx.project.state_dir) as folder:
        try:
            with step.slot(ctx):
                produced = run_isolated(
                    step.request(ctx, recorded),
                    Path(folder) / f"{target.name}.engine",
                    ctx.project.log_dir / f"{target.name}.audit.log",
                    Path(folder),
                )
        except BuildError as exc:
            result.fail(f"rebuild failed: {exc}")
            result.rebuild = "failed"
            return
    if produced.sha256 == entry["outputs"][0]["sha256"]:
        result.rebuild = "byte-identical"
        return
    changes = differences(entry.get("facts", {}).get("network"), produced.result.get("network"))
    if changes:
        result.rebuild = "differs"
        for change in changes:
            result.fail(f"rebuild differs: {change}")
    else:
        result.rebuild = "structurally identical"
        result.findings.append("rebuilt bytes differ (tactic choices), I/O, layers and precisions are identical")


def audit(project: Project, rebuild: bool, progress: Callable[[str], None] | None = None) -> dict[str, AuditResult]:
    """Audit every engine in the lock of ``project`` (see the module docstring), on its builder device
    when it has one, hashing every file again (the stat cache is not trusted).

    Args:
        progress: called with a line before and after each rebuild (``rebuilding m0 (engines/m0.engine)``,
            ``rebuilt m0: byte-identical in 3.1s``).

    Raises:
        ManifestError: the lock records no engine at all.
        DeviceError: the builder device did not answer.
    """
    with device_context(project, trust_stat_cache=False) as ctx:
        results = _audit(project, ctx, rebuild, progress)
        ctx.stats.save()
    return results


def _audit(
    project: Project, ctx: Context, rebuild: bool, progress: Callable[[str], None] | None
) -> dict[str, AuditResult]:
    engines = {entry["model"]: entry for entry in ctx.lock.steps.values() if entry["kind"] == "engine"}
    if not engines:
        raise ManifestError(f"{project.relative(project.lock_path)}: no engine recorded; nothing to audit")
    results = {}
    for name, entry in sorted(engines.items()):
        result = AuditResult()
        target = project.models.get(name)
        present = _check_file(project, entry, ctx, result)
        _check_key(target, entry, ctx, result)
        if rebuild and present and target is not None:
            started = time.monotonic()
            if progress:
                progress(f"rebuilding {name} ({entry['outputs'][0]['path']})")
            _rebuild(target, entry, ctx, result)
            if progress:
                progress(f"rebuilt {name}: {result.rebuild} in {time.monotonic() - started:.1f}s")
        results[name] = result
    return results
