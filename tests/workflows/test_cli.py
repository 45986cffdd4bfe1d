"""dockyard-cli on the bundled sample: inspect, convert, validate; JSON and readable output."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_sample_inspect_convert_validate(sample_dir, tmp_path):
    pt2 = sample_dir / "digits_cnn.pt2"
    r = cli("inspect", str(pt2), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["model"]["format"] == "exported_program"
    meta = json.loads((sample_dir / "sample.json").read_text())
    assert info["model"]["parameters"] == meta["parameters"] == 71_754
    assert info["model"]["inputs"][0]["shape"][1:] == [1, 8, 8]

    out = tmp_path / "digits.onnx"
    r = cli("convert", str(pt2), "--to", "onnx", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    converted = json.loads(r.stdout)
    assert converted["output"] == str(out) and out.is_file()
    assert converted["opset"] == 18

    # The converted model keeps the sample's accuracy on its held-back test split.
    data = np.load(sample_dir / "digits_test.npz")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"x": data["x"]})[0]
    accuracy = float((logits.argmax(1) == data["y"]).mean())
    expected = meta["test_accuracy"]
    assert abs(accuracy - expected) < 1e-3 and accuracy > 0.95

    r = cli(
        "validate", str(pt2), str(out), "--inputs", str(sample_dir / "digits_test.npz"), "--json"
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["passed"] and not report["synthetic_inputs"]
    (only,) = report["trials"][0]["outputs"]
    assert only["candidate_shape"] == [450, 10]
    assert only["max_abs_error"] < 1e-4
    assert only["top1_agreement"] == 1.0

    r = cli("validate", str(pt2), str(out))
    assert r.returncode == 0
    assert "PASS" in r.stdout and "batch 7" in r.stdout and "synthetic" in r.stdout


def test_validate_fails_beyond_tolerance(sample_dir, tmp_path):
    out = tmp_path / "digits.onnx"
    assert cli("convert", str(sample_dir / "digits_cnn.pt2"), "-o", str(out)).returncode == 0
    r = cli("validate", str(sample_dir / "digits_cnn.pt2"), str(out), "--atol", "0", "--rtol", "0")
    assert r.returncode == 1
    assert "FAIL" in r.stdout


def test_eager_sample_with_model_file(sample_dir):
    r = cli(
        "inspect",
        str(sample_dir / "digits_cnn.safetensors"),
        "--model-file",
        str(sample_dir / "digits_cnn.py"),
        "--input-shape",
        "x=1x1x8x8",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["model"]["format"] == "pytorch_eager"
    assert info["model"]["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    assert info["op_histogram"] == {
        "Conv2d": 2,
        "ReLU": 3,
        "MaxPool2d": 1,
        "Flatten": 1,
        "Linear": 2,
    }


def test_convert_failure_leaves_no_file_and_keeps_the_old_one(tmp_path, sample_dir):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"a good earlier model")
    # TorchScript without --input-shape cannot be exported: a clear error, nothing replaced.
    import torch

    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.l(x)

    ts = tmp_path / "lin.pt"
    torch.jit.save(torch.jit.trace(Lin(), torch.randn(1, 3)), str(ts))
    r = cli("convert", str(ts), "-o", str(out))
    assert r.returncode == 1
    assert "--input-shape" in r.stderr
    assert out.read_bytes() == b"a good earlier model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lin.pt", "model.onnx"]


def test_quantize_cli(sample_dir, tmp_path):
    r = cli(
        "quantize",
        str(sample_dir / "digits_cnn.pt2"),
        "-o",
        str(tmp_path / "q"),
        "--calibration",
        str(sample_dir / "digits_calibration.npz"),
        "--evaluation",
        str(sample_dir / "digits_test.npz"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    (static,) = report["variants"]
    assert static["size_ratio"] >= 3.5
    assert report["float_model"]["accuracy"]["top1"] - static["accuracy"]["top1"] <= 0.01
    assert (tmp_path / "q" / "digits_cnn.int8-static.onnx").is_file()

    (tmp_path / "no_images").mkdir()
    r = cli(
        "quantize",
        str(sample_dir / "digits_cnn.pt2"),
        "-o",
        str(tmp_path / "q2"),
        "--calibration",
        str(tmp_path / "no_images"),
    )
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "no images found" in r.stderr
    assert not (tmp_path / "q2").exists()


def test_export_docker_cli(sample_dir, tmp_path):
    r = cli(
        "export",
        "docker",
        str(sample_dir / "digits_cnn.pt2"),
        "-o",
        str(tmp_path / "ctx"),
        "--name",
        "Digits CNN",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["model_name"] == "digits-cnn"
    assert result["smoke_test"]["passed"] is True
    assert "Dockerfile" in result["files"] and "server/app.py" in result["files"]


def test_export_torchserve_cli_error_is_one_line(sample_dir, tmp_path):
    # Eager weights without their module: the same specific error as everywhere else.
    r = cli(
        "export",
        "torchserve",
        str(sample_dir / "digits_cnn.safetensors"),
        "-o",
        str(tmp_path / "ts"),
    )
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "--model-file" in r.stderr
    assert not (tmp_path / "ts").exists()
