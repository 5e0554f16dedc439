"""The engine's arithmetic, emulated in plain FP32 graphs, so the accuracy gate says the same on every CPU.

ONNX Runtime is not the engine. Run as it is, it decides verdicts by host kernels:

- its CPU provider computes an FP16 graph in FP32 (FP16 nodes are cast up), so an FP16 activation above
  65504 never becomes inf and nothing is ever flushed to zero;
- its default graph optimizations fuse ``DequantizeLinear -> Conv -> QuantizeLinear`` into its own int8
  kernels (``QLinearConv``), chosen per instruction set: on an AVX2-only CPU the u8s8 kernels saturate
  int16 intermediates, so the same Q/DQ ONNX scores differently on AVX2, AVX-512 and aarch64 hosts.

``emulate`` rewrites a reduced-precision ONNX into an FP32-only graph that performs the arithmetic a
strongly typed TensorRT engine performs, op by op, with nothing left for a host kernel to decide:

- **FP16 storage** (``fp16-storage``): every FP16 tensor is computed in FP32 from FP16-rounded inputs and
  rounded to FP16 where it is produced (``Cast`` to FLOAT16 and back), FP16 initializers become their exact
  FP32 values, tensors kept FP32 by the conversion stay FP32; an FP16 graph input (a model converted
  without FP32 I/O) is declared FP32 and rounded to FP16 where it enters, so the FP32 images fed give
  what the engine computes from them cast to FP16. This is TensorRT's FP16 layer contract
  (FP16 in, FP16 out, accumulation at least as wide as FP16) with FP32 accumulation, the tensor-core
  case. For every rounded tensor a probe output reports its peak magnitude and how many values
  overflowed to inf or were flushed to zero by the rounding, so the gate can name the node.
- **INT8 fake quantization** (``int8-fake-quant``): every ``QuantizeLinear`` becomes
  ``Clip(Round(x / scale) + zero_point, qmin, qmax)`` and every ``DequantizeLinear``
  ``(q - zero_point) * scale``, in FP32 (ONNX operator spec for both; ``Round`` is round-half-to-even as
  QuantizeLinear and TensorRT's IQuantizeLayer specify); int8 weights behind a ``DequantizeLinear`` are
  folded to their FP32 values. Everything else computes in FP32, as TensorRT's int8 kernels (int32
  accumulation of exact int8 products) do up to FP32 rounding. This is "fake quantization" (Jacob et al.,
  "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", 2018).

Sessions over the result are created with graph optimizations off (``session``), so ONNX Runtime runs
exactly these ops. The remaining host dependence is FP32 summation order inside Conv/MatMul, a few ulps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trtbuild.precision.emulate_fp16 import FP16_MAX, GRAPH_INPUT, PROBE_FIELDS, PROBE_PREFIX, fp16_storage
from trtbuild.precision.emulate_int8 import fake_quantize
from trtbuild.precision.rewrite import opset_of

__all__ = ["FP16_MAX", "GRAPH_INPUT", "PROBE_FIELDS", "PROBE_PREFIX", "Emulated", "emulate", "session"]

#: The lowest opset whose Q/DQ carry ``axis`` and whose Clip takes min/max as inputs.
MIN_OPSET = 13

FP16_STORAGE = "fp16-storage"
INT8_FAKE_QUANT = "int8-fake-quant"
FP32 = "fp32"
DESCRIPTIONS = {
    FP16_STORAGE: "FP16 storage emulated: every FP16 tensor rounded to FP16 where it is produced, computed in FP32",
    INT8_FAKE_QUANT: "INT8 Q/DQ emulated as fake quantization in FP32 (round half to even, saturate), no int8 kernels",
    FP32: "FP32, as the model is",
}


@dataclass
class Emulated:
    """An FP32-only model that computes what the reduced-precision engine computes.

    Attributes:
        model: the rewritten ``onnx.ModelProto``; its first outputs are the original ones, in order.
        kinds: the emulations applied (``fp16-storage``, ``int8-fake-quant``), empty for a plain FP32 model.
        probes: probe output name -> (node name, tensor name) of an FP16-rounded tensor; each probe is a
            float vector ``[peak, overflow, underflow, size]`` (``PROBE_FIELDS``).
    """

    model: Any
    kinds: list[str] = field(default_factory=list)
    probes: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """One line per emulation applied, for reports."""
        return "; ".join(DESCRIPTIONS[kind] for kind in self.kinds or [FP32])


def emulate(model: Any) -> Emulated:
    """Rewrite ``model`` (a reduced-precision ``onnx.ModelProto``: FP16 tensors and/or INT8 Q/DQ) into an
    FP32-only model computing what the engine computes; see the module docstring.

    Shapes are unchanged: the emulated model takes the same inputs, all FP32 (an FP16 input is declared
    FP32 and rounded to FP16 where it enters, with a probe), and gives the same outputs first, all FP32,
    then one ``[4]`` probe per FP16-rounded tensor. Models below opset 13 are converted to 13 first.

    Raises:
        BuildError: a construct the emulation does not cover (subgraphs with FP16 tensors, computed Q/DQ
            scales, blocked quantization, a QuantizeLinear not followed by a DequantizeLinear).
    """
    from onnx import ModelProto, version_converter

    given, model = model, ModelProto()
    model.CopyFrom(given)
    del model.graph.value_info[:]  # derived data, and converters leave stale types in it; inferred again below
    if opset_of(model) < MIN_OPSET:
        model = version_converter.convert_version(model, MIN_OPSET)
    kinds = []
    model, quantized = fake_quantize(model)
    if quantized:
        kinds.append(INT8_FAKE_QUANT)
    model, probes = fp16_storage(model)
    if probes:
        kinds.insert(0, FP16_STORAGE)
    return Emulated(model=model, kinds=kinds, probes=probes)


def session(model: Any) -> Any:
    """An ONNX Runtime CPU session over ``model`` (a ``ModelProto`` or a path) with graph optimizations
    off, so it runs exactly the graph's ops: no fusion into ONNX Runtime's own int8 or FP16 kernels
    (``GraphOptimizationLevel.ORT_DISABLE_ALL``, ONNX Runtime "Graph Optimizations")."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
