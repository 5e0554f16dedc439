"""Precision artefacts: ONNX variants that carry the precision themselves (FP16 now; INT8 Q/DQ later)."""
