"""Why INT8 is (or is not) faster: which ops run INT8 kernels, which stayed float and why, and
what the CPU offers. Reads the graph ONNX Runtime actually runs after its fusions."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

# Ops that do the arithmetic; the rest (reshapes, pooling, Q/DQ) cost little either way.
COMPUTE_OPS = {
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "FusedConv",
    "FusedGemm",
    "FusedMatMul",
    "Attention",
    "LSTM",
    "GRU",
}
INT8_KERNELS = {
    "QLinearConv",
    "QGemm",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QAttention",
    "DynamicQuantizeLSTM",
    "QLinearConvTranspose",
    "MatMulNBits",
}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def runtime_ops(path: Path) -> list[str]:
    """Op types of the graph ORT runs on CPU (after its extended fusions)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        proto = onnx.load(opts.optimized_model_filepath, load_external_data=False)
    return [n.op_type for n in proto.graph.node]


def float_nodes(path: Path, excluded: set[str] | None = None) -> list[dict[str, str]]:
    """Compute nodes of a quantized (QDQ) model that still run in float, each with the reason."""
    import onnx
    from onnxruntime.quantization.registry import QDQRegistry

    proto = onnx.load(str(path), load_external_data=False)
    producer = {o: n for n in proto.graph.node for o in n.output}
    excluded = excluded or set()
    stayed = []
    for node in proto.graph.node:
        if node.op_type not in COMPUTE_OPS:
            continue
        # INT8 when both the data and the weight (inputs 0 and 1) arrive through DequantizeLinear.
        feeds = [producer.get(name) for name in node.input[:2]]
        if feeds and all(f is not None and f.op_type == "DequantizeLinear" for f in feeds):
            continue
        if node.name in excluded:
            reason = "kept in float by the accuracy fallback"
        elif node.op_type not in QDQRegistry:
            reason = f"ONNX Runtime's quantizer does not quantize {node.op_type}"
        else:
            reason = "its input is not quantized (a float neighbour or a non-float input)"
        stayed.append({"node": node.name, "op_type": node.op_type, "reason": reason})
    return stayed


def diagnose(path: Path, excluded: set[str] | None = None) -> dict[str, Any]:
    """INT8 facts of one model: ops running INT8 kernels vs float compute ops, and float nodes."""
    ops = runtime_ops(path)
    counts = Counter(ops)
    int8 = sum(n for op, n in counts.items() if op in INT8_KERNELS)
    fp = sum(n for op, n in counts.items() if op in COMPUTE_OPS)
    quantized = bool(int8 or QDQ_OPS & set(counts))
    return {
        "quantized": quantized,
        "runtime_ops": dict(counts.most_common()),
        "int8_compute_ops": int8,
        "float_compute_ops": fp,
        "fraction_int8": round(int8 / (int8 + fp), 3) if int8 + fp else 0.0,
        "float_nodes": float_nodes(path, excluded) if quantized else [],
    }


def verdict(
    speedup: float | None, diag: dict[str, Any], cpu: dict[str, Any], macs: int | None, batch: int
) -> str:
    """A plain-language explanation of the INT8 speed-up (or slow-down) measured."""
    if speedup is None:
        return "No FP32 baseline was measured at the same batch size and threads."
    if speedup >= 1.15:
        return (
            f"INT8 is {speedup:.1f}x faster than FP32 here: {diag['fraction_int8']:.0%} of the "
            "compute ops run INT8 kernels."
        )
    reasons = []
    ops = diag.get("runtime_ops", {})
    if "ConvInteger" in ops:
        reasons.append(
            "dynamic quantization turns convolutions into ConvInteger, which ONNX Runtime runs with a "
            "slow reference kernel on CPU and re-quantizes activations on every call; use static "
            "quantization (with calibration data) for convolutional models"
        )
    elif "DynamicQuantizeLinear" in ops or "DynamicQuantizeMatMul" in ops:
        reasons.append(
            "dynamic quantization measures every activation's range at run time, which "
            "costs more than it saves on small matrices"
        )
    if macs is not None and macs * batch < 20_000_000:
        reasons.append(
            f"the model is small ({macs * batch / 1e6:.1f} M multiply-adds per batch of {batch}): "
            "the extra quantize/dequantize steps and kernel launches cost about as much as the "
            "arithmetic INT8 saves; larger models and batches gain more"
        )
    if diag["fraction_int8"] < 0.5:
        reasons.append(
            f"only {diag['fraction_int8']:.0%} of the compute ops run INT8 kernels; the "
            "rest convert back and forth to float"
        )
    fast_int8 = cpu["avx512_vnni"] or cpu["avx_vnni"] or cpu["amx_int8"] or cpu["arm_dotprod"]
    if not fast_int8:
        reasons.append(
            "this CPU has no INT8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX "
            "or Arm dot-product), so INT8 matrix maths is not faster than FP32"
        )
    if not reasons:
        reasons.append(
            "the INT8 kernels for this graph's shapes are not faster on this CPU; try "
            "per-tensor weights, uint8 activations, or a larger batch"
        )
    kind = "slower than" if speedup < 0.95 else "about as fast as"
    return (
        f"INT8 is {kind} FP32 here ({speedup:.2f}x). Why: " + "; ".join(reasons) + ". "
        "INT8 still cuts the file size about 4x, which matters for download and memory."
    )
