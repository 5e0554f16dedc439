"""One build step, declared: what it reads, what it produces, how its key is made and which child does the work.

Every keyed step (export, fp16, int8, accuracy, engine) is a ``Step`` and goes through the same two
functions:

- ``assess``: fresh only when every output exists with the sha256 the lock recorded and the key of the
  step's components now equals the lock's key; otherwise the reasons, as data (``trtbuild.reasons``).
  Cheap checks first: hashes come from the stat cache, so a no-op run reads no file.
- ``run``: assess; when stale, run the step's child module in its own process (``isolation``), which
  writes a partial file renamed over the output only on success; then record the step in the lock.

Source steps (a local file, a PyPI member) are not keyed: they declare a ``check`` and an ``act`` instead.
The kind factories (``steps.source``, ``steps.export``, ``steps.precision``, ``steps.engine``) fill in
the fields; nothing else about a step is written twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtbuild import reasons as why
from trtbuild.child_requests import ChildRequest
from trtbuild.clock import utc_now
from trtbuild.isolation import Produced, run_isolated
from trtbuild.reasons import Reason
from trtbuild.state.keys import key_of
from trtbuild.steps import remote_keys
from trtbuild.steps.context import BUILT, FAILED, FRESH, Assessment, Context, Outcome

#: ``components(ctx, recorded entry or None) -> components``
Components = Callable[[Context, "dict[str, Any] | None"], "dict[str, Any]"]


@dataclass
class Step:
    """A build step of one model.

    Attributes:
        id: ``kind:output path`` relative to the project (``engine:engines/m.engine``): the graph node and
            the lock entry.
        kind: ``source``, ``fetch``, ``export``, ``fp16``, ``int8``, ``accuracy`` or ``engine``.
        model: the model it belongs to (for a shared export, the first model that declares it).
        output: the file it produces.
        consumes: the artefacts it reads that other steps may produce (the graph's edges).
        inputs: the files that must exist before it can be assessed (``onnx missing`` otherwise), with
            the word for them (``onnx``, ``source``).
        components: its key components now, given the lock's entry (exports re-hash the files they
            discovered last time).
        request: the child's request (``child_requests``; its type names the child module), given the
            components.
        log: the log file's suffix (``.export``: ``.trtbuild/logs/<model>.export.log``; ``""`` for engines).
        output_label: how reasons name the output (``engine``; default: the file's name).
        precheck: before the child runs: a reason to fail without running it, or ``None``.
        verify: called on the produced file before it is renamed into place; raises to refuse it.
        accept: after the child: an outcome that replaces recording the step (the accuracy gate's
            breach), or ``None``.
        complete: after the child: the components to record (an export adds the files it discovered).
        facts: after the child: what to keep in the lock besides the outputs (the engine's builder and
            network summary).
        tool: the component holding the versions of the libraries that do the work (``exporters``,
            ``versions``): a machine without them can still pull the step (``steps.remote_keys.toolless``).
        check: for source steps, the reasons it is not there (instead of a key).
        act: for source steps, the work (instead of a child).
        on_device: its child works on the run's builder device (``Context.device``), one such step at a
            time per device.
    """

    id: str
    kind: str
    model: str
    output: Path
    consumes: tuple[Path, ...] = ()
    inputs: tuple[Path, ...] = ()
    input_label: str = "onnx"
    components: Components | None = None
    request: Callable[[Context, dict[str, Any]], ChildRequest] | None = None
    log: str = ""
    output_label: str = ""
    precheck: Callable[[Context], Reason | None] | None = None
    verify: Callable[[Path], None] | None = None
    accept: Callable[[Context, Produced], Outcome | None] | None = None
    complete: Callable[[Context, dict[str, Any], Produced], dict[str, Any]] | None = None
    facts: Callable[[Produced], dict[str, Any]] | None = None
    tool: str = ""
    check: Callable[[Context], list[Reason]] | None = None
    act: Callable[[Context], Outcome] | None = None
    on_device: bool = False

    def log_path(self, ctx: Context) -> Path:
        """``<log_dir>/<model><log>.log`` (``Project.log_dir``)."""
        return ctx.project.log_dir / f"{self.model}{self.log}.log"

    def slot(self, ctx: Context) -> contextlib.AbstractContextManager[Any]:
        """What to hold while the child works: the builder device's slot for a step that works on it (one
        at a time per device), else nothing."""
        return ctx.device.slot if self.on_device and ctx.device is not None else contextlib.nullcontext()


def assess(step: Step, ctx: Context) -> Assessment:
    """Compare ``step``'s outputs and inputs now with what the lock recorded (memoized per run in
    ``ctx.assessments``).

    Reasons, in this order: ``<input> missing``; ``never <verb>``; ``<output> missing`` or ``modified``;
    one per changed key component (``reasons.diff``).

    Raises:
        FileNotFoundError: a plugin library is missing.
        ManifestError: an ONNX is unreadable or its external data points outside its folder; an image
            sample matches no file.
    """
    known = ctx.assessments.get(step.id)
    if known is None:
        known = ctx.assessments[step.id] = _assess(step, ctx)
    return known


def _assess(step: Step, ctx: Context) -> Assessment:
    if step.check is not None:
        return Assessment(None, None, step.check(ctx))
    assert step.components is not None
    if any(not path.is_file() for path in step.inputs):
        return Assessment(None, None, [Reason(why.INPUT_MISSING, step.kind, step.input_label)])
    entry = ctx.lock.step(step.id)
    components = step.components(ctx, entry)
    key = key_of(components)
    if entry is None:
        return Assessment(components, key, [Reason(why.NEVER, step.kind)])
    found: list[Reason] = []
    label = step.output_label or step.output.name
    recorded = entry["outputs"][0]
    if not step.output.is_file():
        found.append(Reason(why.OUTPUT_MISSING, step.kind, label))
    elif ctx.stats.sha256(step.output) != recorded.get("sha256"):
        found.append(Reason(why.OUTPUT_MODIFIED, step.kind, label, recorded.get("sha256")))
    if entry["key"] != key and entry.get("origin") and step.tool:
        seen = remote_keys.observed(components, entry["components"], step.tool)
        if seen is not None and key_of(seen) == entry["key"]:
            components, key = seen, entry["key"]
    if entry["key"] != key:
        found += why.diff(entry["components"], components, step.kind)
    return Assessment(components, key, found)


def never(step: Step, ctx: Context) -> list[Reason]:
    """What the run will say of ``step`` when an earlier step is about to produce its input: ``never ...``
    when the lock has no record of it, else nothing yet (the run names the change once the input exists)."""
    if step.check is not None or ctx.lock.step(step.id) is not None:
        return []
    return [Reason(why.NEVER, step.kind)]


def run(step: Step, ctx: Context) -> Outcome:
    """Run ``step`` if it is stale (see the module docstring).

    Returns:
        ``fresh``; ``built`` with the assessment's reasons; ``failed`` with the reason (an input missing,
        a pre-check, the accuracy gate's verdict).

    Raises:
        BuildError: the child failed or died (``log_tail`` carries its log's error lines); the runner
            fails the step with it. The old output is untouched.
        WriteError: the lock could not be written.
    """
    if step.act is not None:
        done = step.act(ctx)
        if done.status == BUILT:
            ctx.assessments.clear()
        return done
    assessment = assess(step, ctx)
    if assessment.fresh:
        return Outcome(FRESH)
    if assessment.components is None:
        return Outcome(FAILED, assessment.reasons)
    if ctx.remote is not None:
        pulled = ctx.remote.pull_step(step, ctx, assessment)
        if pulled is not None:
            return pulled
    refusal = step.precheck(ctx) if step.precheck is not None else None
    if refusal is not None:
        return Outcome(FAILED, [refusal])
    assert step.request is not None
    started = time.monotonic()
    with step.slot(ctx):
        produced = run_isolated(
            step.request(ctx, assessment.components),
            step.output,
            step.log_path(ctx),
            ctx.project.state_dir / "tmp",
            verify=step.verify,
        )
    ctx.assessments.clear()  # a new file: any verdict downstream may change
    seconds = time.monotonic() - started
    outcome = step.accept(ctx, produced) if step.accept is not None else None
    if outcome is not None:
        outcome.seconds = seconds
        return outcome
    components = step.complete(ctx, assessment.components, produced) if step.complete else assessment.components
    entry = record(step, ctx, components, produced)
    if ctx.remote is not None and ctx.remote.push:
        ctx.remote.push_step(step, ctx, entry)
    return Outcome(BUILT, assessment.reasons, seconds)


def record(step: Step, ctx: Context, components: dict[str, Any], produced: Produced) -> dict[str, Any]:
    """Record what ``step`` produced in the lock (schema 2, ``state.lockfile``) and write the lock, one
    thread at a time. Returns the entry."""
    entry = {
        "kind": step.kind,
        "model": step.model,
        "key": key_of(components),
        "components": components,
        "outputs": [{"path": ctx.project.relative(step.output), "sha256": produced.sha256, "size": produced.size}],
        "seconds": round(float(produced.result.get("seconds", 0.0)), 3),
        "when": utc_now(),
        "facts": step.facts(produced) if step.facts is not None else {},
    }
    ctx.save_entry(step.id, entry)
    return entry
