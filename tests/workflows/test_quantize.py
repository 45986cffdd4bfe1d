"""Quantize: the sample's static INT8 keeps accuracy and shrinks; fallback rescues a broken model;
bad data gets specific errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.workflows import model_factory as mf
from workflows import present
from workflows.data import Preprocess, load_dataset
from workflows.errors import DataError
from workflows.formats import load_model
from workflows.steps.quantize import QuantizeOptions, quantize_model


@pytest.fixture(scope="module")
def sample_onnx(tmp_path_factory, sample_dir):
    from workflows.steps.convert import convert_model

    out = tmp_path_factory.mktemp("sample") / "digits_cnn.onnx"
    convert_model(load_model(sample_dir / "digits_cnn.pt2"), out)
    return out


def _opts(sample_dir, model, out, **kw):
    base = dict(
        model={"path": str(model)},
        output=str(out),
        calibration=str(sample_dir / "digits_calibration.npz"),
        evaluation=str(sample_dir / "digits_test.npz"),
        labels=str(sample_dir / "labels.txt"),
    )
    return QuantizeOptions(**{**base, **kw})


def test_sample_static_int8_keeps_accuracy_and_shrinks(sample_dir, sample_onnx, tmp_path):
    opts = _opts(sample_dir, sample_onnx, tmp_path / "q", modes=["static", "dynamic", "fp16"])
    report = quantize_model(load_model(sample_onnx), opts)
    fp32 = report["float_model"]["accuracy"]["top1"]
    assert fp32 > 0.97
    static, dynamic, fp16 = report["variants"]
    assert static["name"] == "int8-static"
    assert abs(fp32 - static["accuracy"]["top1"]) * 100 <= 1.0
    assert static["size_ratio"] >= 3.5, static["size_ratio"]
    # 450 labelled digits: "pass" on the CPUs met so far; one whose INT8 flipped a few more could
    # leave the interval reaching past 1 point ("inconclusive"), never "fail".
    gate = static["accuracy"]["gate"]
    assert gate["metric"] == "top1" and gate["samples"] == 450 and gate["decision"] != "fail"
    assert gate["ci_points"][0] <= 0 <= gate["ci_points"][1] + 0.5
    assert dynamic["size_ratio"] >= 3.5
    assert 1.9 <= fp16["size_ratio"] <= 2.1
    assert fp16["accuracy"]["deviation"]["max_abs_error"] < 0.05
    # The static variant really is QDQ INT8 and keeps float32 I/O.
    proto = onnx.load(str(tmp_path / "q" / static["file"]))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    saved = json.loads((tmp_path / "q" / "report.json").read_text())
    assert saved["variants"][0]["size_bytes"] == static["size_bytes"]
    assert not saved["calibration"]["synthetic"] and saved["evaluation"]["labelled"]
    # Where the INT8 figures were measured: INT8 results depend on the CPU's kernels.
    import onnxruntime

    where = saved["measured_on"]
    assert where["onnxruntime"] == onnxruntime.__version__ and where["brand"] in where["label"]
    assert where["int8_dot_product"] == any(
        where[k] for k in ("avx512_vnni", "avx_vnni", "amx_int8", "arm_dotprod")
    )
    assert f"Measured on: {where['label']}." in present.quantize_data_lines(saved)


def test_fallback_rescues_an_outlier_model(tmp_path):
    model_path = mf.save_outlier_mlp(tmp_path)
    _, x_test, _, y_test = mf.digits_split()
    x_train = mf.digits_split()[0]
    np.savez(tmp_path / "calib.npz", x=x_train[:128])
    np.savez(tmp_path / "test.npz", x=x_test, y=y_test)
    common = dict(
        model={"path": str(model_path)},
        calibration=str(tmp_path / "calib.npz"),
        evaluation=str(tmp_path / "test.npz"),
    )

    naive = quantize_model(
        load_model(model_path),
        QuantizeOptions(**common, output=str(tmp_path / "naive"), fallback=False),
    )
    fp32 = naive["float_model"]["accuracy"]["top1"]
    broken = naive["variants"][0]["accuracy"]
    assert fp32 > 0.95
    assert broken["top1"] < 0.5, "the outlier should break naive INT8"
    assert broken["gate"]["passed"] is False

    rescued = quantize_model(
        load_model(model_path), QuantizeOptions(**common, output=str(tmp_path / "rescued"))
    )
    v = rescued["variants"][0]
    assert v["accuracy"]["gate"]["passed"] is True
    assert (fp32 - v["accuracy"]["top1"]) * 100 <= 1.0
    assert v["excluded_nodes"] == ["hidden2_relu", "hidden2_gemm", "output_gemm"]
    search = v["fallback"]
    assert search["outcome"] == "passed"
    # The knobs came first (every layer INT8) and none fixed an activation outlier; then one
    # culprit: the first ranked was the right one.
    whats = [t["what"] for t in search["tries"]]
    assert whats[0] == "as asked" and "per-channel weights" in whats
    assert {"entropy calibration", "percentile calibration"} <= set(whats)
    assert all(t["gate"]["decision"] == "fail" for t in search["tries"][:-1])
    assert search["chosen"] == len(whats) - 1 and whats[-1] == "3 node(s) in float"
    assert len(search["culprits"]) == 1
    worst = search["culprits"][0]
    assert worst["tensor"] == "h2r" and worst["kind"] == "activation"
    assert worst["sqnr_db"] < 5
    assert 0 < v["int8_fraction"] < 1  # the first layer still runs INT8
    cost = search["cost"]
    assert cost["after"]["size_bytes"] > cost["before"]["size_bytes"]  # float weights are bigger
    assert cost["after"]["size_bytes"] == v["size_bytes"]
    assert cost["before"]["p50_ms"] > 0 and cost["after"]["p50_ms"] > 0
    rows = present.fallback_tries(v).rows
    assert rows[-1][-1] == "yes" and rows[-1][2] == f"{v['int8_fraction']:.0%}"
    assert "kept in float: hidden2_relu, hidden2_gemm, output_gemm" in "\n".join(
        present.fallback_lines(rescued)
    )


def test_a_model_int8_cannot_serve_fails_with_its_closest_try(tmp_path):
    # Only a float Gemm keeps this model's accuracy: 0 % INT8 "passes" the accuracy gate but is
    # not INT8, so the search fails and keeps the closest partial variant (issue #11).
    model_path = mf.save_unquantizable_linear(tmp_path)
    x_train, x_test, _, y_test = mf.digits_split()
    np.savez(tmp_path / "calib.npz", x=mf.with_outlier_column(x_train[:128]))
    np.savez(tmp_path / "test.npz", x=mf.with_outlier_column(x_test), y=y_test)
    report = quantize_model(
        load_model(model_path),
        QuantizeOptions(
            model={"path": str(model_path)},
            output=str(tmp_path / "q"),
            calibration=str(tmp_path / "calib.npz"),
            evaluation=str(tmp_path / "test.npz"),
        ),
    )
    assert report["float_model"]["accuracy"]["top1"] > 0.95
    v = report["variants"][0]
    search = v["fallback"]
    assert search["outcome"] == "failed"
    assert v["accuracy"]["gate"]["decision"] == "fail" and v["accuracy"]["gate"]["passed"] is False
    assert "INT8 cannot meet the accuracy gate" in v["warning"]
    # Float-only tries kept the accuracy, but none may be chosen: the file kept is INT8.
    float_only = [t for t in search["tries"] if t["int8_fraction"] == 0]
    assert float_only and all(t["gate"]["decision"] == "pass" for t in float_only)
    chosen = search["tries"][search["chosen"]]
    assert chosen["int8_fraction"] > 0 and v["int8_fraction"] > 0
    assert chosen["gate"]["drop_points"] == min(
        t["gate"]["drop_points"] for t in search["tries"] if t["int8_fraction"] > 0
    )
    assert "FAILED: INT8 cannot meet the gate" in present.fallback_lines(report)[0]


def test_image_folder_with_preprocessing_matches_arrays(sample_dir, sample_onnx, tmp_path):
    test = np.load(sample_dir / "digits_test.npz")
    folder = mf.save_digit_images(tmp_path / "images", test["x"][:200], test["y"][:200])
    model = load_model(sample_onnx)
    recipe = Preprocess(channels="L", scale=1 / 255)
    data = load_dataset(folder, model.inputs, recipe)
    assert data.x["x"].shape == (200, 1, 8, 8)
    assert sorted(set(data.y.tolist())) == list(range(10))
    assert data.label_names == [str(i) for i in range(10)]
    # PNG rounding to 8 bits only: pixels match the arrays to 1/510.
    by_name = sorted(folder.rglob("*.png"))
    first = int(by_name[0].stem)
    assert np.abs(data.x["x"][0] - test["x"][first]).max() <= 1 / 510 + 1e-6


def test_synthetic_data_is_flagged_and_never_judged(tmp_path):
    # Naive INT8 breaks this model on real data (test_fallback_rescues_an_outlier_model), but on
    # noise nothing can be claimed: figures shown, no pass/fail, no fallback.
    model_path = mf.save_outlier_mlp(tmp_path)
    report = quantize_model(
        load_model(model_path),
        QuantizeOptions(model={"path": str(model_path)}, output=str(tmp_path / "q")),
    )
    assert report["calibration"]["synthetic"] and report["evaluation"]["synthetic"]
    assert (
        "synthetic" in report["warning"] and "no variant is passed or failed" in report["warning"]
    )
    v = report["variants"][0]
    assert v["accuracy"]["gate"]["decision"] == "not judged"
    assert v["accuracy"]["deviation"]["max_abs_error"] > 0  # the figures are still there
    assert v["fallback"] is None and v["excluded_nodes"] == []
    assert "not applied (synthetic" in present.gate_rule(report)


def test_calibration_only_holds_out_real_data_for_the_gate(sample_dir, sample_onnx, tmp_path):
    # The user gave real calibration images and no evaluation data (issue #11's first case): the
    # gate runs on a disjoint held-out part of them, never on noise, and INT8 stays INT8.
    calib = np.load(sample_dir / "digits_test.npz")  # 450 labelled digits
    np.savez(tmp_path / "calib.npz", x=calib["x"])  # unlabelled, as calibration data usually is
    report = quantize_model(
        load_model(sample_onnx),
        QuantizeOptions(
            model={"path": str(sample_onnx)},
            output=str(tmp_path / "q"),
            calibration=str(tmp_path / "calib.npz"),
        ),
    )
    ev = report["evaluation"]
    assert ev["held_out"] and not ev["synthetic"] and not ev["labelled"]
    # Every sample is used: --holdout (half) judges, the other half calibrates.
    assert report["calibration"]["samples"] == 225 and ev["samples"] == 225
    assert "held out from" in ev["source"] and "disjoint from the 225 samples" in ev["source"]
    v = report["variants"][0]
    gate = v["accuracy"]["gate"]
    assert gate["metric"] == "top1_agreement" and gate["samples"] == 225
    assert gate["decision"] in ("pass", "inconclusive")  # 225 samples: a 1-point CI is tight
    assert gate["drop_points"] <= 1.0
    if gate["decision"] == "inconclusive":
        assert gate["samples_needed"] > 225
    assert v["excluded_nodes"] == [] and v["size_ratio"] >= 3.5 and v["int8_fraction"] == 1.0
    assert any("held out from" in line for line in present.quantize_data_lines(report))


def test_holdout_split_is_disjoint_and_seeded(sample_dir, sample_onnx, tmp_path):
    from workflows.data import calibration_and_evaluation

    x = np.load(sample_dir / "digits_test.npz")["x"][:100]
    x = x + np.arange(100, dtype=np.float32)[:, None, None, None]  # every sample unique
    np.savez(tmp_path / "c.npz", x=x)
    opts = QuantizeOptions(model={"path": str(sample_onnx)}, calibration=str(tmp_path / "c.npz"))
    assert opts.holdout == 0.5 and opts.calibration_samples is None  # all, up to the cap
    specs = load_model(sample_onnx).inputs
    args = (opts.calibration, None, specs, None, opts.calibration_samples, None, 0.5, 0)
    calib, evaluation, held_out = calibration_and_evaluation(*args)
    again = calibration_and_evaluation(*args)[0]
    # Fewer than twice --calibration-samples: split by --holdout (half).
    assert held_out and len(calib) == 50 and len(evaluation) == 50

    def ids(d):
        return set(d.x["x"][:, 0, 0, 0].round().astype(int).tolist())

    assert ids(calib).isdisjoint(ids(evaluation)) and len(ids(calib) | ids(evaluation)) == 100
    assert ids(calib) == ids(again)  # seeded


def test_empty_calibration_folder(sample_onnx, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        quantize_model(
            load_model(sample_onnx),
            QuantizeOptions(
                model={"path": str(sample_onnx)},
                output=str(tmp_path / "q"),
                calibration=str(tmp_path / "empty"),
            ),
        )
    assert not (tmp_path / "q").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"], "partial output left behind"


def test_mixed_image_sizes_without_resize(sample_onnx, tmp_path):
    from PIL import Image

    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("L", (8, 8)).save(folder / "a.png")
    Image.new("L", (16, 12)).save(folder / "b.png")
    with pytest.raises(
        DataError, match=r"different sizes.*a\.png is 8x8.*b\.png is 16x12.*--resize"
    ):
        load_dataset(folder, load_model(sample_onnx).inputs, Preprocess(channels="L"))
    resized = load_dataset(
        folder, load_model(sample_onnx).inputs, Preprocess(channels="L", size=[8, 8])
    )
    assert resized.x["x"].shape == (2, 1, 8, 8)


def test_labels_that_do_not_match_the_output_width(sample_onnx, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    np.savez(tmp_path / "eval.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(DataError, match="3 classes but the model outputs 10 scores"):
        quantize_model(
            load_model(sample_onnx),
            QuantizeOptions(
                model={"path": str(sample_onnx)},
                output=str(tmp_path / "q"),
                evaluation=str(tmp_path / "eval.npz"),
                labels=str(labels),
            ),
        )


def test_non_float_model_asked_for_fp16(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "ints",
        [
            helper.make_tensor_value_info("a", TensorProto.INT64, ["batch", 3]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["batch", 3]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.INT64, ["batch", 3])],
    )
    path = tmp_path / "ints.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(DataError, match="no float32 weights or inputs"):
        quantize_model(
            load_model(path),
            QuantizeOptions(model={"path": str(path)}, output=str(tmp_path / "q"), modes=["fp16"]),
        )


def test_data_shape_mismatch_is_explained(sample_onnx, tmp_path):
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match="samples are 3x8x8 but input 'x' expects 1x8x8"):
        load_dataset(tmp_path / "wrong.npy", load_model(sample_onnx).inputs)
