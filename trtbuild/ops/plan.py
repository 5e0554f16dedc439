"""``trtbuild plan``: what is stale and why, per model, without building anything."""

from __future__ import annotations

import contextlib
from typing import Any

from trtbuild import reasons as why
from trtbuild.env.jetson import device_of
from trtbuild.graph.dag import build_graph, select, step_of, steps_of
from trtbuild.manifest.target import Project
from trtbuild.ops.preflight import preflight
from trtbuild.ops.project import RemoteOptions, check_names, device_context, open_remote, unreachable
from trtbuild.ops.summary import gate_notes
from trtbuild.reasons import INPUT_MISSING, Reason
from trtbuild.results import FRESH, STALE, ModelResult, RunSummary
from trtbuild.ssh.transport import DeviceError
from trtbuild.steps.context import Context
from trtbuild.steps.remote import Remote
from trtbuild.steps.remote_keys import lookup_key
from trtbuild.steps.step import Step, assess, never


def plan(project: Project, names: list[str] | None = None, remote: RemoteOptions | None = None) -> RunSummary:
    """What is stale and why, per model, in the words the run will use (a step whose input an earlier
    stale step will produce says what the run will say of it then: ``never built``, or nothing when it
    was built before). Each step is assessed once (``Context.assessments``), and each model's steps are
    sorted in its own subgraph: O(N) for N models.

    With a remote cache (``remote``, else the manifest's ``remote_cache``), each stale step whose key can be
    computed now says whether the run would pull it (``pull from STORE``) or build it (``build: not in
    STORE``); a step whose input is still to be made cannot know yet.

    Returns:
        the summary, with the fingerprint the keys were computed with (a builder device's, as probed; ``{}``
        when it did not answer, and every model then fails with the one line saying so).

    Raises:
        ManifestError: an unknown model name, or an unreadable ONNX.
    """
    names = names or list(project.models)
    check_names(project, names)
    with contextlib.ExitStack() as stack:
        try:
            ctx = stack.enter_context(device_context(project))
        except DeviceError as exc:
            return unreachable(project, names, str(exc))
        return RunSummary(_plan(project, names, ctx, remote), project.device or device_of(ctx.env), ctx.env)


def _plan(project: Project, names: list[str], ctx: Context, remote: RemoteOptions | None) -> dict[str, ModelResult]:
    graph = select(build_graph(project, ctx.env), names)
    preflight(graph, ctx)
    remote_cache = open_remote(project, remote, lambda message: None)
    results = {}
    stale: set[str] = set()
    for name in names:
        reasons: list[Reason] = []
        for node_id in steps_of(graph, name):  # the same steps, in the same order, that `trtbuild all` would run
            step = step_of(graph, node_id)
            own = assess(step, ctx).reasons
            if own and own[0].kind == INPUT_MISSING and stale & set(graph.predecessors(node_id)):
                own = never(step, ctx)
            if own:
                stale.add(node_id)
                if remote_cache is not None:
                    own = own + _would_pull(remote_cache, assess(step, ctx).components, step)
                if step.on_device and ctx.device is not None:
                    own = own + [Reason(why.DEVICE, step.kind, ctx.device.host, new=f"on {ctx.device.describe()}")]
            reasons += own
        target = project.models[name]
        results[name] = ModelResult(
            STALE if reasons else FRESH, reasons, project.relative(target.engine), notes=gate_notes(target)
        )
    ctx.stats.save()
    return results


def _would_pull(remote_cache: Remote, components: dict[str, Any] | None, step: Step) -> list[Reason]:
    """``pull from STORE`` or ``build: not in STORE`` for a stale step with ``components``; nothing when its
    key cannot be computed yet, or the store does not answer (``plan`` then says so once per step)."""
    if components is None:
        return []
    found = None if remote_cache.broken else remote_cache.lookup(lookup_key(components, step.tool)[0])
    if remote_cache.broken:
        return [Reason(why.REMOTE, step.kind, remote_cache.store.display, new=f"build: {remote_cache.broken}")]
    words = (
        f"pull from {remote_cache.store.display}"
        if found is not None
        else f"build: not in {remote_cache.store.display}"
    )
    return [Reason(why.REMOTE, step.kind, remote_cache.store.display, new=words)]
