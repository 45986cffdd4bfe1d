"""Where an ONNX model spends its time, per operator type, from ONNX Runtime's own profiler
(`SessionOptions.enable_profiling`: a Chrome-trace JSON with one event per node run); used to name
the operators that keep an INT8 model from being faster than its FP32 original."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

WARMUP = 3


def op_times(
    path: Path, feeds: dict[str, np.ndarray], runs: int = 20, threads: int | None = None
) -> dict[str, float]:
    """Mean milliseconds per run spent in each operator type (after ORT's graph fusions, so the
    types are the kernels that ran: QLinearConv, FusedConv, DequantizeLinear …)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="dockyard-profile-") as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        if threads:
            opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for _ in range(WARMUP):  # profiled too; dropped below
            session.run(None, feeds)
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [
        e
        for e in events
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
    ]
    # Every run executes the same nodes in order: drop the warm-up runs' share.
    timed = kernels[len(kernels) * WARMUP // (runs + WARMUP) :]
    totals: dict[str, float] = defaultdict(float)
    for e in timed:
        totals[e.get("args", {}).get("op_name", "?")] += e.get("dur", 0) / 1000  # µs -> ms
    return {op: round(ms / runs, 4) for op, ms in sorted(totals.items(), key=lambda kv: -kv[1])}


def slow_operators(
    fp32: dict[str, float], int8: dict[str, float], top: int = 5
) -> list[dict[str, Any]]:
    """The INT8 model's most expensive operator types that are not INT8 kernels (float compute
    and the quantize/dequantize steps around it), with their time and share of the run."""
    from workflows.quantization.int8_diagnostics import INT8_KERNELS

    total = sum(int8.values()) or 1.0
    rows = [
        {"op": op, "ms": ms, "share": round(ms / total, 3), "fp32_ms": fp32.get(op)}
        for op, ms in int8.items()
        if op not in INT8_KERNELS
    ]
    return sorted(rows, key=lambda r: -r["ms"])[:top]
