"""Calibration memory: peak anonymous memory and time of static INT8 calibration as the number of samples
grows, Dockyard's streamed calibration (a .npz read a batch at a time, ORT's calibrator fed one
batch per collect) against ONNX Runtime's `quantize_static` with the plain in-memory reader of
its examples. Model: nudenet's YOLOv8n (320x320, from the real-model suite) on crops of
scikit-learn's photos. Each run is a fresh child process.
Prints numbers; asserts nothing.

    python benchmarks/calibration.py [--samples 64,256,1024] [--plain-max 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _anon_mib() -> float:
    # Anonymous memory only: pages of a memory-mapped file count in RSS (and VmHWM) while the
    # kernel may drop them at will, so they are not what calibration costs.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _child(kind: str, method: str, model: str, data: str, out: str) -> None:
    import threading

    import numpy as np

    from workflows.data import load_dataset
    from workflows.formats import load_model
    from workflows.quantization import quantizers

    peak = [0.0]
    done = threading.Event()

    def sample() -> None:  # Linux has no peak of anonymous memory: sample it
        while not done.wait(0.02):
            peak[0] = max(peak[0], _anon_mib())

    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    if kind == "streamed":
        calib = load_dataset(data, load_model(Path(model)).inputs)
        quantizers.quantize_static_qdq(Path(model), Path(out), calib, method.lower())
    else:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        x = np.load(data)["x"]  # what ORT's examples do: every sample in memory

        class Reader:
            def __init__(self) -> None:
                self.it = iter([{"images": x[i : i + 16]} for i in range(0, len(x), 16)])

            def get_next(self):
                return next(self.it, None)

        quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, method))  # fmt: skip
    seconds = time.perf_counter() - started
    done.set()
    print(json.dumps({"peak_mib": max(peak[0], _anon_mib()), "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="64,256,1024")
    parser.add_argument("--plain-max", type=int, default=256, help="largest N for ORT's plain way")
    parser.add_argument("--method", default="Entropy", choices=("MinMax", "Entropy", "Percentile"))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return

    import importlib.util

    import numpy as np

    from tests.real_models.test_real_models import _photo_crops
    from workflows.machine import measured_on

    spec = importlib.util.spec_from_file_location(
        "fetch_real_models", ROOT / "scripts" / "fetch_real_models.py"
    )
    assert spec and spec.loader
    fetcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetcher)
    model = fetcher.fetch("nudenet-320n")
    print(f"CPU: {measured_on()['label']}; {args.method} calibration")
    print(f"{'samples':>7} {'way':>9} {'peak anon':>10} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(v) for v in args.samples.split(",")]:
            data = Path(tmp) / f"crops-{n}.npz"
            np.savez(data, x=_photo_crops(n, 320, 0))
            for kind in ("plain", "streamed"):
                if kind == "plain" and n > args.plain_max:
                    print(f"{n:>7} {kind:>9} {'skipped (--plain-max)':>19}")
                    continue
                out = subprocess.run(
                    [sys.executable, __file__, "--child", kind, args.method, str(model), str(data),
                     str(Path(tmp) / f"{kind}-{n}.onnx")],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{n:>7} {kind:>9} {r['peak_mib']:>7.0f} MiB {r['seconds']:>8.1f}")


if __name__ == "__main__":
    main()
