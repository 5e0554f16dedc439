"""Canonical ONNX bytes: the same inputs always give the same file, so no engine is rebuilt for nothing.

Exporters add volatile details — Ultralytics writes the export date into ``metadata_props``, tflite2onnx
emits initializers and ``value_info`` in a different order run to run. Sorting those lists by name and
dropping volatile metadata removes the differences without changing the graph's meaning (ONNX IR:
initializers and value_info are unordered by definition; nodes keep their topological order).
"""

from __future__ import annotations

from typing import Any

#: ``metadata_props`` keys that change on every export without changing the model.
VOLATILE_METADATA = frozenset({"date", "export_date", "timestamp", "created", "creation_date"})


def _sort_by_name(repeated: Any) -> None:
    items = sorted(repeated, key=lambda item: item.name)
    copies = [type(item)() for item in items]
    for copy, item in zip(copies, items):
        copy.CopyFrom(item)
    del repeated[:]
    repeated.extend(copies)


def canonicalize(model: Any) -> Any:
    """Sort ``model``'s initializers and value_info by name and drop volatile metadata, in place.

    Args:
        model: an ``onnx.ModelProto``.

    Returns:
        the same model.
    """
    graph = model.graph
    _sort_by_name(graph.initializer)
    _sort_by_name(graph.value_info)
    kept = [(prop.key, prop.value) for prop in model.metadata_props if prop.key not in VOLATILE_METADATA]
    del model.metadata_props[:]
    for key, value in sorted(kept):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model
