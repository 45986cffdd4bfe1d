"""FP32 vs INT8 (static QDQ) vs FP16: p50 latency and size, for the bundled sample and for an
8.4M-parameter MLP where INT8 pays off on a CPU with INT8 dot-product instructions.
Prints numbers; asserts nothing.

    python benchmarks/quantize.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402

from workflows.formats import load_model  # noqa: E402
from workflows.steps.benchmark import BenchmarkOptions, benchmark  # noqa: E402
from workflows.steps.quantize import QuantizeOptions, quantize_model  # noqa: E402
from workflows.synthetic import mlp_model  # noqa: E402

SAMPLE = ROOT / "resources" / "sample"


def show(title: str, folder: Path, batch_sizes: list[int], threads: list[int]) -> None:
    result = benchmark(
        BenchmarkOptions(
            models=[str(folder)], batch_sizes=batch_sizes, threads=threads, max_seconds=8
        )
    )
    sizes = {v["name"]: v["size_bytes"] for v in result["variants"]}
    print(f"\n{title}  (CPU: {result['cpu']['brand']}, VNNI: {result['cpu']['avx512_vnni']})")
    print(
        f"{'variant':14} {'size':>10} {'batch':>5} {'threads':>7} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'vs fp32':>8}"
    )
    base = {
        (c["batch"], c["threads"]): c["p50_ms"] for c in result["configs"] if c["variant"] == "fp32"
    }
    for c in result["configs"]:
        speed = base[(c["batch"], c["threads"])] / c["p50_ms"]
        print(
            f"{c['variant']:14} {sizes[c['variant']] / 1024:>8.0f}KB {c['batch']:>5} "
            f"{c['threads'] or 'auto':>7} {c['p50_ms']:>9.3f} {c['p99_ms']:>9.3f} {speed:>7.2f}x"
        )
    for v in result["verdicts"]:
        print(f"  {v['variant']} b{v['batch']} t{v['threads'] or 'auto'}: {v['verdict']}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sample_out = tmp_path / "sample"
        r = quantize_model(
            load_model(SAMPLE / "digits_cnn.pt2"),
            QuantizeOptions(
                model={"path": str(SAMPLE / "digits_cnn.pt2")},
                output=str(sample_out),
                modes=["static", "fp16"],
                calibration=str(SAMPLE / "digits_calibration.npz"),
                evaluation=str(SAMPLE / "digits_test.npz"),
            ),
        )
        acc = {v["name"]: v["accuracy"]["top1"] for v in r["variants"]}
        print(
            f"sample top-1: fp32 {r['float_model']['accuracy']['top1']:.4f}, "
            + ", ".join(f"{k} {v:.4f}" for k, v in acc.items())
        )
        show("digits_cnn (72k parameters)", sample_out, [1, 32], [1])

        mlp = tmp_path / "mlp.onnx"
        onnx.save(mlp_model(), str(mlp))
        mlp_out = tmp_path / "mlp"
        quantize_model(
            load_model(mlp),
            QuantizeOptions(
                model={"path": str(mlp)},
                output=str(mlp_out),
                modes=["static", "fp16"],
                calibration_samples=64,
                # Random weights and inputs: the accuracy gate is meaningless here, timing is the point.
                fallback=False,
            ),
        )
        show("MLP 1024-2048-2048-1024-10 (8.4M parameters)", mlp_out, [1, 32], [1])


if __name__ == "__main__":
    main()
