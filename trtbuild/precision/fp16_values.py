"""What FP16 does to a model's constants: which ones it cannot hold, and what a conversion did to each.

A converter that stores an FP32 constant as FP16 may change its value far beyond rounding:
onnxconverter-common clamps every initializer and ``Constant`` to ``[-max_finite_val, max_finite_val]``
(default 1e4) and raises magnitudes below ``min_positive_val`` (default 1e-7) to it
(``onnxconverter_common.float16.convert_np_to_float16``), and IEEE 754 binary16 itself turns magnitudes
above 65504 into inf and keeps no more than ``2**-24`` absolute resolution below ``2**-14``. A weight of
30000 stored as 10000 scales an output by 1/3, and a cosine, blind to scale, reads that as a perfect match.

The rule here: **FP16 holds a tensor** when every stored value is within ``2**-11`` of the tensor's own
peak magnitude of the original value (half an FP16 ulp at the peak: what round-to-nearest costs a tensor
whose values lie in FP16's normal range) and no finite value became inf. A tensor of ordinary weights
passes whatever its tiny entries do; a tensor that needs magnitudes beyond 65504, or whose whole scale
lies in FP16's subnormal range, or that the converter clamped, does not.

``unheld`` finds such constants before a conversion, so their nodes are kept in FP32
(``fp16.convert``: onnxconverter-common's ``node_block_list``); ``changes`` compares every FP16 constant a
conversion produced with the FP32 value it came from, so nothing is changed silently, whichever
converter ran (onnxconverter-common or ModelOpt AutoCast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FLOAT, FLOAT16 = 1, 10
#: Relative to a tensor's peak magnitude, the largest change FP16 storage may make: half an FP16 ulp.
HALF_ULP = 2.0**-11
#: The converter's clamping limits as trtbuild sets them: the largest finite FP16 value, and the smallest
#: positive subnormal (IEEE 754 binary16), so clamping costs no more than FP16 rounding itself.
MAX_FINITE = 65504.0
MIN_POSITIVE = 2.0**-24


@dataclass(frozen=True)
class Change:
    """A constant whose FP16 value is not its FP32 value up to rounding.

    Attributes:
        tensor: the initializer's or ``Constant`` output's name in the source model.
        node: the name of a node that reads it (the first one), or produces it (``Constant``).
        peak: the original's largest finite magnitude.
        worst: the original value that changed most.
        stored: what that value became (``inf`` for an overflow).
    """

    tensor: str
    node: str
    peak: float
    worst: float
    stored: float

    def describe(self) -> str:
        """One line: ``tensor 'w' (node 'mul'): 30000 becomes 10000 in FP16 (peak 30000)``."""
        return (
            f"tensor {self.tensor!r} (node {self.node!r}): {self.worst:.6g} becomes {self.stored:.6g} in FP16 "
            f"(peak {self.peak:.6g})"
        )


def _change(tensor: str, node: str, original: Any, stored: Any) -> Change | None:
    """The ``Change`` of storing ``original`` (FP32 array) as ``stored`` (FP16 array), or ``None`` if FP16 holds it."""
    import numpy as np

    original = np.asarray(original, np.float64).ravel()
    stored = np.asarray(stored, np.float64).ravel()
    if original.shape != stored.shape or not original.size:
        return None
    finite = np.isfinite(original)
    peak = float(np.abs(original[finite]).max()) if finite.any() else 0.0
    error = np.where(finite, np.abs(stored - original), 0.0)
    error[finite & ~np.isfinite(stored)] = np.inf
    worst = int(np.argmax(error))
    if error[worst] <= peak * HALF_ULP:
        return None
    return Change(tensor, node, peak, float(original[worst]), float(stored[worst]))


def as_converter_stores(array: Any) -> Any:
    """``array`` (FP32) as onnxconverter-common stores it with trtbuild's limits (``MIN_POSITIVE``,
    ``MAX_FINITE``), as an FP16 numpy array."""
    import warnings

    import numpy as np
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the float32 number ... will be truncated to ...": judged here instead
        flat = np.asarray(array, np.float32).ravel()  # the converter works on a tensor's flat data
        return np.asarray(float16.convert_np_to_float16(flat, MIN_POSITIVE, MAX_FINITE)).reshape(np.shape(array))


def _constants(graph: Any) -> list[tuple[str, str, Any, list[str]]]:
    """Every FP32 constant of ``graph`` (not its subgraphs) as (tensor name, node name, array, reading nodes).

    Initializers are read by the nodes that take them as inputs; a node's tensor attribute (``Constant``,
    ``ConstantOfShape``) is produced by that node, and its readers are the node and its output's consumers.
    """
    from onnx import numpy_helper

    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.name)
    found = [
        (tensor.name, "", numpy_helper.to_array(tensor), readers.get(tensor.name, []))
        for tensor in graph.initializer
        if tensor.data_type == FLOAT
    ]
    for node in graph.node:
        for attribute in node.attribute:
            for tensor in [attribute.t] if attribute.HasField("t") else list(attribute.tensors):
                if tensor.data_type == FLOAT:
                    name = node.output[0] if node.output else node.name
                    consumers = [reader for output in node.output for reader in readers.get(output, [])]
                    found.append((name, node.name, numpy_helper.to_array(tensor), [node.name, *consumers]))
    return found


def unheld(model: Any) -> tuple[list[Change], set[str]]:
    """The FP32 constants of ``model``'s main graph that FP16 (as the converter stores it) does not hold.

    Returns:
        (the changes FP16 storage would make, the names of the nodes to keep in FP32 so that none is
        made: every node that reads such an initializer, and every ``Constant`` holding one together
        with the readers of its output). Node names must be unique (``validate.normalize``).
    """
    changes, nodes = [], set()
    for tensor, producer, array, readers in _constants(model.graph):
        change = _change(tensor, producer or (readers[0] if readers else ""), array, as_converter_stores(array))
        if change is not None:
            changes.append(change)
            nodes.update(readers)
    return changes, nodes


def changes(source: Any, converted: Any) -> list[Change]:
    """Every FP16 constant of ``converted`` whose values are not those of its FP32 origin in ``source``.

    An FP16 initializer is matched to the source's FP32 initializer of the same name, or else to the
    longest source name it extends with ``_`` (the converters' copies: ``w_fp16``, ``w_fp16_1``); a tensor
    attribute to the same node's attribute (converters keep node names, not always output names). Both
    ``onnx.ModelProto``; main graphs only.
    """
    from onnx import numpy_helper

    initializers: dict[str, tuple[str, str, Any]] = {}
    attributes: dict[str, tuple[str, str, Any]] = {}
    for name, node, array, readers in _constants(source.graph):
        (attributes if node else initializers)[node or name] = (name, node or (readers[0] if readers else ""), array)
    by_length = sorted(initializers, key=len, reverse=True)
    pairs = []
    for tensor in converted.graph.initializer:
        if tensor.data_type == FLOAT16:
            base = (
                tensor.name
                if tensor.name in initializers
                else next((name for name in by_length if tensor.name.startswith(f"{name}_")), None)
            )
            if base is not None:
                pairs.append((initializers[base], tensor))
    for node in converted.graph.node:
        for attribute in node.attribute:
            for tensor in [attribute.t] if attribute.HasField("t") else list(attribute.tensors):
                if tensor.data_type == FLOAT16 and node.name in attributes:
                    pairs.append((attributes[node.name], tensor))
    found = [
        change
        for (name, node, array), tensor in pairs
        if (change := _change(name, node, array, numpy_helper.to_array(tensor))) is not None
    ]
    return sorted(found, key=lambda change: change.tensor)
