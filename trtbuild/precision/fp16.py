"""FP32 ONNX -> FP16 ONNX for strongly typed builders (TensorRT >= 11, TensorRT-RTX).

Strongly typed builders take tensor types from the network, so FP16 must be in the ONNX. The conversion
is onnxconverter-common's ``convert_float_to_float16`` with:

- ``keep_io_types=True``: the model's inputs and outputs stay FP32 (callers' pre/post-processing is
  unchanged; the engine casts at the edges);
- a block list of numerically sensitive ops kept in FP32 (reductions, powers, exponentials and the
  index arithmetic of ``Range``/``CumSum``), with casts inserted around them by the converter.

Before it, ``validate.normalize``: initializers leave the graph inputs (IR 3 models) and every node gets
a unique name; the converter fails on both otherwise (see ``trtbuild.precision.validate``).

No constant changes silently (``trtbuild.precision.fp16_values``): the converter stores constants with
FP16's own limits instead of its defaults (which clamp to +-1e4), every node that reads a constant FP16
cannot hold (beyond 65504, or a whole tensor in the subnormal range) is kept FP32 through the
converter's ``node_block_list``, and after the conversion every FP16 constant is compared with the FP32
value it came from; any other change fails the step naming the tensor and its value.

Two fix-ups follow.

1. The converter turns ``Constant`` nodes to FP16 but leaves an exporter's own ``Cast(to=FLOAT)``
   untouched, so e.g. a YOLO head's ``Cast(Range) + Constant`` anchor grid ends up FP32 + FP16, which
   strongly typed builders reject ("ElementWiseOperation SUM must have same input types"). Every such
   internal cast is retargeted to FP16 unless it feeds a blocked op or a graph output.
2. The converter decides types from shape inference's ``value_info`` and keeps an initializer FP32 when
   any consumer is a blocked op, yet labels its other consumers' outputs FP16 and converts their other
   inputs. YOLO-World's ``logit_scale`` is one initializer read by ``Exp`` and by ``Identity`` nodes
   (PyTorch's exporter shares equal parameters so): the ``Identity`` outputs are labelled FP16 but
   computed FP32 (ONNX Runtime: "Type (tensor(float16)) of output arg ... does not match expected type
   (tensor(float))"), and an FP32 ``Identity`` output read by a ``Mul`` with an FP16 input mixes types.
   ``repair_float_types`` recomputes every tensor's element type in node order with ONNX's own per-node
   inference, and wherever inputs that an op's schema binds to one type parameter mix FP32 and FP16 it
   converts the odd ones out: to FP32 for a blocked op, else to FP16 (an FP32 initializer gets an FP16
   copy clamped like the converter's, any other tensor a ``Cast``). ``value_info`` entries are corrected
   to the recomputed types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from trtbuild.errors import BuildError
from trtbuild.precision import fp16_values, validate
from trtbuild.precision.float_types import blocks, repair_float_types

#: Ops kept in FP32, on top of onnxconverter-common's DEFAULT_OP_BLOCK_LIST.
SENSITIVE_OPS = ("Pow", "Sqrt", "ReduceMean", "ReduceSum", "ReduceL2", "Exp", "Log", "Range", "CumSum")
#: Changes whenever this module's conversion changes; part of the conversion's key.
VERSION = 3

FLOAT, FLOAT16 = 1, 10


def block_list() -> list[str]:
    """The op types kept in FP32."""
    from onnxconverter_common import float16

    return sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(SENSITIVE_OPS))


def already_fp16(model: Any) -> str:
    """What makes ``model`` (an ``onnx.ModelProto``) an FP16 model already, or ``""`` when nothing does.

    FP16 already: it stores FP16 weights (initializers or ``Constant`` tensors of the main graph), or a
    graph input or output is FP16 (a model converted without FP32 I/O). Such a model is built as it is:
    the FP16 step writes it unchanged, since converting again is refused by onnxconverter-common
    ("already converted to float16") and could only re-round what is FP16 already. A model whose only
    FP16 is a ``Cast`` inside an FP32 graph is not FP16: it is converted (and onnxconverter-common refuses).

    Returns:
        e.g. ``"12 FP16 weights, FP16 inputs ['input']"``.
    """
    graph = model.graph
    weights = sum(tensor.data_type == FLOAT16 for tensor in graph.initializer)
    weights += sum(
        attribute.t.data_type == FLOAT16
        for node in graph.node
        if node.op_type == "Constant"
        for attribute in node.attribute
        if attribute.HasField("t")
    )
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [
        value.name
        for value in graph.input
        if value.name not in initializers and value.type.tensor_type.elem_type == FLOAT16
    ]
    outputs = [value.name for value in graph.output if value.type.tensor_type.elem_type == FLOAT16]
    found = [f"{weights} FP16 weights"] if weights else []
    found += [f"FP16 inputs {inputs}"] if inputs else []
    found += [f"FP16 outputs {outputs}"] if outputs else []
    return ", ".join(found)


def _retarget_internal_casts(model: Any, blocked: set[str], nodes: set[str]) -> int:
    graph = model.graph
    outputs = {output.name for output in graph.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    changed = 0
    for node in graph.node:
        if node.op_type != "Cast" or node.output[0] in outputs:
            continue
        to = next(attribute for attribute in node.attribute if attribute.name == "to")
        users = consumers.get(node.output[0], [])
        if (
            to.i == FLOAT
            and users
            and not blocks(node, blocked, nodes)
            and not any(blocks(user, blocked, nodes) for user in users)
        ):
            to.i = FLOAT16
            changed += 1
    return changed


def _skip_fp16_round_trips(model: Any, nodes: set[str]) -> int:
    """Let FP32 readers of a kept node's output read it directly, not through ``Cast`` to FP16 and back.

    onnxconverter-common casts every output of a blocked node to FP16 and casts it back to FP32 before
    each blocked reader, so a ``Constant`` kept FP32 because FP16 cannot hold it (``nodes``) would still
    reach its FP32 readers as inf. Such a ``Cast(to=FLOAT)`` of a ``Cast(to=FLOAT16)`` of a kept node's
    output is pointed at the FP32 output itself (a Cast to the same type is an identity); returns how many.
    """
    graph = model.graph
    producers = {name: node for node in graph.node for name in node.output}
    skipped = 0
    for node in graph.node:
        inner = producers.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if inner is None or inner.op_type != "Cast" or not inner.input:
            continue
        origin = producers.get(inner.input[0])
        if origin is None or origin.name not in nodes:
            continue
        to = {attribute.name: attribute.i for attribute in node.attribute}.get("to")
        inner_to = {attribute.name: attribute.i for attribute in inner.attribute}.get("to")
        if to == FLOAT and inner_to == FLOAT16:
            node.input[0] = inner.input[0]
            skipped += 1
    read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    unread = [node for node in graph.node if node.op_type == "Cast" and not set(node.output) & read]
    for node in unread:  # the casts to FP16 nothing reads any more
        graph.node.remove(node)
    return skipped


class Conversion(NamedTuple):
    """What ``convert`` made.

    Attributes:
        model: the FP16 ``onnx.ModelProto``.
        unheld: the constants FP16 cannot hold (``fp16_values.unheld``), for the step's log.
        kept: the names of the nodes kept FP32 for them.
    """

    model: Any
    unheld: list[fp16_values.Change]
    kept: set[str]


def convert(model: Any) -> Conversion:
    """The FP16 version of ``model`` (an ``onnx.ModelProto``, left unchanged), I/O kept FP32.

    Input and output names, shapes and FP32 types are kept; weights and internal tensors become FP16
    except around ``block_list()`` ops and the nodes that read a constant FP16 cannot hold
    (``fp16_values.unheld``: beyond 65504, or whose whole scale is subnormal), which stay FP32. The
    converter stores constants with FP16's own limits (``max_finite_val=65504``, ``min_positive_val=2**-24``)
    instead of its defaults (1e4, 1e-7), which would clamp e.g. a weight of 30000 to 10000. See the
    module's docstring for the steps.

    Raises:
        ValueError: from onnxconverter-common when the model cannot be converted (e.g. it is already
            FP16). Other onnxconverter-common failures surface as their own exception types
            (``AssertionError``, ``KeyError``); the child turns all of them into a BuildError.
        BuildError: the converted model stores a constant whose value is not the source's up to FP16
            rounding (``check_values``).
    """
    import onnx
    from onnxconverter_common import float16

    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    validate.normalize(prepared)
    source = onnx.ModelProto()
    source.CopyFrom(prepared)
    blocked = block_list()
    unheld, kept = fp16_values.unheld(prepared)
    converted = float16.convert_float_to_float16(
        prepared,
        min_positive_val=fp16_values.MIN_POSITIVE,
        max_finite_val=fp16_values.MAX_FINITE,
        keep_io_types=True,
        op_block_list=blocked,
        node_block_list=sorted(kept),
    )
    _retarget_internal_casts(converted, set(blocked), kept)
    _skip_fp16_round_trips(converted, kept)
    repair_float_types(converted, set(blocked), frozenset(kept))
    check_values(source, converted)
    return Conversion(converted, unheld, kept)


def check_values(source: Any, converted: Any) -> None:
    """Refuse a conversion that changed a constant beyond FP16 rounding.

    Args:
        source: the FP32 ``onnx.ModelProto`` the conversion read (normalised: unique node names).
        converted: what the conversion made of it.

    Raises:
        BuildError: naming every changed tensor, its node and value (``fp16_values.changes``), at most five.
    """
    changed = fp16_values.changes(source, converted)
    if changed:
        listed = "; ".join(change.describe() for change in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise BuildError(
            f"FP16 conversion changed {len(changed)} constants beyond FP16 rounding: {listed}{more}; "
            "keep their nodes in FP32 or rescale the network"
        )


def convert_autocast(source: Path, feeds: list[dict[str, Any]], scratch: Path) -> Any:
    """The FP16 version of the ONNX at ``source`` by NVIDIA ModelOpt's AutoCast, I/O kept FP32.

    AutoCast (``modelopt.onnx.autocast.convert_to_mixed_precision``) runs the model on ``feeds`` (one
    ``{input: array}`` per image, written as ``.npz`` files into ``scratch``) and keeps in FP32 every node
    whose values leave its safe range (``data_max``, default 512) — what NVIDIA recommends for strongly
    typed TensorRT. Without data it would feed random inputs with dynamic dimensions set to 1, which
    fails on YOLO heads (mismatched Concat dimensions), so calibration images are required.

    Raises:
        ModuleNotFoundError: ModelOpt is not installed.
        Exception: whatever AutoCast raises (the child turns it into a BuildError).
    """
    import numpy as np
    from modelopt.onnx.autocast import convert_to_mixed_precision

    folder = scratch / "calibration"
    folder.mkdir()
    for index, feed in enumerate(feeds):
        np.savez(folder / f"{index:04d}.npz", **feed)
    return convert_to_mixed_precision(
        onnx_path=str(source),
        low_precision_type="fp16",
        keep_io_types=True,
        calibration_data=str(folder),
        providers=["cpu"],
    )
