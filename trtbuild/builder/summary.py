"""What an engine is made of, as plain data: I/O tensors, layer count, precision mix.

Taken from the TensorRT network when the engine is built (always possible, even for a TensorRT-RTX
ahead-of-time build on a machine without a GPU), and from TensorRT's engine inspector
(``ICudaEngine.create_engine_inspector``) where the engine can be deserialized. Stored in the lock, it is
what ``trtbuild inspect`` shows and what ``trtbuild audit --rebuild`` compares structurally.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def _dtype(value: Any) -> str:
    return str(value).rsplit(".", 1)[-1]


def _tensor(tensor: Any) -> dict[str, Any]:
    return {"name": tensor.name, "dtype": _dtype(tensor.dtype), "shape": list(tensor.shape)}


def network_summary(network: Any) -> dict[str, Any]:
    """``{"inputs": [...], "outputs": [...], "layers": N, "precisions": {"HALF": n, ...}}`` of an
    ``INetworkDefinition``; a layer's precision is the type of its first output."""
    precisions: Counter[str] = Counter()
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.num_outputs:
            precisions[_dtype(layer.get_output(0).dtype)] += 1
    return {
        "inputs": [_tensor(network.get_input(i)) for i in range(network.num_inputs)],
        "outputs": [_tensor(network.get_output(i)) for i in range(network.num_outputs)],
        "layers": network.num_layers,
        "precisions": dict(sorted(precisions.items())),
    }


def differences(recorded: dict[str, Any] | None, rebuilt: dict[str, Any] | None) -> list[str]:
    """Structural differences between two summaries, one line each; empty when they agree."""
    if not recorded or not rebuilt:
        return ["no network summary to compare"]
    found = []
    for field in ("inputs", "outputs", "layers", "precisions"):
        if recorded.get(field) != rebuilt.get(field):
            found.append(f"{field}: {recorded.get(field)} -> {rebuilt.get(field)}")
    return found
