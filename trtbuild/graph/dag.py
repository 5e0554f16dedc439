"""The build graph: a networkx DiGraph with one node per artefact and an edge producer -> consumer.

An artefact produced by a node (an engine, later an exported ONNX) is that node; a path nobody produces
is a source file node. Cycles are rejected with their path, as DVC's ``repo/graph.py`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import networkx as nx

from trtbuild.errors import ManifestError
from trtbuild.graph.nodes import EngineBuild, Node, nodes_for
from trtbuild.manifest.loader import Project


def build_graph(project: Project) -> nx.DiGraph:
    """The graph of every model in ``project``. Node attribute ``node`` holds the ``Node`` object.

    Raises:
        ManifestError: the graph has a cycle (``engine:a -> engine:b -> engine:a``).
    """
    nodes: list[Node] = []
    for target in project.models.values():
        nodes.extend(nodes_for(target, project))
    producers: dict[Path, Node] = {}
    for node in nodes:  # a path some node builds is that node, not a source file
        if not isinstance(producers.get(node.produces), EngineBuild):
            producers[node.produces] = node
    graph = nx.DiGraph()
    for node in producers.values():
        graph.add_node(node.id, node=node)
    for node in producers.values():
        for path in node.consumes:
            graph.add_edge(producers[path].id, node.id)
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


def engine_node_id(graph: nx.DiGraph, model: str) -> str:
    """The id of ``model``'s engine node."""
    for node_id, data in graph.nodes(data=True):
        if isinstance(data["node"], EngineBuild) and data["node"].model == model:
            return node_id
    raise KeyError(model)


def select(graph: nx.DiGraph, models: Iterable[str]) -> nx.DiGraph:
    """The subgraph that builds ``models``' engines: their engine nodes and everything upstream."""
    wanted: set[str] = set()
    for model in models:
        node_id = engine_node_id(graph, model)
        wanted |= nx.ancestors(graph, node_id) | {node_id}
    return graph.subgraph(wanted).copy()
