"""Weight compression for size (issue 15, item 3): magnitude sparsity and clustering chosen per
layer by sensitivity, sizes zipped, speed measured, the accuracy gate kept."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, SAMPLE
from workflows.compression import weights as W
from workflows.errors import DataError
from workflows.progress import Progress
from workflows.steps import compress

TEST = str(SAMPLE / "digits_test.npz")
CALIBRATION = str(SAMPLE / "digits_calibration.npz")


def test_magnitude_pruning_zeroes_exactly_the_smallest():
    w = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    p = W.magnitude_prune(w, 0.8)
    assert p.dtype == np.float32 and p.shape == w.shape
    assert np.sum(p == 0) == round(0.8 * w.size)
    kept = np.abs(w[p != 0])
    assert kept.min() >= np.abs(w[p == 0]).max()  # every kept weight outweighs every zeroed one
    assert np.array_equal(p[p != 0], w[p != 0])


def test_clustering_leaves_k_values_each_the_nearest_centre():
    w = np.random.default_rng(1).normal(size=(128, 64)).astype(np.float32)
    c = W.cluster(w, 16, seed=0)
    centres = np.unique(c)
    assert centres.size == 16 and c.dtype == np.float32
    nearest = centres[np.abs(w[..., None] - centres).argmin(-1)]
    assert np.array_equal(c, nearest)
    assert np.abs(c - w).mean() < 0.1 * np.abs(w).mean()  # 16 values fit a normal closely


def test_sample_compresses_by_sensitivity_within_the_gate(tmp_path):
    r = compress.run(
        {"model": {"path": str(SAMPLE / "digits_cnn.pt2")}, "output": str(tmp_path / "c"),
         "methods": ["sparsity", "cluster"], "evaluation": TEST, "sparsity": 0.8,
         "calibration": CALIBRATION},
        Progress(),
    )  # fmt: skip
    sparse, clustered = r["variants"]
    assert r["figure_name"] == "top-1 %" and r["original"]["figure"] == pytest.approx(98.44, 0.01)
    # 80 % zeros, the remaining weights re-solved on the calibration digits: top-1 unchanged
    # (measured 98.44 %; without reconstruction 80 % fails the gate, see the next test).
    assert sparse["reconstructed"] and not clustered["reconstructed"]
    assert sparse["outcome"] == "target met" and sparse["sparsity"] >= 0.8
    assert sparse["accuracy"]["gate"]["decision"] == "pass"
    assert r["original"]["figure"] - sparse["accuracy"]["figure"] <= 0.5
    assert sparse["zip_ratio"] >= 3.0  # measured 3.64x
    assert clustered["accuracy"]["gate"]["decision"] == "pass"
    assert clustered["zip_ratio"] >= 3.5  # measured 5.24x: 16 shared values per layer
    assert r["calibration"]["samples"] == 256 and not r["calibration"]["synthetic"]
    # Each layer's choice is in the report with its sensitivity at every level.
    layer = sparse["layers"][0]
    assert set(layer["sensitivity"]) == {str(s) for s in W.SPARSITY_LEVELS}
    assert layer["level"] in W.SPARSITY_LEVELS
    # What is written is what was judged: the sparse file holds those zeros and that accuracy.
    import onnxruntime as ort

    folder = tmp_path / "c"
    sess = ort.InferenceSession(str(folder / sparse["file"]), providers=["CPUExecutionProvider"])
    data = np.load(TEST)
    top1 = np.mean(sess.run(None, {sess.get_inputs()[0].name: data["x"]})[0].argmax(1) == data["y"])
    assert 100 * top1 == pytest.approx(sparse["accuracy"]["figure"], abs=1e-6)
    from workflows.formats.onnx_format import read_proto

    proto = read_proto(folder / sparse["file"])
    assert W.sparsity_of(proto, W.weight_layers(proto)) == pytest.approx(sparse["sparsity"], 1e-3)
    # Speed is measured for both, and no speed-up is claimed for dense runtimes.
    assert sparse["latency"]["p50_ms"] > 0 and r["original"]["latency"]["p50_ms"] > 0
    assert "dense" in r["runtime_note"]
    saved = json.loads((folder / "report.json").read_text())
    assert saved["variants"][0]["tries"] == sparse["tries"]


def test_without_reconstruction_a_target_the_gate_cannot_take_falls_back(tmp_path):
    r = compress.run(
        {"model": {"path": str(SAMPLE / "digits_cnn.pt2")}, "output": str(tmp_path / "c"),
         "evaluation": TEST, "sparsity": 0.8},
        Progress(),
    )  # fmt: skip
    v = r["variants"][0]
    assert not v["reconstructed"]  # no calibration data: the kept weights stay as they were
    assert v["tries"][0]["sparsity"] >= 0.8 and v["tries"][0]["decision"] == "fail"
    assert v["outcome"].startswith("below target")
    assert v["accuracy"]["gate"]["decision"] != "fail"
    assert 0.4 < v["sparsity"] < v["tries"][0]["sparsity"]  # measured 77.9 %
    # The search tried targets below 80 % by halving the interval.
    assert [t["target"] for t in v["tries"]][:2] == [0.8, 0.4]


def test_bad_requests_are_refused_before_any_work(tmp_path):
    model = {"path": str(SAMPLE / "digits_cnn.pt2")}
    with pytest.raises(DataError, match="between 0 and 1"):
        compress.run({"model": model, "output": str(tmp_path / "a"), "sparsity": 1.0}, Progress())
    with pytest.raises(DataError, match="2 or more"):
        compress.run({"model": model, "output": str(tmp_path / "b"), "clusters": 1}, Progress())
    with pytest.raises(DataError, match="nothing to compress"):
        compress.run({"model": model, "output": str(tmp_path / "c"), "min_weights": 10**9},
                     Progress())  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_cli_compress(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "compress", str(SAMPLE / "digits_cnn.pt2"),
         "--sparsity", "0.8", "--calibration", CALIBRATION, "--evaluation", TEST,
         "-o", str(tmp_path / "s"), "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    sparse = json.loads(r.stdout)["variants"][0]
    assert sparse["reconstructed"] and sparse["sparsity"] >= 0.8
    out = tmp_path / "c"
    r = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "compress", str(SAMPLE / "digits_cnn.pt2"),
         "--method", "cluster", "--clusters", "8", "--evaluation", TEST, "-o", str(out),
         "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    v = result["variants"][0]
    assert v["method"] == "cluster" and all(layer["level"] in (0, 256, 64, 32, 16, 8)
                                            for layer in v["layers"])  # fmt: skip
    assert (out / "digits_cnn.clustered.onnx").is_file()


def test_real_cnn_at_80_percent_sparsity_is_3x_smaller_zipped_within_the_gate(vgg_digits, tmp_path):
    """Issue 15's acceptance on the 1.15 M-parameter CNN (500 held-out digits): 80 % zeros, each
    layer's share by sensitivity, the kept weights re-solved on 256 unlabelled training digits.
    Measured (AMD EPYC with AVX-512 VNNI): 80.3 % zeros, top-1 99.6 -> 99.4 % (one digit; the
    1-point gate's interval stays inconclusive at 500 samples), 3.77x smaller zipped; without
    reconstruction, 80 % drops top-1 to 8 %."""
    model = {"path": str(vgg_digits["weights"]), "model_file": str(vgg_digits["model_file"]),
             "model_class": "VGGDigits", "input_shapes": {"x": [1, 1, 16, 16]}}  # fmt: skip
    r = compress.run(
        {"model": model, "output": str(tmp_path / "c"), "evaluation": str(vgg_digits["test"]),
         "calibration": str(vgg_digits["train"]), "sparsity": 0.8, "evaluation_samples": None},
        Progress(),
    )  # fmt: skip
    v = r["variants"][0]
    assert r["evaluation"]["samples"] == 500 and v["reconstructed"]
    assert v["outcome"].startswith("target") and v["sparsity"] >= 0.8
    assert v["accuracy"]["gate"]["decision"] != "fail"
    assert r["original"]["figure"] - v["accuracy"]["figure"] <= 0.6
    assert v["zip_ratio"] >= 3.0
    # Measured, not assumed: ONNX Runtime runs it dense, so p50 stays within noise of the original.
    ratio = r["original"]["latency"]["p50_ms"] / v["latency"]["p50_ms"]
    assert 0.5 < ratio < 2.0


@pytest.mark.parametrize("strides,pads,dilations", [([1, 1], [1, 1, 1, 1], [1, 1]),
                                                    ([2, 1], [0, 2, 1, 0], [2, 1])])  # fmt: skip
def test_reconstruction_sees_what_the_convolution_multiplies_and_keeps_its_output(
    strides, pads, dilations
):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(24, 6, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=strides, pads=pads,
                            dilations=dilations)  # fmt: skip
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6, 11, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (layer,) = W.weight_layers(proto)
    assert layer.reconstructible and layer.input == "x"
    # Correlated inputs, as real activations are (white noise would leave nothing to re-solve):
    # six channels mixed from two, each spatially smooth.
    z = np.cumsum(np.cumsum(rng.normal(size=(8, 2, 11, 9)), axis=2), axis=3)
    x = np.einsum("cd,ndhw->nchw", rng.normal(size=(6, 2)), z).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0]  # N, O, Ho, Wo
    # The patches times the weight matrix are the convolution, position for position.
    patches = W._patches(layer, x)
    assert np.allclose(patches @ W.matrix(layer, w).T, y.transpose(0, 2, 3, 1).reshape(-1, 24),
                       atol=1e-4)  # fmt: skip
    assert np.array_equal(W.layer_input(proto, layer, [{"x": x}]), x)
    # At 80 % zeros, re-solving the kept weights leaves far less output error than dropping.
    h = W.gram(layer, x)
    rebuilt, dropped = W.reconstruct(layer, w, h, 0.8), W.magnitude_prune(w, 0.8)
    # Reconstruction prunes every output row alike; plain magnitude pruning ranks the layer.
    assert np.sum(W.matrix(layer, rebuilt) == 0, axis=1).tolist() == [round(0.8 * 54)] * 24
    assert np.sum(dropped == 0) == round(0.8 * w.size)
    error = {name: np.linalg.norm(patches @ W.matrix(layer, p).T - patches @ W.matrix(layer, w).T)
             for name, p in (("rebuilt", rebuilt), ("dropped", dropped))}  # fmt: skip
    assert error["rebuilt"] < 0.9 * error["dropped"]


def test_a_workflow_compresses_reports_and_charts_the_variants(tmp_path):
    from workflows import handoff
    from workflows.options import LoadOptions
    from workflows.workflow import Step, Workflow, run_workflow

    wf = Workflow(
        LoadOptions(path=str(SAMPLE / "digits_cnn.pt2")),
        [Step("compress", {"methods": ["sparsity", "cluster"], "calibration": CALIBRATION,
                           "evaluation": TEST}), Step("report", {})],
        str(tmp_path / "run"),
    )  # fmt: skip
    compressed, report = (s["result"] for s in run_workflow(wf)["steps"])
    assert report["sections"] == ["compress"]
    page = (tmp_path / "run" / "digits_cnn" / "report.html").read_text()
    assert "<h2>Weights for size</h2>" in page and "<h2>Trade-off</h2>" in page
    found = handoff.points({"compress": compressed})
    assert [p.name for p in found] == ["fp32", "sparse (zipped)", "clustered (zipped)"]
    sparse = found[1]
    assert sparse.size_bytes == compressed["variants"][0]["zip_bytes"] < found[0].size_bytes
    assert sparse.top1 == pytest.approx(compressed["variants"][0]["accuracy"]["figure"] / 100)
    cards = handoff.cards({"compress": compressed}, tmp_path / "run" / "digits_cnn")
    assert [c.title for c in cards] == ["sparse weights", "clustered weights"]
    assert "reconstructed" in cards[0].what and "zipped" in cards[0].what
