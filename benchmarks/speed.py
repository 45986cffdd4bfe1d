"""Speed as a user feels it, in one run, with the bundled sample (issue 18's table):

- open the sample in the app, Load -> Inspect done: from a cold start of the app (its command
  line opens the sample), and with the window painted and its warm workers ready;
- convert + validate, and predict, of the sample through the runner, cold and warm;
- the whole pipeline (`dockyard-cli run`: convert, validate, quantize, benchmark, report and
  the three exports), each step's time, and which steps got a warm worker;
- cold start to first paint, 10 runs; the worst event-loop stall during each step;
- what the warm workers cost (RSS, and unique memory, of each idle worker).

Targets (issue 18, on 2 cores): inspect <= 1.0 s warm and <= 3 s from a cold start,
convert+validate <= 3 s, pipeline <= 45 s, first paint <= 1 s in 10 of 10, stalls <= 50 ms.
Prints numbers (and the CPU they come from); asserts nothing.

    QT_QPA_PLATFORM=offscreen python benchmarks/speed.py [--skip-gui]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SAMPLE = ROOT / "resources" / "sample"

OPEN_SAMPLE = r"""
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from pathlib import Path
if not {warm!r}:  # as `dockyard MODEL` starts: the model's worker first, then Qt
    from app.__main__ import _start_worker_for
    _start_worker_for({sample!r})
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from app.netron_view import prepare_environment
prepare_environment()
from app.main_window import MainWindow
from app.pages.load_page import LoadPage
from app.session import Session
from workflows import warm
app = QApplication([])
w = MainWindow(Session(output_root=Path({out!r})))
done = {{}}
w.step_finished.connect(lambda step, ok: (done.setdefault(step, (ok, time.perf_counter())), app.quit()))
w.show()
start = t0
if {warm!r}:  # wait for the painted window's workers, then click "Open the sample"
    deadline = time.perf_counter() + 60
    while set(warm.pool().idle()) != {{"onnx", "torch"}} and time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.02)
    warm.pool().wait_ready(120)
    start = time.perf_counter()
w.page(LoadPage).open_sample()
QTimer.singleShot(120000, app.quit)
app.exec()
ok, end = done["inspect"]
print(f"{{end - start:.3f}}" if ok else "failed")
"""


def open_sample(warm: bool) -> float:
    """Seconds to Inspect done from the app's start (cold; the interpreter's own start, ~70 ms,
    not included) or from the click, with the painted window's workers ready (warm)."""
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
        env.pop("DOCKYARD_NO_WARM_WORKERS", None)
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                OPEN_SAMPLE.format(
                    root=str(ROOT), out=out, warm=warm, sample=str(SAMPLE / "digits_cnn.pt2")
                ),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        lines = r.stdout.strip().splitlines()
        if r.returncode or not lines or lines[-1] == "failed":
            raise SystemExit(f"open-sample script failed: {r.stderr[-2000:]}")
        return float(lines[-1])


def runner_steps(warm_workers: bool) -> dict[str, float]:
    """convert, validate and predict of the sample through the runner (what the app runs)."""
    import numpy as np

    from workflows import warm
    from workflows.options import LoadOptions, to_dict
    from workflows.runner import run_step

    pool = warm.pool()
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "digits.onnx"
        one = Path(tmp) / "one.npy"
        np.save(one, np.load(SAMPLE / "digits_test.npz")["x"][0])
        pt2 = to_dict(LoadOptions(str(SAMPLE / "digits_cnn.pt2")))
        steps = [
            ("convert", {"model": pt2, "output": str(out)}),
            ("validate", {"original": pt2, "candidate": {"path": str(out)},
                          "inputs": str(SAMPLE / "digits_test.npz")}),
            ("predict", {"models": [str(out)], "input": str(one)}),
        ]  # fmt: skip
        for name, options in steps:
            if warm_workers:
                pool.want("onnx", "torch")
                pool.wait_ready(120)
            started = time.perf_counter()
            run_step(name, options, log=Path(tmp) / f"{name}.log")
            times[name] = time.perf_counter() - started
    pool.release()
    return times


def pipeline() -> tuple[float, list[tuple[str, float, bool]]]:
    """`dockyard-cli run` of every workflow step on the sample: wall time and each step's."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        wf = Path(tmp) / "all.yaml"
        wf.write_text(
            f"version: 1\nmodel: {{path: {SAMPLE / 'digits_cnn.pt2'}}}\noutput: {tmp}/out\n"
            "steps:\n  - step: convert\n"
            f"  - step: validate\n    options: {{inputs: {SAMPLE / 'digits_test.npz'}}}\n"
            "  - step: quantize\n    options: {modes: [static, fp16], "
            f"calibration: {SAMPLE / 'digits_calibration.npz'}, "
            f"evaluation: {SAMPLE / 'digits_test.npz'}}}\n"
            "  - step: benchmark\n  - step: report\n  - step: export-docker\n"
            "  - step: export-torchserve\n  - step: export-tflite\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "DOCKYARD_NO_WARM_WORKERS"}
        started = time.perf_counter()
        r = subprocess.run(
            [sys.executable, "-m", "workflows.cli", "run", str(wf), "--json"],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
        wall = time.perf_counter() - started
        if r.returncode:
            raise SystemExit(f"dockyard-cli run failed: {r.stderr[-2000:]}")
        steps = json.loads(r.stdout)["steps"]
        return wall, [(s["step"], s["seconds"], s["warm"]) for s in steps]


def worker_memory() -> dict[str, tuple[float, float]]:
    """family -> (RSS MB, unique MB) of an idle warm worker."""
    import psutil

    from workflows import warm

    pool = warm.pool()
    pool.want("onnx", "torch", "tensorflow")
    pool.wait_ready(180)
    found = {}
    for family, pid in pool.idle().items():
        info = psutil.Process(pid).memory_full_info()
        found[family] = (info.rss / 1e6, info.uss / 1e6)
    pool.release()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-gui", action="store_true", help="engine and CLI figures only")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")
    os.environ.pop("DOCKYARD_NO_WARM_WORKERS", None)
    from workflows.machine import measured_on

    print(f"measured on: {measured_on()['label']}, {os.cpu_count()} cores")

    if not args.skip_gui:
        cold = [open_sample(warm=False) for _ in range(3)]
        warm_runs = [open_sample(warm=True) for _ in range(3)]
        print("open the sample, Load -> Inspect done (targets: 3 s cold, 1 s warm)")
        print(f"  cold app start  {', '.join(f'{t:.2f}' for t in cold)} s")
        print(f"  warm worker     {', '.join(f'{t:.2f}' for t in warm_runs)} s")

    cold_steps = runner_steps(warm_workers=False)
    warm_steps = runner_steps(warm_workers=True)
    print("the sample through the runner: cold process / warm worker (target convert+validate 3 s)")
    for name in cold_steps:
        print(f"  {name:9} {cold_steps[name]:6.2f} s / {warm_steps[name]:6.2f} s")
    cv_cold = cold_steps["convert"] + cold_steps["validate"]
    cv_warm = warm_steps["convert"] + warm_steps["validate"]
    print(f"  convert+validate {cv_cold:.2f} s / {cv_warm:.2f} s")

    wall, steps = pipeline()
    print(f"whole pipeline, dockyard-cli run (target 45 s): {wall:.1f} s wall")
    for name, seconds, was_warm in steps:
        print(f"  {name:18} {seconds:6.1f} s  {'warm' if was_warm else 'cold'}")

    print("idle warm workers: RSS / unique memory")
    for family, (rss, uss) in worker_memory().items():
        print(f"  {family:10} {rss:6.0f} MB / {uss:6.0f} MB")

    if not args.skip_gui:
        from gui import cold_start, stalls

        starts = cold_start(runs=10)
        within = sum(1 for t, _ in starts if t <= 1000)
        print(f"cold start to first paint, 10 runs (target <= 1000 ms): {within} of 10 within")
        print("  " + ", ".join(f"{t:.0f}" for t, _ in starts) + " ms")
        print("worst event-loop stall during each step, 10 ms probe (target <= 50 ms)")
        for step, stall, seconds, _ in stalls():
            print(f"  {step:14} {stall:7.1f} ms   (step took {seconds:.1f} s)")


if __name__ == "__main__":
    main()
