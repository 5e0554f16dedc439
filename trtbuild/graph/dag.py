"""The build graph: a networkx DiGraph with one node per artefact and an edge producer -> consumer.

Nodes are ``steps.step.Step`` objects (node attribute ``step``), one per produced file: precision variants
of one network share their export, since its step id (``export:exports/m.onnx``) is the same. A path no
step produces is a source step. Cycles are rejected with their path, as DVC's ``repo/graph.py`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import networkx as nx

from trtbuild.errors import ManifestError
from trtbuild.manifest.target import Project
from trtbuild.steps.model import model_steps
from trtbuild.steps.step import Step


def build_graph(project: Project, env: dict[str, Any]) -> nx.DiGraph:
    """The graph of every model in ``project`` for the builder described by ``env``.

    Raises:
        ManifestError: the graph has a cycle (``engine:a -> engine:b -> engine:a``).
    """
    producers: dict[Path, Step] = {}
    for target in project.models.values():
        for step in model_steps(target, project, env):  # a path some step builds is that step, not a source
            if step.output not in producers or producers[step.output].kind == "source":
                producers[step.output] = step
    graph = nx.DiGraph()
    engines: dict[str, str] = {}
    for step in producers.values():
        assert step.id not in graph, f"two artefacts share the step id {step.id}"
        graph.add_node(step.id, step=step)
        if step.kind == "engine":
            engines[step.model] = step.id
    for step in producers.values():
        for path in step.consumes:
            graph.add_edge(producers[path].id, step.id)
    graph.graph["engine_ids"] = engines
    _reject_cycles(graph, project)
    return graph


def _reject_cycles(graph: nx.DiGraph, project: Project) -> None:
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    members = [edge[0] for edge in cycle]
    start = members.index(min(members))  # report the same rotation every time
    members = members[start:] + members[:start]
    raise ManifestError(f"{project.manifest.name}: dependency cycle: {' -> '.join(members + members[:1])}")


def step_of(graph: nx.DiGraph, node_id: str) -> Step:
    """The step of node ``node_id``."""
    step: Step = graph.nodes[node_id]["step"]
    return step


def engine_node_id(graph: nx.DiGraph, model: str) -> str:
    """The id of ``model``'s engine step (a table built with the graph: asking for every model is O(N)).

    Raises:
        KeyError: ``model`` has no engine step in ``graph``.
    """
    node_id: str = graph.graph["engine_ids"][model]
    if node_id not in graph:
        raise KeyError(model)
    return node_id


def select(graph: nx.DiGraph, models: Iterable[str]) -> nx.DiGraph:
    """The subgraph that builds ``models``' engines: their engine steps and everything upstream."""
    wanted: set[str] = set()
    for model in models:
        node_id = engine_node_id(graph, model)
        wanted |= nx.ancestors(graph, node_id) | {node_id}
    selected = graph.subgraph(wanted).copy()
    selected.graph["engine_ids"] = {
        model: node_id for model, node_id in graph.graph["engine_ids"].items() if node_id in wanted
    }
    return selected


def steps_of(graph: nx.DiGraph, model: str) -> list[str]:
    """The steps a model's engine needs, in run order, the engine last.

    Sorts only the model's own subgraph (its engine's ancestors), so asking for every model of an
    N-model project costs O(N), not one topological sort of the whole graph per model (O(N^2)).
    """
    engine_id = engine_node_id(graph, model)
    needed = graph.subgraph(nx.ancestors(graph, engine_id) | {engine_id})
    return list(nx.lexicographical_topological_sort(needed))
