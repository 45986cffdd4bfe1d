"""Benchmark ONNX variants side by side: latency percentiles and throughput per batch size and
thread count, peak memory, and INT8 diagnostics with a plain-language verdict.

Each (variant, batch, threads) configuration runs in its own child process, so thread pools,
caches and peak memory of one variant do not colour the next.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.errors import DataError
from workflows.options import Options, from_dict, option
from workflows.progress import Progress, null_progress
from workflows.quantization import int8_diagnostics


@dataclass
class BenchmarkOptions(Options):
    """Options of the benchmark step."""

    models: list[str] = option([], "ONNX files, or a quantize output folder (all its variants)")
    batch_sizes: list[int] = option([1], "Batch sizes to measure")
    threads: list[int] = option([0], "Intra-op thread counts (0: ONNX Runtime's default)")
    warmup: int = option(5, "Warm-up runs before timing")
    window: int = option(20, "Runs per window; timing stops when 3 windows agree within 10%")
    max_seconds: float = option(10.0, "Time limit per configuration")
    output: str | None = option(None, "Write report.json here (a file path)")
    seed: int = option(0, "Seed for the synthetic inputs")
    dim_values: dict[str, int] = option(
        {}, "Sizes of named dynamic dimensions in the synthetic inputs (height=320, …)"
    )


def variant_name(path: Path) -> str:
    """`digits.int8-static.onnx` -> `int8-static`; `model.onnx` -> `model`."""
    parts = path.name.removesuffix(".onnx").split(".")
    return parts[-1] if len(parts) > 1 else parts[0]


def expand_models(models: list[str]) -> list[Path]:
    """Model files, with folders expanded to the .onnx files they hold (float baseline first)."""
    paths: list[Path] = []
    for m in models:
        p = Path(m)
        if p.is_dir():
            found = sorted(p.glob("*.onnx"), key=lambda f: (variant_name(f) != "fp32", f.name))
            if not found:
                raise DataError(f"{p}: no .onnx files to benchmark")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise DataError(f"{p}: no such model file or folder")
    if not paths:
        raise DataError("benchmark: give at least one model")
    return paths


class _LivePublisher:
    """Batches latencies and publishes them at most every `interval` s (a 0.1 ms model would
    otherwise send thousands of events per second)."""

    def __init__(self, progress: Progress, interval: float = 0.1) -> None:
        self.progress, self.interval = progress, interval
        self.pending: list[float] = []
        self.last = time.monotonic()

    def add(self, latencies_ms: list[float]) -> None:
        self.pending += latencies_ms
        if time.monotonic() - self.last >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.progress.publish({"latencies_ms": [round(v, 4) for v in self.pending]})
        self.pending = []
        self.last = time.monotonic()


def measure_one(options: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Child-process entry: time one model at one batch size and thread count; peak RSS in MB."""
    import psutil

    from workflows.formats import onnx_format
    from workflows.inputs import synthesize
    from workflows.latency import measure
    from workflows.machine import peak_rss

    rss_start = psutil.Process().memory_info().rss
    path = Path(options["path"])
    model = onnx_format.load(path)
    feeds = synthesize(
        model.inputs, options["batch"], options["seed"], options.get("dim_values") or None
    )
    sess = onnx_format.ort_session(path, options["threads"] or None)
    live = _LivePublisher(progress)
    result = measure(
        lambda: sess.run(None, feeds),
        options["warmup"],
        options["window"],
        max_seconds=options["max_seconds"],
        check=progress.check,
        on_window=live.add,
    )
    live.flush()
    result["peak_rss_mb"] = round(peak_rss() / 2**20, 1)
    result["rss_growth_mb"] = round((psutil.Process().memory_info().rss - rss_start) / 2**20, 1)
    result["throughput_per_s"] = round(options["batch"] * 1000 / result["mean_ms"], 1)
    return result


def _excluded_nodes(path: Path) -> set[str]:
    report = path.parent / "report.json"
    if not report.exists():
        return set()
    try:
        data = json.loads(report.read_text())
    except ValueError:
        return set()
    return {
        n
        for v in data.get("variants", [])
        if v.get("file") == path.name
        for n in v.get("excluded_nodes", [])
    }


def benchmark(opts: BenchmarkOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Measure every model x batch size x thread count; add INT8 diagnostics and verdicts."""
    from workflows.formats import onnx_format
    from workflows.runner import run_step
    from workflows.steps.inspect import inspect_model

    progress = progress or null_progress()
    paths = expand_models(opts.models)
    configs = [(p, b, t) for p in paths for b in opts.batch_sizes for t in opts.threads]
    rows = []
    for i, (path, batch, threads) in enumerate(configs):
        name = variant_name(path)
        progress.update(
            i / len(configs), f"Timing {name}, batch {batch}, threads {threads or 'auto'}"
        )
        measured = run_step(
            "workflows.steps.benchmark:measure_one",
            {
                "path": str(path),
                "batch": batch,
                "threads": threads,
                "seed": opts.seed,
                "dim_values": dict(opts.dim_values),
                "warmup": opts.warmup,
                "window": opts.window,
                "max_seconds": opts.max_seconds,
            },
            on_data=lambda data, n=name, b=batch, t=threads: progress.publish(
                {"variant": n, "batch": b, "threads": t, **data}
            ),
        )
        rows.append(
            {"variant": name, "file": str(path), "batch": batch, "threads": threads, **measured}
        )
    progress.update(0.95, "INT8 diagnostics")
    from workflows.machine import cpu_features

    cpu = cpu_features()
    baseline = next((p for p in paths if variant_name(p) == "fp32"), paths[0])
    macs = inspect_model(onnx_format.load(baseline), include_graph=False).get("macs_per_sample")
    variants, verdicts = [], []
    for path in paths:
        diag = int8_diagnostics.diagnose(path, _excluded_nodes(path))
        entry = {
            "name": variant_name(path),
            "file": str(path),
            "size_bytes": onnx_format.onnx_size(path),
            "diagnostics": diag,
        }
        variants.append(entry)
        if path == baseline or not diag["quantized"]:
            continue
        for row in (r for r in rows if r["file"] == str(path)):
            base = next(
                (
                    r
                    for r in rows
                    if r["file"] == str(baseline)
                    and r["batch"] == row["batch"]
                    and r["threads"] == row["threads"]
                ),
                None,
            )
            speedup = base["p50_ms"] / row["p50_ms"] if base else None
            verdicts.append(
                {
                    "variant": entry["name"],
                    "batch": row["batch"],
                    "threads": row["threads"],
                    "speedup_p50": None if speedup is None else round(speedup, 3),
                    "verdict": int8_diagnostics.verdict(speedup, diag, cpu, macs, row["batch"]),
                }
            )
    result = {
        "step": "benchmark",
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "baseline": variant_name(baseline),
        "macs_per_sample": macs,
        "configs": rows,
        "variants": variants,
        "verdicts": verdicts,
    }
    if opts.output:
        from workflows.atomic import write_json

        write_json(Path(opts.output), result)
    progress.update(1.0, "Benchmark done")
    return result


def run(options: BenchmarkOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return benchmark(from_dict(BenchmarkOptions, options), progress)
