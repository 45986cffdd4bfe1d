"""FP32 vs INT8 (static QDQ) vs FP16: p50 latency and size, for the bundled sample, an
8.4M-parameter MLP, and a real third-party CNN (nudenet's YOLOv8n detector, 3M parameters, from
the real-model suite, calibrated on crops of scikit-learn's sample photos) at batch 1 and 8.
For the CNN, INT8 at batch 8 is held to a target: 1.6x on an x86 CPU without VNNI-class INT8
instructions, 2x with them; below it, the operators that stay slow are named from ONNX Runtime's
per-node profile. Prints numbers; asserts nothing.

    python benchmarks/quantize.py [--only cnn]
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


def show(
    title: str, folder: Path, batch_sizes: list[int], threads: list[int], dims: dict | None = None
) -> dict:
    result = benchmark(
        BenchmarkOptions(
            models=[str(folder)],
            batch_sizes=batch_sizes,
            threads=threads,
            max_seconds=8,
            dim_values=dims or {},
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
    return result


def real_cnn(tmp_path: Path) -> None:
    """nudenet's YOLOv8n: FP32 vs static INT8 at batch 1 and 8, the target, the slow operators."""
    import importlib.util

    import numpy as np

    from tests.real_models.test_real_models import _photo_crops
    from workflows.machine import measured_on
    from workflows.quantization.profile import op_times, slow_operators

    spec = importlib.util.spec_from_file_location(
        "fetch_real_models", ROOT / "scripts" / "fetch_real_models.py"
    )
    fetcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetcher)
    model = fetcher.fetch("nudenet-320n")
    np.savez(tmp_path / "crops.npz", x=_photo_crops(64, 320, 0))
    out = tmp_path / "yolo"
    quantize_model(
        load_model(model),
        QuantizeOptions(
            model={"path": str(model)},
            output=str(out),
            calibration=str(tmp_path / "crops.npz"),  # 32 calibrate, 32 held out for the gate
            calibration_samples=32,
        ),
    )
    result = show(
        "nudenet YOLOv8n 320x320 (3.2M parameters)", out, [1, 8], [0], {"height": 320, "width": 320}
    )
    machine = measured_on()
    target = 2.0 if machine["int8_dot_product"] else 1.6
    p50 = {(c["variant"], c["batch"]): c["p50_ms"] for c in result["configs"]}
    speedup = p50[("fp32", 8)] / p50[("int8-static", 8)]
    verdict = "meets" if speedup >= target else "BELOW"
    print(
        f"  INT8 at batch 8: {speedup:.2f}x ({verdict} the {target}x target on {machine['label']})"
    )
    if speedup < target:
        feeds = {"images": _photo_crops(8, 320, 3)}
        fp32 = op_times(out / "320n.fp32.onnx", feeds, runs=10)
        int8 = op_times(out / "320n.int8-static.onnx", feeds, runs=10)
        print(f"  per-operator profile (batch 8): fp32 {sum(fp32.values()):.1f} ms, "
              f"int8 {sum(int8.values()):.1f} ms; slowest non-INT8-kernel operators:")  # fmt: skip
        for row in slow_operators(fp32, int8):
            print(f"    {row['op']:20} {row['ms']:8.2f} ms  {row['share']:.0%} of the INT8 run")


def main() -> None:
    if "--only" in sys.argv and "cnn" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            real_cnn(Path(tmp))
        return
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
        real_cnn(tmp_path)


if __name__ == "__main__":
    main()
