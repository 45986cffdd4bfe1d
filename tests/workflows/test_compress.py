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
         "methods": ["sparsity", "cluster"], "evaluation": TEST, "sparsity": 0.6},
        Progress(),
    )  # fmt: skip
    sparse, clustered = r["variants"]
    assert r["figure_name"] == "top-1 %" and r["original"]["figure"] == pytest.approx(98.44, 0.01)
    # The target is met (measured: 74 % zeros, the least sensitive allocation reaching 60 %) and
    # top-1 holds (98.44 % as before; with 450 samples the gate's interval stays inconclusive).
    assert sparse["outcome"].startswith("target") and sparse["sparsity"] >= 0.6
    assert sparse["accuracy"]["gate"]["decision"] != "fail"
    assert r["original"]["figure"] - sparse["accuracy"]["figure"] <= 0.5
    assert sparse["zip_ratio"] >= 2.5  # measured 3.25x
    assert clustered["accuracy"]["gate"]["decision"] == "pass"
    assert clustered["zip_ratio"] >= 3.5  # measured 5.24x: 16 shared values per layer
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


def test_a_target_the_gate_cannot_take_falls_back_to_what_passes(tmp_path):
    r = compress.run(
        {"model": {"path": str(SAMPLE / "digits_cnn.pt2")}, "output": str(tmp_path / "c"),
         "evaluation": TEST, "sparsity": 0.97, "max_accuracy_drop": 0.5},
        Progress(),
    )  # fmt: skip
    v = r["variants"][0]
    assert v["tries"][0]["decision"] == "fail" and v["tries"][0]["sparsity"] >= 0.95
    assert v["outcome"].startswith("below target")
    assert v["accuracy"]["gate"]["decision"] != "fail"
    assert v["sparsity"] < v["tries"][0]["sparsity"]


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


@pytest.fixture(scope="module")
def vgg_digits(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "benchmarks" / "models"))
    from vgg_digits import train

    return train(tmp_path_factory.mktemp("vgg"))


def test_real_cnn_clustered_is_5x_smaller_zipped_and_one_shot_80_percent_is_refused(
    vgg_digits, tmp_path
):
    """Issue 15's acceptance on the 1.15 M-parameter CNN (500 held-out digits). Clustering to 16
    values per layer keeps top-1 (99.4 vs 99.6 %) at 5.4x smaller zipped. One-shot magnitude
    pruning does not hold at 80 % here: each layer alone loses 1-12 points at 80 %, all together
    fall to 12 % top-1; the search says so and keeps the most pruned model that passes
    (measured on an AMD EPYC with AVX-512 VNNI)."""
    model = {"path": str(vgg_digits["weights"]), "model_file": str(vgg_digits["model_file"]),
             "model_class": "VGGDigits", "input_shapes": {"x": [1, 1, 16, 16]}}  # fmt: skip
    r = compress.run(
        {"model": model, "output": str(tmp_path / "c"), "evaluation": str(vgg_digits["test"]),
         "sparsity": 0.8, "evaluation_samples": None, "methods": ["cluster", "sparsity"]},
        Progress(),
    )  # fmt: skip
    clustered, sparse = r["variants"]
    assert r["evaluation"]["samples"] == 500
    assert clustered["zip_ratio"] >= 4.0
    assert clustered["accuracy"]["gate"]["decision"] != "fail"
    assert r["original"]["figure"] - clustered["accuracy"]["figure"] <= 1.0
    assert sparse["tries"][0]["sparsity"] >= 0.8 and sparse["tries"][0]["decision"] == "fail"
    assert sparse["outcome"].startswith("below target")
    assert sparse["accuracy"]["gate"]["decision"] == "pass"
    # Measured, not assumed: ONNX Runtime runs it dense, so p50 stays within noise of the original.
    ratio = r["original"]["latency"]["p50_ms"] / clustered["latency"]["p50_ms"]
    assert 0.5 < ratio < 2.0
