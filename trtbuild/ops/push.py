"""``trtbuild push``: publish the steps that are fresh here to the remote cache."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from trtbuild.errors import ManifestError
from trtbuild.graph.dag import build_graph, select, step_of
from trtbuild.manifest.target import Project
from trtbuild.ops.project import RemoteOptions, check_names, device_context, open_remote
from trtbuild.steps.context import Context
from trtbuild.steps.remote import Remote
from trtbuild.steps.remote_keys import remote_key
from trtbuild.steps.step import assess


@dataclass
class PushResult:
    """Step ids by what ``push`` did with them.

    Attributes:
        pushed: pushed now.
        present: already in the remote cache under the same key.
        stale: not fresh here (never built, or changed since: build first).
    """

    pushed: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


def push(project: Project, names: list[str] | None, remote: RemoteOptions) -> PushResult:
    """Publish the keyed steps of ``names`` (all models when ``None``) that are fresh here to the remote cache.

    Raises:
        ManifestError: unknown names; no remote cache given (``--remote-cache`` or ``remote_cache``).
        CacheError: the remote cache failed.
        DeviceError: the project's builder device (``remote:``) did not answer: only it knows its facts.
    """
    names = names or list(project.models)
    check_names(project, names)
    remote_cache = open_remote(project, remote, lambda message: None)
    if remote_cache is None:
        raise ManifestError(
            f"{project.manifest.name}: no remote cache to push to: pass --remote-cache URL or set remote_cache"
        )
    remote_cache.required = True
    with device_context(project) as ctx:  # a builder device's engines are keyed with its facts
        return _push(project, names, ctx, remote_cache)


def _push(project: Project, names: list[str], ctx: Context, remote_cache: Remote) -> PushResult:
    """``push`` with the context and the remote cache open."""
    graph = select(build_graph(project, ctx.env), names)
    done = PushResult()
    for node_id in nx.lexicographical_topological_sort(graph):
        step = step_of(graph, node_id)
        if step.check is not None:  # sources are not cached: they are pinned
            continue
        assessment = assess(step, ctx)
        entry = ctx.lock.step(step.id)
        if not assessment.fresh or entry is None:
            done.stale.append(step.id)
        elif remote_cache.lookup(remote_key(entry["components"])) is not None:
            done.present.append(step.id)
        else:
            ctx.remote = remote_cache
            remote_cache.push_step(step, ctx, entry)
            done.pushed.append(step.id)
    ctx.stats.save()
    return done
