"""TF Serving export (issue #14 item 2): a SavedModel whose serving_default has the model's own
input and output names and the original's layout, reproducing the original within 1e-4, read
back from saved_model.pb as TF Serving reads it; models.config parses as TF Serving's own
ModelServerConfig."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper

from workflows import formats, present
from workflows.errors import ExportError
from workflows.exporters.tfserving import TFServingExportOptions, export_tfserving
from workflows.options import LoadOptions

from . import model_factory as mf

model_server_config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
TOLERANCE = 1e-4


def _export(model: Path, out: Path, **opts) -> dict:
    return export_tfserving(
        TFServingExportOptions(model={"path": str(model)}, output=str(out), **opts)
    )


def _signature(folder: Path, name: str):
    import tensorflow as tf

    return tf.saved_model.load(str(folder / name / "1")).signatures["serving_default"]


def _call(signature, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    return {
        k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in feeds.items()}).items()
    }


def _original(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    model = LoadOptions(path=str(path)).load()
    outputs = formats.by_name(model.format).session(model)(feeds)
    return dict(zip([o.name for o in model.outputs], outputs, strict=True))


@pytest.fixture(scope="module")
def digits(tmp_path_factory, sample_dir):
    out = tmp_path_factory.mktemp("tfs") / "digits"
    return out, _export(sample_dir / "digits_cnn.pt2", out)


def test_a_pytorch_model_keeps_its_names_and_nchw_layout(digits, sample_dir):
    out, result = digits
    assert result["inputs"] == ["x"] and result["outputs"] == ["linear_1"]
    assert result["transposed_inputs"] == ["x"] and result["layout"] == "original"
    declared = result["validation"]["signature"]
    assert declared["method_name"] == "tensorflow/serving/predict"
    assert declared["inputs"] == {"x": {"dtype": "float32", "shape": [None, 1, 8, 8]}}
    assert list(declared["outputs"]) == ["linear_1"]
    assert result["validation"]["savedmodel"]["samples"] == 3  # the sample and a batch of two
    assert result["validation"]["hadolint"] == {"ran": True, "findings": []}
    # Loaded as a user would, on real digits in the original's NCHW layout, against PyTorch.
    x = np.load(sample_dir / "digits_test.npz")["x"][:64].astype(np.float32)
    got = _call(_signature(out, "digits-cnn"), {"x": x})
    want = _original(sample_dir / "digits_cnn.pt2", {"x": x})
    assert got.keys() == want.keys() == {"linear_1"}
    assert np.abs(got["linear_1"] - want["linear_1"]).max() <= TOLERANCE
    assert (got["linear_1"].argmax(1) == want["linear_1"].argmax(1)).all()


def test_the_sample_request_and_models_config_are_tf_servings(digits):
    out, result = digits
    config = text_format.Parse(
        (out / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )
    (entry,) = config.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == (
        "digits-cnn", "/models/digits-cnn", "tensorflow"
    )  # fmt: skip
    assert (out / "digits-cnn" / "1" / "saved_model.pb").is_file()
    request = json.loads((out / "sample_request.json").read_text())
    response = json.loads((out / "sample_response.json").read_text())
    feeds = {k: np.asarray(v, np.float32) for k, v in request["inputs"].items()}
    got = _call(_signature(out, "digits-cnn"), feeds)
    assert request["signature_name"] == "serving_default"
    # One output: TF Serving answers with its value, not a map.
    np.testing.assert_allclose(got["linear_1"], np.asarray(response["outputs"]), atol=TOLERANCE)
    dockerfile = (out / "Dockerfile").read_text()
    assert "FROM tensorflow/serving:2.21.0" in dockerfile
    assert "--model_config_file=/models/models.config" in dockerfile
    readme = (out / "README.md").read_text()
    assert "/v1/models/digits-cnn:predict" in readme and "did not start TF Serving" in readme
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["step"] for s in manifest["steps"]] == ["convert", "onnx2tf", "export"]
    lines = present.export_lines(result)
    assert lines[0].startswith("digits-cnn/1/: serving_default takes x and gives linear_1")


def _conv(path: Path) -> Path:
    """x [batch, 3, 8, 8] -> Conv -> y [batch, 4, 8, 8]: an image in, an image out (NCHW)."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input_image", "w"], ["feature_map"], pads=[1, 1, 1, 1])],
        "conv",
        [helper.make_tensor_value_info("input_image", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("feature_map", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_an_nchw_output_is_transposed_back_and_nhwc_can_be_kept(tmp_path):
    path = _conv(tmp_path / "conv.onnx")
    x = np.random.default_rng(2).standard_normal((3, 3, 8, 8)).astype(np.float32)
    want = _original(path, {"input_image": x})["feature_map"]
    result = _export(path, tmp_path / "nchw")
    sig = _signature(tmp_path / "nchw", "conv")
    got = _call(sig, {"input_image": x})["feature_map"]
    assert got.shape == (3, 4, 8, 8) and np.abs(got - want).max() <= TOLERANCE
    assert result["validation"]["signature"]["inputs"]["input_image"]["shape"] == [None, 3, 8, 8]
    # NHWC: onnx2tf's own layout, no transposes; a client sends NHWC and gets NHWC.
    result = _export(path, tmp_path / "nhwc", signature_layout="NHWC")
    assert result["transposed_inputs"] == [] and result["layout"] == "NHWC"
    assert result["validation"]["signature"]["inputs"]["input_image"]["shape"] == [None, 8, 8, 3]
    got = _call(_signature(tmp_path / "nhwc", "conv"), {"input_image": x.transpose(0, 2, 3, 1)})
    assert np.abs(got["feature_map"] - want.transpose(0, 2, 3, 1)).max() <= TOLERANCE


@pytest.mark.parametrize("make", [mf.save_keras, mf.save_savedmodel], ids=["keras", "savedmodel"])
def test_tensorflow_sources_keep_their_own_names(tmp_path, make):
    path = make(tmp_path)
    model = LoadOptions(path=str(path)).load()
    result = _export(path, tmp_path / "out", name="tiny")
    assert result["inputs"] == [s.name for s in model.inputs] == ["image"]
    # Keras: the name of the layer that makes the output, stored in the file (its tensors' own
    # names come from a counter and change between loads); a SavedModel: its signature's.
    if model.format == "keras":
        assert result["outputs"] == [model.native.layers[-1].name]
        assert result["outputs"][0].startswith("dense")
    else:
        assert result["outputs"] == ["output_0"]
    assert result["transposed_inputs"] == []  # NHWC is the model's own layout
    x = np.random.default_rng(3).standard_normal((4, 8, 8, 3)).astype(np.float32)
    got = _call(_signature(tmp_path / "out", "tiny"), {"image": x})
    (want,) = _original(path, {"image": x}).values()
    assert list(got) == result["outputs"]
    assert np.abs(got[result["outputs"][0]] - want).max() <= TOLERANCE


def test_a_tflite_source_is_refused_with_the_way_out(tmp_path):
    path = mf.save_tflite(tmp_path)
    with pytest.raises(ExportError, match="export from the original model"):
        _export(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
