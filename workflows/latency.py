"""Latency measurement: warm-up, then windows until three in a row agree, with percentiles."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def measure(
    run: Callable[[], Any],
    warmup: int = 5,
    window: int = 20,
    agree: float = 0.10,
    max_seconds: float = 10.0,
    min_windows: int = 3,
    check: Callable[[], None] | None = None,
    on_window: Callable[[list[float]], None] | None = None,
) -> dict[str, Any]:
    """Time `run` until the medians of `min_windows` consecutive windows agree within `agree`.

    Returns latencies (ms) after warm-up, their percentiles and whether they stabilised.
    `on_window` receives each window's latencies as they are measured (for live plots).
    """
    for _ in range(warmup):
        run()
    latencies: list[float] = []
    medians: list[float] = []
    started = time.perf_counter()
    stable = False
    while True:
        window_times = []
        for _ in range(window):
            t0 = time.perf_counter()
            run()
            window_times.append((time.perf_counter() - t0) * 1000)
        latencies += window_times
        medians.append(float(np.median(window_times)))
        if on_window is not None:
            on_window(window_times)
        if check is not None:
            check()
        last = medians[-min_windows:]
        if len(last) == min_windows and max(last) <= (1 + agree) * min(last):
            stable = True
            break
        if time.perf_counter() - started > max_seconds:
            break
    arr = np.asarray(latencies)
    return {
        "runs": len(latencies),
        "windows": len(medians),
        "stable": stable,
        "p50_ms": float(np.percentile(arr, 50)),
        "p90_ms": float(np.percentile(arr, 90)),
        "p99_ms": float(np.percentile(arr, 99)),
        "mean_ms": float(arr.mean()),
        "min_ms": float(arr.min()),
        "latencies_ms": [round(v, 4) for v in latencies],
    }


def onnx_p50(path: Any, feeds: dict[str, Any]) -> dict[str, float]:
    """Batch-1 ONNX Runtime latency (p50/p90/p99 ms) of the model at `path` on `feeds`: how the
    compression steps compare a variant with its original, timed the same way."""
    from workflows.formats import onnx_format

    sess = onnx_format.ort_session(path)
    timing = measure(lambda: sess.run(None, feeds), warmup=20, window=50, max_seconds=5.0)
    return {k: round(timing[k], 4) for k in ("p50_ms", "p90_ms", "p99_ms")}
