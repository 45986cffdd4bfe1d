"""Structured pruning + distillation + INT8 on a real CNN (issue 15's acceptance, in full).

Trains the VGG-style digits CNN (benchmarks/models/vgg_digits.py: 1.15 M parameters, 1,297
training digits, 500 held out), prunes it with the prune step (distilled on the training images
without their labels), makes static INT8 of the original and of the pruned model with the
quantize step, and prints one table: MACs, parameters, size, top-1 on the 500 held-out digits,
batch-1 p50 in ONNX Runtime and the speed-up over the FP32 original. Prints numbers; asserts
nothing (tests/workflows/test_prune.py asserts the acceptance lines with margins).

    python benchmarks/compress.py [--ratio 0.5] [--steps 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "models"))

from workflows.formats import onnx_format  # noqa: E402
from workflows.latency import measure  # noqa: E402
from workflows.machine import measured_on  # noqa: E402
from workflows.progress import null_progress  # noqa: E402
from workflows.steps.prune import run as prune  # noqa: E402
from workflows.steps.quantize import run as quantize  # noqa: E402


def p50(path: Path, feeds: dict) -> float:
    sess = onnx_format.ort_session(path)
    return measure(lambda: sess.run(None, feeds), warmup=50, window=200, max_seconds=10)["p50_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    import numpy as np
    from vgg_digits import train

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = train(work / "model")
        model = {
            "path": str(data["weights"]),
            "model_file": str(data["model_file"]),
            "model_class": "VGGDigits",
            "input_shapes": {"x": [1, 1, 16, 16]},
        }
        pruned = prune(
            {"model": model, "output": str(work / "prune"), "data": str(data["train"]),
             "evaluation": str(data["test"]), "ratio": args.ratio,
             "distill_steps": args.steps},
            null_progress(),
        )  # fmt: skip
        variants = {}
        for name, source in (("original", "fp32"), ("pruned", "pruned")):
            folder = work / f"int8-{name}"
            report = quantize(
                {"model": {"path": str(work / "prune" / f"vgg_digits.{source}.onnx")},
                 "output": str(folder), "calibration": str(data["train"]),
                 "evaluation": str(data["test"]), "modes": ["static"]},
                null_progress(),
            )  # fmt: skip
            variants[name] = (folder / report["variants"][0]["file"], report)
        feeds = {"x": np.load(data["test"])["x"][:1]}
        base_top1 = pruned["original"]["accuracy"]["top1"]
        rows = [
            ("fp32 original", work / "prune" / "vgg_digits.fp32.onnx", base_top1,
             pruned["pruning"]["macs_before"], pruned["pruning"]["parameters_before"]),
            ("pruned", work / "prune" / "vgg_digits.pruned.onnx",
             pruned["pruned"]["accuracy"]["top1"], pruned["pruning"]["macs_after"],
             pruned["pruning"]["parameters_after"]),
            ("int8", variants["original"][0],
             variants["original"][1]["variants"][0]["accuracy"]["top1"],
             pruned["pruning"]["macs_before"], pruned["pruning"]["parameters_before"]),
            ("pruned + int8", variants["pruned"][0],
             variants["pruned"][1]["variants"][0]["accuracy"]["top1"],
             pruned["pruning"]["macs_after"], pruned["pruning"]["parameters_after"]),
        ]  # fmt: skip
        cpu = measured_on()
        print(f"CPU: {cpu['label']}")  # fmt: skip
        d = pruned["distillation"]
        print(f"pruning ratio {args.ratio}: {pruned['pruning']['macs_reduction']:.1%} of MACs "
              f"removed; distillation {d['steps_run']} steps ({d['stopped']}), "
              f"{d['seconds']} s, on {d['samples']} unlabelled images")  # fmt: skip
        print(f"{'variant':15} {'MACs':>10} {'params':>9} {'size KB':>8} {'top-1 %':>8} "
              f"{'drop':>6} {'p50 ms':>8} {'speed-up':>8}")  # fmt: skip
        base = None
        for name, path, top1, macs, params in rows:
            t = p50(path, feeds)
            base = base or t
            print(f"{name:15} {macs:>10,} {params:>9,} {onnx_format.onnx_size(path) / 1024:>8.0f} "
                  f"{100 * top1:>8.2f} {100 * (base_top1 - top1):>6.2f} {t:>8.4f} "
                  f"{base / t:>7.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
