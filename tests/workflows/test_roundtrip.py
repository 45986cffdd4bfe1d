"""Every format: build a tiny model in code, load it, convert to ONNX, validate at batch 1 and 7."""

from __future__ import annotations

import onnx
import pytest

from tests.workflows import model_factory as mf
from workflows.formats import load_model
from workflows.steps.convert import convert_model
from workflows.steps.validate import validate_models

TORCH_PARAMS = 4 * 3 * 3 * 3 + 4 + 256 * 5 + 5
KERAS_PARAMS = 4 * 3 * 3 * 3 + 4 + 4 * 5 + 5
TORCH_SHAPE = {"x": [1, 3, 8, 8]}


def _torchscript(d):
    return mf.save_torchscript(d), {"input_shapes": TORCH_SHAPE}


def _exported(d):
    return mf.save_exported_program(d), {}


def _eager(suffix):
    def make(d):
        weights, src = mf.save_state_dict(d, suffix)
        opts = {"model_file": src, "model_class": "TinyNet", "input_shapes": TORCH_SHAPE}
        return weights, opts

    return make


CASES = {
    "torchscript": (_torchscript, "torchscript", TORCH_PARAMS, (3, 8, 8)),
    "exported_program": (_exported, "exported_program", TORCH_PARAMS, (3, 8, 8)),
    "eager_pth": (_eager(".pth"), "pytorch_eager", TORCH_PARAMS, (3, 8, 8)),
    "eager_safetensors": (_eager(".safetensors"), "pytorch_eager", TORCH_PARAMS, (3, 8, 8)),
    "keras": (lambda d: (mf.save_keras(d), {}), "keras", KERAS_PARAMS, (8, 8, 3)),
    "keras_h5": (lambda d: (mf.save_keras(d, ".h5"), {}), "keras", KERAS_PARAMS, (8, 8, 3)),
    "savedmodel": (lambda d: (mf.save_savedmodel(d), {}), "savedmodel", KERAS_PARAMS, (8, 8, 3)),
    "tflite": (lambda d: (mf.save_tflite(d), {}), "tflite", KERAS_PARAMS, (8, 8, 3)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_load_convert_validate(case, tmp_path):
    make, fmt, params, sample_shape = CASES[case]
    path, options = make(tmp_path)

    model = load_model(path, **options)
    assert model.format == fmt
    assert model.parameters == params
    assert model.size_bytes > 0
    assert len(model.inputs) == 1
    assert model.inputs[0].shape[1:] == sample_shape
    assert model.inputs[0].is_dynamic(0), model.inputs[0]

    out = tmp_path / "out" / "model.onnx"
    result = convert_model(model, out, opset=17)
    assert out.is_file() and result["size_bytes"] == out.stat().st_size
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert not list(out.parent.glob(".*partial*")), "temp files left behind"

    candidate = load_model(out)
    report = validate_models(model, candidate, batch_sizes=[1, 7])
    assert report["dynamic_batch"] is True
    batches = [t["outputs"][0]["candidate_shape"][0] for t in report["trials"]]
    assert batches == [1, 7]
    for trial in report["trials"]:
        for o in trial["outputs"]:
            assert o["shape_match"], o
            assert o["reference_shape"] == o["candidate_shape"]
            assert o["candidate_shape"][1] == 5
            assert o["max_abs_error"] <= 1e-4, (case, o)
            assert o["cosine_similarity"] > 0.99999
    assert report["passed"] is True


def test_onnx_loads_with_external_data(tmp_path):
    path = mf.save_onnx(tmp_path)
    proto = onnx.load(str(path))
    ext = tmp_path / "ext" / "tiny.onnx"
    ext.parent.mkdir()
    onnx.save_model(
        proto, str(ext), save_as_external_data=True, location="tiny.onnx.data", size_threshold=1024
    )
    assert (ext.parent / "tiny.onnx.data").is_file()
    model = load_model(ext)
    assert model.format == "onnx"
    assert model.parameters == 4 * 27 + 4 + 256 * 5 + 2
    assert model.size_bytes == ext.stat().st_size + (ext.parent / "tiny.onnx.data").stat().st_size
    same = validate_models(load_model(path), model, batch_sizes=[1, 7])
    assert same["worst"]["max_abs_error"] == 0.0 and same["passed"]
