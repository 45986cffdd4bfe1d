"""TFLite bundle: every variant runs in ai-edge-litert and is checked against the original.

The sample (PyTorch) goes PyTorch -> ONNX -> onnx2tf (its own environment, created on first use
under the tools cache) -> SavedModel -> TFLiteConverter; Keras goes straight to TFLiteConverter.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.workflows import model_factory as mf
from workflows.errors import ExportError
from workflows.exporters.tflite_bundle import TFLiteExportOptions, export_tflite, read_metadata
from workflows.formats import load_model
from workflows.resources import resource

SAMPLE = resource("sample")


@pytest.fixture(scope="module")
def sample_bundle(tmp_path_factory, sample_dir):
    out = tmp_path_factory.mktemp("tflite") / "digits"
    result = export_tflite(
        TFLiteExportOptions(
            model={"path": str(sample_dir / "digits_cnn.pt2")},
            output=str(out),
            calibration=str(sample_dir / "digits_calibration.npz"),
            evaluation=str(sample_dir / "digits_test.npz"),
            labels=str(sample_dir / "labels.txt"),
            preprocess={"channels": "L", "scale": 1 / 255},
            description="8x8 digits",
        )
    )
    return out, result


@pytest.fixture(scope="module")
def sample_onnx(tmp_path_factory, sample_dir):
    """The sample converted to ONNX, as a workflow's convert step leaves it."""
    from workflows.runner import run_step

    onnx = tmp_path_factory.mktemp("converted") / "digits.onnx"
    run_step("convert", {"model": {"path": str(sample_dir / "digits_cnn.pt2")},
                         "output": str(onnx)}, timeout=300)  # fmt: skip
    return onnx


def test_sample_variants_meet_their_limits(sample_bundle):
    _, result = sample_bundle
    v = {x["variant"]: x for x in result["variants"]}
    assert list(v) == ["fp32", "fp16", "dynamic", "int8"]
    assert result["validation_data"] == {
        "source": result["validation_data"]["source"],
        "synthetic": False,
        "samples": 450,
        "held_out": False,
    }
    assert v["fp32"]["validation"]["max_abs_error"] <= 1e-4
    assert v["fp16"]["validation"]["relative_error"] <= 1e-2
    assert v["fp32"]["validation"]["passed"] and v["fp16"]["validation"]["passed"]
    for lossy in ("int8", "dynamic"):
        # The accuracy gate on 450 labelled digits: top-1 drop and its paired interval.
        gate = v[lossy]["validation"]["gate"]
        assert gate["metric"] == "top1" and gate["samples"] == 450
        assert gate["drop_points"] <= 1.0 and gate["decision"] != "fail", gate
        assert v[lossy]["validation"]["top1_agreement"] >= 0.97
    assert result["passed"]
    # Sizes: fp16 about half, int8 about a quarter of fp32.
    assert 0.45 < v["fp16"]["size_bytes"] / v["fp32"]["size_bytes"] < 0.55
    assert v["int8"]["size_bytes"] / v["fp32"]["size_bytes"] < 0.3
    assert result["input_layout"] == "NHWC"  # onnx2tf moved the channels last
    where = result["manifest"]["measured_on"]  # the INT8 figures' machine, in the manifest too
    assert where == result["measured_on"] and "ONNX Runtime" in where["label"]


def test_int8_accuracy_on_the_test_split_in_litert(sample_bundle, sample_dir):
    """Independent of the exporter's own check: run the shipped INT8 file on the 450 digits."""
    from ai_edge_litert.interpreter import Interpreter

    out, _ = sample_bundle
    test = np.load(sample_dir / "digits_test.npz")
    x = test["x"].transpose(0, 2, 3, 1).copy()
    interp = Interpreter(model_path=str(out / "digits-cnn.int8.tflite"))
    detail = interp.get_input_details()[0]
    interp.resize_tensor_input(detail["index"], list(x.shape), strict=True)
    interp.allocate_tensors()
    interp.set_tensor(detail["index"], x)
    interp.invoke()
    int8_pred = interp.get_tensor(interp.get_output_details()[0]["index"]).argmax(1)
    original = load_model(sample_dir / "digits_cnn.pt2")
    from workflows.formats import by_name

    ref_pred = by_name(original.format).session(original)({"x": test["x"]})[0].argmax(1)
    assert np.mean(int8_pred == ref_pred) >= 0.95
    assert np.mean(int8_pred == test["y"]) >= 0.95


def test_metadata_embedded_and_bundle_files(sample_bundle):
    out, _ = sample_bundle
    meta = read_metadata(out / "digits-cnn.int8.tflite")
    assert meta["variant"] == "int8" and meta["labels"] == [str(i) for i in range(10)]
    assert meta["normalization"]["scale"] == pytest.approx(1 / 255)
    assert meta["description"] == "8x8 digits" and len(meta["source"]["sha256"]) == 64
    bundle = json.loads((out / "metadata.json").read_text())
    assert bundle["input"]["layout"] == "NHWC" and len(bundle["variants"]) == 4
    assert (out / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["step"] for s in manifest["steps"]] == ["convert", "onnx2tf", "export"]
    assert set(manifest["validation"]["variants"]) == {"fp32", "fp16", "dynamic", "int8"}
    readme = (out / "README.md").read_text()
    assert "NHWC" in readme and "pass" in readme and "infer.py" in readme
    assert "Measured on: " in readme and "ONNX Runtime" in readme


def test_infer_script_runs(sample_bundle):
    out, _ = sample_bundle
    r = subprocess.run(
        [
            sys.executable,
            "infer.py",
            "sample_input.npy",
            "--model",
            "digits-cnn.int8.tflite",
            "--top-k",
            "2",
        ],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    expected = str(int(np.load(out / "sample_output.npy").argmax()))
    assert r.stdout.strip().splitlines()[-1].startswith(expected + " ")


def test_keras_to_tflite_without_onnx2tf(tmp_path):
    model_path = mf.save_keras(tmp_path)
    result = export_tflite(
        TFLiteExportOptions(
            model={"path": str(model_path)},
            output=str(tmp_path / "bundle"),
            variants=["fp32", "fp16"],
        )
    )
    v = {x["variant"]: x for x in result["variants"]}
    assert result["input_layout"] == "original"
    assert v["fp32"]["validation"]["max_abs_error"] <= 1e-4
    assert v["fp16"]["validation"]["relative_error"] <= 1e-2
    assert result["validation_data"]["synthetic"] is True
    assert [s["step"] for s in result["manifest"]["steps"]] == ["keras.Model.export", "export"]


def test_tflite_source_is_refused_and_nothing_written(tmp_path):
    path = mf.save_tflite(tmp_path)
    with pytest.raises(ExportError, match="already TFLite"):
        export_tflite(TFLiteExportOptions(model={"path": str(path)}, output=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.glob(".b*"))


def test_savedmodel_to_tflite_with_int8(tmp_path):
    path = mf.save_savedmodel(tmp_path)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.standard_normal((32, 8, 8, 3)).astype(np.float32))
    result = export_tflite(
        TFLiteExportOptions(
            model={"path": str(path)},
            output=str(tmp_path / "b"),
            variants=["fp32", "int8"],
            calibration=str(tmp_path / "calib.npy"),
        )
    )
    v = {x["variant"]: x for x in result["variants"]}
    assert result["manifest"]["steps"][0]["step"] == "export"  # straight from the SavedModel
    assert v["fp32"]["validation"]["max_abs_error"] <= 1e-4
    # No evaluation data: the gate ran on 16 of the 32 calibration samples held out, too few to
    # decide a 1-point drop; inconclusive is reported and does not fail the export.
    gate = v["int8"]["validation"]["gate"]
    assert result["validation_data"]["held_out"] and result["validation_data"]["samples"] == 16
    assert gate["samples"] == 16 and gate["decision"] in ("pass", "inconclusive"), gate
    assert v["int8"]["validation"]["sqnr_db"] > 20 and result["passed"]
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tmp_path / "b" / v["int8"]["file"]))
    dtypes = {np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    assert "int8" in dtypes  # weights and activations really are int8 inside


def test_without_data_the_quantized_variants_are_not_judged(tmp_path, sample_dir):
    # Noise says nothing about a classifier's task: the dynamic variant's figures are reported,
    # its gate makes no claim, and the export succeeds (it used to fail on "agreement" with noise).
    result = export_tflite(
        TFLiteExportOptions(
            model={"path": str(sample_dir / "digits_cnn.pt2")},
            output=str(tmp_path / "b"),
            variants=["fp32", "dynamic"],
        )
    )
    v = {x["variant"]: x for x in result["variants"]}
    assert result["validation_data"]["synthetic"] and not result["validation_data"]["held_out"]
    assert v["dynamic"]["validation"]["gate"]["decision"] == "not judged"
    assert v["dynamic"]["validation"]["passed"] is None and result["passed"] is True
    assert 0 < v["dynamic"]["validation"]["max_abs_error"] < 1  # the figures are still there
    readme = (tmp_path / "b" / "README.md").read_text()
    assert "accuracy gate: not judged (synthetic)" in readme


def test_onnx2tf_starts_before_the_original_loads_and_dies_with_a_failed_export(
    tmp_path, sample_dir, sample_onnx
):
    """With the ONNX on disk (the workflow's convert output), onnx2tf runs beside the original
    model's loading; an export that fails after starting it leaves no onnx2tf behind."""
    import psutil

    from workflows import toolenv
    from workflows.converters.onnx_tf import Onnx2TF
    from workflows.errors import DockyardError
    from workflows.exporters.tflite_bundle import TFLiteExporter

    onnx = sample_onnx
    toolenv.ensure(toolenv.ONNX2TF)
    opts = TFLiteExportOptions(
        model={"path": str(sample_dir / "digits_cnn.pt2")}, converted=str(onnx), output="x"
    )
    early = TFLiteExporter.start_early(opts, tmp_path)
    assert isinstance(early, Onnx2TF) and early.proc.poll() is None  # running already
    early.close()

    bad = tmp_path / "calibration.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DockyardError):
        export_tflite(
            TFLiteExportOptions(
                model={"path": str(sample_dir / "digits_cnn.pt2")},
                converted=str(onnx),
                output=str(tmp_path / "out"),
                calibration=str(bad),
                variants=["fp32", "int8"],
            )
        )
    leftovers = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "onnx2tf" in " ".join(child.cmdline()) and child.status() != "zombie":
                leftovers.append(child)
    assert leftovers == [] and not (tmp_path / "out").exists()


def test_the_onnx_given_to_onnx2tf_is_left_as_it_was(
    tmp_path, sample_dir, monkeypatch, sample_onnx
):
    """onnx2tf writes its simplified model back over its input: it gets a copy, so a workflow's
    convert output (which the other exports read, maybe side by side) is never changed."""
    import tempfile

    scratch = tmp_path / "tmp"  # this test's own temporary folder: its copy must be gone after
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    onnx = sample_onnx
    before = onnx.read_bytes()
    result = export_tflite(
        TFLiteExportOptions(
            model={"path": str(sample_dir / "digits_cnn.pt2")},
            converted=str(onnx),
            output=str(tmp_path / "out"),
            variants=["fp32"],
        )
    )
    assert result["passed"]
    assert onnx.read_bytes() == before
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("dockyard-onnx2tf-")]


def test_an_onnx_source_is_converted_without_tensorflow_in_the_step(tmp_path, sample_onnx):
    """onnx2tf's environment makes the SavedModel and every variant (INT8's data streamed to
    it): the step's own process never imports TensorFlow, and the INT8 file still holds."""
    out = tmp_path / "b"
    code = (
        "import json, sys\n"
        "from workflows.exporters.tflite_bundle import TFLiteExportOptions, export_tflite\n"
        f"r = export_tflite(TFLiteExportOptions(model={{'path': {str(sample_onnx)!r}}},\n"
        f"    output={str(out)!r}, variants=['fp32', 'int8'],\n"
        f"    calibration={str(SAMPLE / 'digits_calibration.npz')!r},\n"
        f"    evaluation={str(SAMPLE / 'digits_test.npz')!r}))\n"
        "v = {x['variant']: x['validation'] for x in r['variants']}\n"
        "print(json.dumps({'tf': sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "    ('tensorflow', 'keras', 'torch')), 'passed': r['passed'], 'int8': v['int8'],\n"
        "    'fp32': v['fp32'], 'steps': [s['step'] for s in r['manifest']['steps']]}))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["tf"] == []  # neither TensorFlow nor Keras (nor torch: an ONNX source)
    assert got["steps"] == ["onnx2tf", "export"] and got["passed"]
    assert got["fp32"]["max_abs_error"] <= 1e-4
    assert got["int8"]["gate"]["samples"] == 450 and got["int8"]["top1_agreement"] >= 0.97
    assert sorted(p.name for p in out.glob("*.tflite")) == [
        "digits.fp32.tflite",
        "digits.int8.tflite",
    ]


def test_a_variant_failing_in_onnx2tfs_environment_is_reported_and_nothing_is_left(
    tmp_path, sample_onnx
):
    """TFLiteConverter's error inside the tool comes back as the export's error, naming the
    variant; the tool process and its scratch folder are gone after close()."""
    from workflows import toolenv
    from workflows.converters.onnx_tf import Onnx2TF

    tool = Onnx2TF(toolenv.ensure(toolenv.ONNX2TF), sample_onnx, tmp_path / "sm", ("fp32", "int8"))
    try:
        assert tool.variant("fp32")[4:8] == b"TFL3"  # a flatbuffer, TFLite's identifier

        # Representative samples that do not fit the input (25 values, 64 wanted).
        def wrong():
            return ({"x": np.zeros((1, 5, 5, 1), np.float32)} for _ in range(4))

        with pytest.raises(ExportError, match="TFLiteConverter failed for the int8 variant"):
            tool.calibrate("x", wrong)
            tool.variant("int8")
    finally:
        tool.close()
    assert tool.proc.returncode is not None and not tool._scratch.exists()
