"""The ONNX contract of the precision steps: what goes into a converter, and what may come out.

In: ``normalize`` rewrites two things real exports carry that the converters mishandle:

- initializers listed among the graph inputs (IR version 3 required it; older exporters and the
  ``onnx`` wheel's ``backend/test/data/light`` models do it). ONNX treats such an initializer as a
  default that a caller may override (ONNX IR spec, "Graphs": names in both lists), so onnxconverter-
  common keeps the input FP32 while converting the initializer to FP16 ("Tensor element type mismatch.
  10 != 1") and ONNX Runtime's quantizer sees no constant weights. They are removed from the inputs,
  which makes them constants, and the IR version is raised to 4, the first that allows initializers
  outside the inputs.
- nodes without a name or sharing one. onnxconverter-common names its casts after the node they feed
  (``<input>_cast_to_<node name>``), so two unnamed consumers of one input give two casts writing the
  same tensor ("'0_cast_to_' has been used as output names multiple times"). Every node gets a unique
  name (``<op type>_<index>``, kept when already unique).

Out: ``check_produced`` refuses a produced ONNX unless ``onnx.checker.check_model(full_check=True)``
(structure plus strict type and shape inference) passes and ONNX Runtime's CPU provider loads it, so
nothing invalid reaches the builder or the accuracy gate. A source that already fails the full check
(its own defect, e.g. a stale ``value_info`` shape) holds its outputs to the checks it passes itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from trtbuild.errors import BuildError

#: The first IR version that allows an initializer that is not also a graph input.
IR_CONSTANT_INITIALIZERS = 4
#: The longest error text kept in a one-line BuildError message.
MESSAGE_LIMIT = 400


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` on one line (line breaks become ``; ``, runs of spaces one space), cut to ``limit`` chars.

    A child's BuildError is reported through its last log line, so a message must not span lines.
    """
    flat = "; ".join(part.strip() for part in str(text).splitlines() if part.strip())
    flat = re.sub(r"\s+", " ", flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _graphs(graph: Any) -> list[Any]:
    """``graph`` and every subgraph (If/Loop/Scan bodies) under it, outermost first."""
    found = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                found.extend(_graphs(attribute.g))
            for sub in attribute.graphs:
                found.extend(_graphs(sub))
    return found


def constant_initializers(model: Any) -> int:
    """Remove every initializer from the main graph's inputs, so it is a constant; returns how many.

    Raises the IR version to 4 when any was removed (IR 3 requires each initializer to be an input).
    Callers feed only the remaining inputs; a model that relied on overriding an initializer at run
    time loses that (TensorRT's ONNX parser already treats such inputs as weights).
    """
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer} | {
        sparse.values.name for sparse in graph.sparse_initializer
    }
    kept = [value for value in graph.input if value.name not in initializers]
    removed = len(graph.input) - len(kept)
    if removed:
        del graph.input[:]
        graph.input.extend(kept)
        model.ir_version = max(model.ir_version, IR_CONSTANT_INITIALIZERS)
    return removed


def unique_node_names(model: Any) -> int:
    """Give every node of the model (subgraphs included) a unique, non-empty name; returns how many changed.

    A name that is empty or already used by an earlier node becomes ``<op type>_<index>`` (with a
    numeric suffix if even that is taken); unique names are kept.
    """
    nodes = [node for graph in _graphs(model.graph) for node in graph.node]
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.name] = counts.get(node.name, 0) + 1
    taken = set(counts)
    seen: set[str] = set()
    renamed = 0
    for index, node in enumerate(nodes):
        if node.name and counts[node.name] == 1:
            continue
        if node.name and node.name not in seen:  # the first holder of a duplicate name keeps it
            seen.add(node.name)
            continue
        candidate, suffix = f"{node.op_type}_{index}", 0
        while candidate in taken:
            suffix += 1
            candidate = f"{node.op_type}_{index}_{suffix}"
        taken.add(candidate)
        node.name = candidate
        renamed += 1
    return renamed


def normalize(model: Any) -> list[str]:
    """Make ``model`` (an ``onnx.ModelProto``, changed in place) safe to convert; returns what was done.

    Initializers leave the graph inputs (IR version raised to 4 where needed) and every node gets a
    unique name (see the module's docstring for the converter failures each prevents). The model's
    computation is unchanged.
    """
    done = []
    removed = constant_initializers(model)
    if removed:
        done.append(f"{removed} initializers removed from the graph inputs (IR version {model.ir_version})")
    renamed = unique_node_names(model)
    if renamed:
        done.append(f"{renamed} unnamed or duplicate-named nodes renamed")
    return done


def _checker_error(path: Path, full_check: bool) -> str | None:
    """The first error of ``onnx.checker.check_model(path, full_check=...)`` on one line, ``None`` when it passes."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=full_check)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        return one_line(str(exc))
    return None


def check_produced(path: Path, step: str, source: Path | None = None) -> str:
    """Refuse the ONNX at ``path`` that ``step`` (e.g. ``"FP16 conversion"``) produced unless it is valid;
    returns what was checked, for the step's log.

    Valid: ``onnx.checker.check_model(path, full_check=True)`` passes (by path, so external data and
    models over 2 GiB work; ``full_check`` adds ONNX's strict type and shape inference, which catches
    e.g. an FP32 tensor where a node's type constraint needs FP16), and ``onnxruntime.InferenceSession``
    with the CPUExecutionProvider loads it (ONNX Runtime resolves every node against its kernels).

    A produced model is held to its ``source``'s own state, not refused for the source's defect: when
    ``source`` (the ONNX the step read) is given and itself fails the full check (e.g. a ``value_info``
    shape that contradicts inference, which ONNX Runtime and TensorRT ignore), the produced model must
    pass the checks the source passes: ``check_model`` without ``full_check`` (structure) when the source
    passes that, and ONNX Runtime loading always: a produced ONNX ONNX Runtime cannot load is never
    published (when the source does not load either, an op ONNX Runtime has no kernel for, e.g.
    FlexAttention or a plugin op, the message says so). The returned text names the source's error.

    Raises:
        BuildError: a one-line message naming the step, the check that failed and its first error.
    """
    source_error = _checker_error(source, full_check=True) if source is not None else None
    structural = True
    if source_error is None:
        error = _checker_error(path, full_check=True)
        if error is not None:
            raise BuildError(f"{step} produced an invalid ONNX (onnx.checker, full check): {error}")
    else:
        assert source is not None
        structural = _checker_error(source, full_check=False) is None
        if structural:
            error = _checker_error(path, full_check=False)
            if error is not None:
                raise BuildError(f"{step} produced an invalid ONNX (onnx.checker): {error}")
    error = _runtime_error(path)
    if error is not None:
        source_runtime = _runtime_error(source) if source is not None else None
        either = (
            f"; the source does not load either ({source_runtime}): ONNX Runtime has no kernel for one of its ops, "
            "so nothing made from it can be checked or judged; build it in fp32"
            if source_runtime
            else ""
        )
        raise BuildError(f"{step} produced an ONNX that ONNX Runtime cannot load: {error}{either}")
    if source_error is None:
        return "passes onnx.checker (full) and loads in ONNX Runtime"
    return (
        f"the source fails onnx.checker's full check ({source_error}), so the output is held to what the "
        f"source passes: {'onnx.checker (structure) and ' if structural else ''}loading in ONNX Runtime; it passes"
    )


def _runtime_error(path: Path) -> str | None:
    """Why ONNX Runtime's CPU provider cannot load the ONNX at ``path``, in one line, or ``None``."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception classes (Fail, InvalidGraph, ...)
        return one_line(str(exc))
    return None
