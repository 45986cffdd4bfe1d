"""Graph insight's per-node figures (issue 16): INT8 and FP16 error per node, time per node."""

from __future__ import annotations

import numpy as np
import pytest

from tests.workflows import model_factory as mf
from tests.workflows.insight_check import check_int8_errors
from workflows.data import load_dataset
from workflows.formats import load_model
from workflows.insight.node_errors import node_errors
from workflows.insight.node_times import node_times
from workflows.quantization.quantizers import convert_fp16, quantize_static_qdq


@pytest.fixture(scope="module")
def sample(tmp_path_factory, sample_dir):
    """The sample as ONNX, its static INT8 (QDQ) and FP16 variants, and 64 test digits."""
    from workflows.steps.convert import convert_model

    folder = tmp_path_factory.mktemp("insight")
    fp32 = folder / "digits.onnx"
    convert_model(load_model(sample_dir / "digits_cnn.pt2"), fp32)
    specs = load_model(fp32).inputs
    calibration = load_dataset(sample_dir / "digits_calibration.npz", specs)
    quantize_static_qdq(fp32, folder / "int8.onnx", calibration)
    convert_fp16(fp32, folder / "fp16.onnx")
    data = load_dataset(sample_dir / "digits_test.npz", specs).take(64)
    return {"fp32": fp32, "int8": folder / "int8.onnx", "fp16": folder / "fp16.onnx", "data": data}


def test_int8_error_per_node_is_qdq_loss_debugs(sample, tmp_path):
    result = node_errors(sample["fp32"], sample["int8"], sample["data"], tmp_path / "w")
    assert result["kind"] == "int8" and result["samples"] == 32
    rows = {r["node"]: r for r in result["nodes"]}
    assert list(rows)[:4] == ["node_conv2d", "node_relu", "node_conv2d_1", "node_relu_1"]
    assert check_int8_errors(result, sample["fp32"], sample["int8"], sample["data"], tmp_path) == 9
    # Each Conv/Gemm carries its Relu's output (the quantizer folds the pair into one kernel)
    # and its weight's SQNR. Measured: local 45.8 / 42.9 / 49.1 / 43.2 dB, weights 34-47 dB.
    for conv, relu in (("node_conv2d", "node_relu"), ("node_linear", "node_relu_2")):
        assert rows[conv]["tensor"] == rows[relu]["tensor"] and rows[conv]["weight_sqnr_db"] > 25
    assert all(r["sqnr_db"] > 30 for r in result["nodes"])  # the sample quantizes well
    assert result["worst"] == min(result["nodes"], key=lambda r: r["sqnr_db"])["node"]


def test_the_outlier_layer_is_the_worst_node(tmp_path):
    path = mf.save_outlier_mlp(tmp_path)
    x_train, x_test = mf.digits_split()[0], mf.digits_split()[1]
    np.savez(tmp_path / "calib.npz", x=x_train[:128])
    np.savez(tmp_path / "test.npz", x=x_test[:64])
    specs = load_model(path).inputs
    quantize_static_qdq(path, tmp_path / "q.onnx", load_dataset(tmp_path / "calib.npz", specs))
    result = node_errors(path, tmp_path / "q.onnx", load_dataset(tmp_path / "test.npz", specs),
                         tmp_path / "w")  # fmt: skip
    rows = {r["node"]: r for r in result["nodes"]}
    assert result["worst"] in ("hidden2_gemm", "hidden2_relu")
    others = [rows[n]["sqnr_db"] for n in ("hidden1_gemm", "output_gemm")]
    assert rows["hidden2_gemm"]["sqnr_db"] < min(others) - 10, rows  # its 32 channels wiped out


def test_fp16_deviation_per_node(sample, tmp_path):
    result = node_errors(sample["fp32"], sample["fp16"], sample["data"], tmp_path / "w")
    assert result["kind"] == "same-graph"
    rows = {r["node"]: r for r in result["nodes"]}
    # Measured: 70.5-74.2 dB on every node (float16's 11-bit mantissa: ~66 dB per rounding).
    assert all(55 < rows[n]["sqnr_db"] < 90 for n in rows), rows
    assert rows["node_conv2d"]["tensor"] == "conv2d"  # its own output: FP16 keeps the Relu


@pytest.fixture(scope="module")
def vgg_onnx(vgg_digits, tmp_path_factory):
    """The VGG-style digits CNN (1.15 M parameters) as ONNX, and 8 of its test images."""
    from workflows.steps.convert import convert_model

    out = tmp_path_factory.mktemp("vgg-onnx") / "vgg.onnx"
    model = load_model(vgg_digits["weights"], model_file=str(vgg_digits["model_file"]),
                       model_class="VGGDigits", input_shapes={"x": [1, 1, 16, 16]})  # fmt: skip
    convert_model(model, out)
    return out, {"x": np.load(vgg_digits["test"])["x"][:8]}


def test_time_per_node_adds_up_to_the_run(vgg_onnx):
    path, feeds = vgg_onnx
    result = node_times(path, feeds, runs=30)
    rows = result["nodes"]
    # Every kernel is a row or inside one; their sum is the run less session.run's own overhead.
    assert result["kernels_ms"] == pytest.approx(sum(r["ms"] for r in rows), rel=1e-3)
    assert 0.8 * result["run_ms"] <= result["kernels_ms"] <= 1.05 * result["run_ms"], result
    import onnx

    source = onnx.load(str(path))
    convs = [n.name for n in source.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    placed = {r["node"] for r in rows} | {f for r in rows for f in r["fused"]}
    assert set(convs) <= placed  # every compute node of the model has its time somewhere
    assert all(r["ms"] >= 0 for r in rows) and max(r["ms"] for r in rows) > 0
    top = max(rows, key=lambda r: r["ms"])
    assert top["op_type"] in ("Conv", "Gemm", "MatMul"), top  # a CNN's time is in its convolutions


def test_cli_lists_the_worst_nodes_and_writes_json(sample, sample_dir, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "insight.json"
    r = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "insight", "--model", str(sample["fp32"]),
         str(sample["int8"]), str(sample["fp16"]), "--data", str(sample_dir / "digits_test.npz"),
         "--runs", "5", "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "int8: worst nodes (32 samples)" in r.stdout and "fp16: worst nodes" in r.stdout
    assert "digits: " in r.stdout and "timed nodes" in r.stdout
    result = json.loads(out.read_text())
    assert [m["name"] for m in result["models"]] == ["digits", "int8", "fp16"]
    assert result["data"] == {"source": str(sample_dir / "digits_test.npz"), "samples": 32,
                              "synthetic": False}  # fmt: skip
    int8, fp16 = result["models"][1]["errors"], result["models"][2]["errors"]
    assert int8["kind"] == "int8" and fp16["kind"] == "same-graph"
    # INT8 loses 20-30 dB more than FP16 on every convolution (measured 42.9-45.8 vs 70.5-72.7).
    for conv in ("node_conv2d", "node_conv2d_1"):
        a = next(n for n in int8["nodes"] if n["node"] == conv)["sqnr_db"]
        b = next(n for n in fp16["nodes"] if n["node"] == conv)["sqnr_db"]
        assert 30 < a < b - 15, (conv, a, b)

    bad = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "insight", str(sample["int8"])],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "--model" in bad.stderr and "Traceback" not in bad.stderr
