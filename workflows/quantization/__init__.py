"""Quantization (and, next, the other compression techniques): ONNX Runtime's quantizers and
their calibration readers, the accuracy gate, the per-tensor fallback search and the INT8
diagnostics. The `quantize` step (`workflows.steps.quantize`) drives them."""
