"""TF1-style SavedModels (issue #11): when TensorFlow's v2 loader cannot read one, the v1 loader
(a Graph and a Session) inspects, converts (tf2onnx from the frozen graph) and validates it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.workflows import model_factory as mf
from workflows.errors import FormatError
from workflows.formats import by_name, load_model


@pytest.fixture(scope="module")
def tf1_model(tmp_path_factory):
    return mf.save_tf1_savedmodel(tmp_path_factory.mktemp("tf1"))


def test_the_v2_loader_refuses_it(tf1_model):
    import tensorflow as tf

    with pytest.raises(ValueError, match="more than one MetaGraph"):
        tf.saved_model.load(str(tf1_model))


def test_v1_loader_inspects_converts_and_validates(tf1_model, tmp_path):
    from workflows.steps.convert import convert_model
    from workflows.steps.inspect import inspect_model
    from workflows.steps.validate import validate_models

    model = load_model(tf1_model)
    assert model.format == "savedmodel" and model.metadata["loader"] == "v1"
    assert model.metadata["tag"] == "serve" and "v1 loader" in model.producer
    assert [(s.name, s.shape) for s in model.inputs] == [("x", ("batch", 8))]
    assert [(s.name, s.shape) for s in model.outputs] == [("probs", ("batch", 4))]
    assert model.parameters == 8 * 16 + 16 + 16 * 4
    x = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    probs = by_name("savedmodel").session(model)({"x": x})[0]
    assert probs.shape == (5, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    info = inspect_model(model)
    assert info["model"]["parameters"] == 208

    onnx_path = tmp_path / "tf1.onnx"
    convert_model(model, onnx_path)
    onnx_model = load_model(onnx_path)
    assert [s.name for s in onnx_model.inputs] == ["x"]  # the signature's keys, not "x:0"
    assert [s.name for s in onnx_model.outputs] == ["probs"]
    got = by_name("onnx").session(onnx_model)({"x": x})[0]
    assert np.abs(got - probs).max() <= 1e-4
    result = validate_models(model, onnx_model)  # batches 1 and 7, synthesised inputs
    assert result["passed"] and result["worst"]["max_abs_error"] <= 1e-4


def test_a_savedmodel_neither_loader_reads_names_both(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x08\x01garbage")
    with pytest.raises(FormatError, match=r"v2 loader says .*; the v1 loader \(TF1 graphs\) says"):
        load_model(folder)
