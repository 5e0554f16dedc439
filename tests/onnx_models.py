"""Tiny real ONNX models for the tests, made with onnx.helper (a registry like Polygraphy's tests/models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 10  # what ONNX Runtime 1.2x-1.31 loads (onnx 1.23 writes 14 by default)


def save_graph(path: Path, nodes: list, name: str, inputs: list, outputs: list, initializers: list = ()) -> Path:
    """Make a model of one graph at ``OPSET`` / ``IR_VERSION``, check it fully (strict shape inference)
    and save it to ``path``."""
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def conv_net(path: Path, batch: int | str = 1, channels: int = 8, seed: int = 0, size: int = 32) -> Path:
    """Conv(3->channels, 3x3, bias) -> Relu -> Conv(channels->4, 1x1); input ``input`` [batch, 3, size, size].

    ``batch`` is an int for a static model or a name (``"N"``) for a dynamic batch.
    """
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((4, channels, 1, 1)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["output"], name="conv2"),
    ]
    return save_graph(
        path,
        nodes,
        "conv_net",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 4, size, size])],
        weights,
    )


def deep_net(path: Path, layers: int = 300, channels: int = 16, size: int = 32) -> Path:
    """``layers`` Conv 3x3 + Relu pairs on [1, channels, size, size]: an engine whose build takes seconds
    (for tests that must interrupt a running build)."""
    rng = np.random.default_rng(0)
    nodes, weights, current = [], [], "input"
    for index in range(layers):
        weights.append(
            numpy_helper.from_array(
                (rng.standard_normal((channels, channels, 3, 3)) * 0.1).astype(np.float32), f"w{index}"
            )
        )
        nodes += [
            helper.make_node("Conv", [current, f"w{index}"], [f"c{index}"], pads=[1, 1, 1, 1], name=f"conv{index}"),
            helper.make_node("Relu", [f"c{index}"], [f"r{index}"], name=f"relu{index}"),
        ]
        current = f"r{index}"
    nodes.append(helper.make_node("Identity", [current], ["output"], name="out"))
    return save_graph(
        path,
        nodes,
        "deep_net",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, channels, size, size])],
        weights,
    )


def unsupported_op_net(path: Path) -> Path:
    """A well-formed ONNX file whose node ``mystery`` uses an op no TensorRT parser imports."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["input"], ["r"], name="relu"),
            helper.make_node("TotallyUnknownOp", ["r"], ["output"], name="mystery"),
        ],
        "unsupported",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), str(path))
    return path


def unnamed_fanout_net(path: Path, seed: int = 0) -> Path:
    """Input ``0`` [1, 3, 16, 16] read by two unnamed Convs (4 channels each) whose sum is ``output``.

    The shape of old PyTorch exports: numeric tensor names and nodes without names. onnxconverter-common
    names its input casts ``<input>_cast_to_<node name>``, so both casts would write ``0_cast_to_``.
    """
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), name) for name in ("w1", "w2")
    ]
    nodes = [
        helper.make_node("Conv", ["0", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["0", "w2"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a", "b"], ["output"]),
    ]
    return save_graph(
        path,
        nodes,
        "unnamed_fanout",
        [helper.make_tensor_value_info("0", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 16, 16])],
        weights,
    )


def shared_scale_net(path: Path, seed: int = 0) -> Path:
    """YOLO-World's ``logit_scale`` pattern: one FP32 scalar initializer ``scale`` read by ``Exp`` and by
    two ``Identity`` nodes (PyTorch's exporter deduplicates equal parameters that way).

    ``output`` [1, 4, 16, 16] = Conv(input) * Exp(Identity(scale)) * Identity(scale) + Exp(scale).
    ``Exp`` stays FP32 in the FP16 conversion, so the initializer does too, while the Convs and Muls
    become FP16.
    """
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array(2.5, dtype=np.float32), "scale"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["y"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Identity", ["scale"], ["scale_a"], name="identity_a"),
        helper.make_node("Identity", ["scale"], ["scale_b"], name="identity_b"),
        helper.make_node("Exp", ["scale_a"], ["exp_a"], name="exp_a"),
        helper.make_node("Exp", ["scale"], ["exp_scale"], name="exp_scale"),
        helper.make_node("Mul", ["y", "exp_a"], ["m1"], name="mul_exp"),
        helper.make_node("Mul", ["m1", "scale_b"], ["m2"], name="mul_identity"),
        helper.make_node("Add", ["m2", "exp_scale"], ["output"], name="add_exp"),
    ]
    return save_graph(
        path,
        nodes,
        "shared_scale",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 16, 16])],
        weights,
    )


def mlp_net(path: Path, inputs: int = 1, seed: int = 0) -> Path:
    """A model that takes no image: ``relu((x [+ t]) @ w1 + b1) @ w2``, inputs ``x`` (and ``t`` when
    ``inputs`` is 2) [1, 16], output ``y`` [1, 4]."""
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32), "w2"),
    ]
    names = ["x", "t"][:inputs]
    nodes = [helper.make_node("Add", ["x", "t"], ["s"], name="sum")] if inputs == 2 else []
    nodes += [
        helper.make_node("MatMul", ["s" if inputs == 2 else "x", "w1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
        helper.make_node("Relu", ["hb"], ["r"], name="relu1"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
    ]
    return save_graph(
        path,
        nodes,
        "mlp_net",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 16]) for name in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        weights,
    )


def topk_beyond_axis_net(path: Path) -> Path:
    """TopK with K 10 over an axis of 4: the ONNX parser accepts it (K is a constant), the builder refuses
    it ("length of reduction axis (4) is smaller than K (10)")."""
    k = numpy_helper.from_array(np.array([10], np.int64), "k")
    graph = helper.make_graph(
        [helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=1, name="top")],
        "topk_beyond_axis",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [
            helper.make_tensor_value_info("values", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("indices", TensorProto.INT64, None),
        ],
        [k],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.save(model, str(path))  # not checked: shape inference refuses K beyond the axis
    return path
