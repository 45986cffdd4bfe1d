"""Benchmark: percentiles, stopping rule, per-config processes, INT8 diagnostics and verdicts."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tests.workflows import model_factory as mf
from workflows.errors import DataError
from workflows.formats import load_model
from workflows.latency import measure
from workflows.progress import Progress
from workflows.quantization import int8_diagnostics
from workflows.steps.benchmark import BenchmarkOptions, benchmark, expand_models, variant_name
from workflows.steps.quantize import QuantizeOptions, quantize_model


def test_measure_stops_when_windows_agree():
    import time

    # Sleeps keep their length when other processes load the CPU; a 50% band absorbs scheduler
    # jitter. What is tested is the stopping rule, not this machine's timing.
    result = measure(lambda: time.sleep(0.003), warmup=2, window=10, agree=0.5, max_seconds=30)
    assert result["stable"] is True
    assert result["runs"] == 10 * result["windows"] and result["windows"] >= 3
    assert result["min_ms"] <= result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"]
    assert result["p50_ms"] == pytest.approx(np.percentile(result["latencies_ms"], 50), rel=1e-3)


def test_measure_gives_up_on_noise(monkeypatch):
    # A fake clock: each run takes 1 ms or 5 ms at random, so window medians keep jumping and
    # never agree within 1%. Real sleeps made this flaky: three windows of equal sleeps can agree.
    import workflows.latency as latency

    rng = np.random.default_rng(0)
    now = [0.0]
    monkeypatch.setattr(latency, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def run() -> None:
        now[0] += float(rng.choice([0.001, 0.005])) * (1 + rng.uniform(0, 0.5))

    result = measure(run, warmup=0, window=4, max_seconds=0.5, agree=0.01)
    assert result["stable"] is False
    assert result["runs"] == 4 * result["windows"] and result["windows"] >= 10
    assert result["min_ms"] >= 1.0 and result["p99_ms"] <= 7.5


@pytest.fixture(scope="module")
def quantized_folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    model = mf.save_outlier_mlp(tmp)
    x_train, x_test, _, y_test = mf.digits_split()
    np.savez(tmp / "calib.npz", x=x_train[:64])
    np.savez(tmp / "test.npz", x=x_test, y=y_test)
    out = tmp / "variants"
    quantize_model(
        load_model(model),
        QuantizeOptions(
            model={"path": str(model)},
            output=str(out),
            modes=["static", "dynamic", "fp16"],
            calibration=str(tmp / "calib.npz"),
            evaluation=str(tmp / "test.npz"),
        ),
    )
    return out


def test_benchmark_variants_side_by_side(quantized_folder, tmp_path):
    report_path = tmp_path / "bench.json"
    live: list[dict] = []
    result = benchmark(
        BenchmarkOptions(
            models=[str(quantized_folder)],
            batch_sizes=[1, 8],
            threads=[1],
            window=10,
            max_seconds=2,
            output=str(report_path),
        ),
        Progress(on_data=live.append),
    )
    # Every timed run was streamed live, tagged with its configuration, in order.
    for row in result["configs"]:
        streamed = [
            v
            for e in live
            if (e["variant"], e["batch"], e["threads"]) == (row["variant"], row["batch"], 1)
            for v in e["latencies_ms"]
        ]
        assert streamed == row["latencies_ms"]
    names = [v["name"] for v in result["variants"]]
    assert names[0] == "fp32" and set(names) == {"fp32", "fp16", "int8-dynamic", "int8-static"}
    assert len(result["configs"]) == 4 * 2
    for row in result["configs"]:
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["throughput_per_s"] == pytest.approx(
            row["batch"] * 1000 / row["mean_ms"], rel=0.01
        )
        assert 20 < row["peak_rss_mb"] < 4000
    static = next(v for v in result["variants"] if v["name"] == "int8-static")
    # The fallback kept the outlier layer in float: the diagnostics say so, with the reason.
    reasons = {n["node"]: n["reason"] for n in static["diagnostics"]["float_nodes"]}
    assert "hidden2_gemm" in reasons and "fallback" in reasons["hidden2_gemm"]
    assert "hidden1_gemm" not in reasons  # still INT8
    assert static["diagnostics"]["fraction_int8"] < 1.0
    assert {v["variant"] for v in result["verdicts"]} == {"int8-static", "int8-dynamic"}
    for v in result["verdicts"]:
        assert v["speedup_p50"] > 0 and "INT8 is" in v["verdict"]
    assert json.loads(report_path.read_text())["baseline"] == "fp32"


def test_verdict_explains_slow_int8():
    cpu = {"avx512_vnni": False, "avx_vnni": False, "amx_int8": False, "arm_dotprod": False}
    diag = {"fraction_int8": 0.25, "runtime_ops": {"ConvInteger": 2}}
    text = int8_diagnostics.verdict(0.6, diag, cpu, macs=100_000, batch=1)
    assert "slower than FP32" in text and "0.60x" in text
    assert "ConvInteger" in text and "only 25%" in text and "VNNI" in text and "small" in text
    fast = int8_diagnostics.verdict(2.5, {"fraction_int8": 1.0}, cpu, macs=10**9, batch=1)
    assert fast.startswith("INT8 is 2.5x faster")


def test_cpu_features_are_read():
    from workflows.machine import cpu_features

    cpu = cpu_features()
    assert cpu["brand"] and isinstance(cpu["avx2"], bool)


def test_model_list_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \.onnx files"):
        expand_models([str(tmp_path / "empty")])
    with pytest.raises(DataError, match="no such model"):
        expand_models([str(tmp_path / "missing.onnx")])
    assert variant_name(tmp_path / "digits.int8-static.onnx") == "int8-static"
    assert variant_name(tmp_path / "model.onnx") == "model"


def test_per_operator_profile_names_what_stays_slow(quantized_folder):
    # ONNX Runtime's profiler, per operator type: the INT8 run's time sits in its INT8 kernels
    # and the quantize/dequantize steps; slow_operators lists only the latter.
    from workflows.quantization.profile import op_times, slow_operators

    fp32_path = next(quantized_folder.glob("*.fp32.onnx"))
    int8_path = next(quantized_folder.glob("*.int8-static.onnx"))
    feeds = {"x": np.random.default_rng(0).random((8, 64), np.float32)}
    fp32 = op_times(fp32_path, feeds, runs=5)
    int8 = op_times(int8_path, feeds, runs=5)
    assert all(ms >= 0 for ms in fp32.values()) and sum(fp32.values()) > 0
    assert "Gemm" in fp32 or "FusedGemm" in fp32
    assert {"QGemm", "QuantizeLinear"} & set(int8), int8
    slow = slow_operators(fp32, int8)
    assert slow and all(r["op"] not in ("QGemm", "QLinearMatMul", "QLinearConv") for r in slow)
    assert (
        abs(sum(r["share"] for r in slow) - sum(r["ms"] for r in slow) / sum(int8.values())) < 0.01
    )
