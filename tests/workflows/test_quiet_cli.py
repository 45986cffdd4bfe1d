"""What the frameworks print (TensorFlow's C++ log, absl, converter chatter, Python warnings)
goes to the step's log file, never between the CLI's own lines, unless --verbose.

Each command runs as a user runs it: a fresh process, TensorFlow's log level left at its
default (the suite's conftest quiets it; a user's shell does not)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workflows.warm import DISABLE_ENV

# Line shapes of framework output seen here: glog/absl ("I0000 00:00:…", "W1201 …"), Python
# warnings, TensorFlow/LiteRT/onnx2tf notices, tracebacks.
FRAMEWORK_LINE = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d|^(INFO|WARNING|ERROR|DEBUG)[: ]|\w+Warning\b|warnings\.warn"
    r"|tensorflow|tf\.lite|absl|oneDNN|XNNPACK|fully_quantize|TF-TRT|cuda|onnx2tf\b|torch/"
    r"|Traceback|^\s+File \"",
    re.IGNORECASE,
)


def cli(*args: str, logs: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["DOCKYARD_LOG_DIR"] = str(logs)
    env.pop(DISABLE_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def framework_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (r.stdout + r.stderr).splitlines() if FRAMEWORK_LINE.search(line)]


@pytest.mark.timeout(900)
def test_no_framework_line_reaches_the_terminal_without_verbose(sample_dir, tmp_path):
    pt2 = str(sample_dir / "digits_cnn.pt2")
    test_npz = str(sample_dir / "digits_test.npz")
    calib = str(sample_dir / "digits_calibration.npz")
    onnx = str(tmp_path / "digits.onnx")
    q = tmp_path / "q"
    one = tmp_path / "one.npy"
    import numpy as np

    np.save(one, np.load(test_npz)["x"][0])
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        f"version: 1\nmodel: {{path: {pt2}}}\noutput: {tmp_path / 'run'}\n"
        "steps:\n  - step: convert\n  - step: export-tflite\n"
    )
    commands = [
        ["inspect", pt2],
        ["convert", pt2, "-o", onnx],
        ["validate", pt2, onnx, "--inputs", test_npz],
        ["quantize", onnx, "-o", str(q), "--mode", "static", "--calibration", calib],
        ["test", onnx, "--input", str(one)],
        ["benchmark", str(q), "--batch-sizes", "1", "--threads", "1"],
        ["report", str(q), "-o", str(tmp_path / "report.html")],
        ["export", "docker", pt2, "-o", str(tmp_path / "docker")],
        ["export", "torchserve", pt2, "-o", str(tmp_path / "ts")],
        ["export", "tflite", pt2, "-o", str(tmp_path / "tflite"), "--variant", "fp32",
         "--variant", "int8", "--calibration", calib],
        ["run", str(workflow)],
    ]  # fmt: skip
    logs = tmp_path / "logs"
    noisy: dict[str, list[str]] = {}
    for args in commands:
        r = cli(*args, logs=logs)
        assert r.returncode == 0, f"{args[0]}: {r.stderr[-2000:]}"
        assert r.stdout.strip(), f"{args[0]} printed nothing"
        if framework_lines(r):
            noisy[" ".join(args[:2])] = framework_lines(r)
    assert not noisy, f"framework output on the terminal: {noisy}"
    # Captured, not lost: the TFLite converter's and interpreter's chatter is in the step logs.
    logged = "".join(p.read_text() for p in logs.glob("*export-tflite*.log"))
    logged += "".join(p.read_text() for p in (tmp_path / "run" / "digits_cnn" / "logs").glob("*"))
    assert FRAMEWORK_LINE.search(logged), "the step logs hold no framework output"


def test_verbose_lets_the_framework_output_through(sample_dir, tmp_path):
    r = cli(
        "--verbose", "export", "tflite", str(sample_dir / "digits_cnn.pt2"),
        "-o", str(tmp_path / "tflite"), "--variant", "fp32", logs=tmp_path / "logs",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert framework_lines(r), "--verbose showed no framework output"
    assert not list((tmp_path / "logs").glob("*.log"))
