"""Inspect: op histogram, parameters by dtype, MACs arithmetic, custom ops, the uniform graph."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.workflows import model_factory as mf
from workflows.formats import load_model
from workflows.steps.inspect import inspect_model
from workflows.synthetic import save_chain_model


def test_onnx_inspect_numbers(tmp_path):
    report = inspect_model(load_model(mf.save_onnx(tmp_path)))
    assert report["op_histogram"] == {"Conv": 1, "Relu": 1, "Reshape": 1, "Gemm": 1}
    # Conv: 4x8x8 outputs, each 3*3*3 MACs; Gemm: 5 outputs, each 256 MACs (per sample).
    assert report["macs_by_op"] == {"Conv": 4 * 8 * 8 * 27, "Gemm": 5 * 256}
    assert report["flops_per_sample"] == 2 * (4 * 8 * 8 * 27 + 5 * 256)
    assert report["parameters_by_dtype"]["float32"]["count"] == 4 * 27 + 4 + 256 * 5
    assert report["parameters_by_dtype"]["float32"]["bytes"] == 4 * (4 * 27 + 4 + 256 * 5)
    assert report["opsets"] == {"ai.onnx": 17}
    assert report["custom_ops"] == []
    graph = report["graph"]
    assert [n["op_type"] for n in graph["nodes"]] == ["Conv", "Relu", "Reshape", "Gemm"]
    assert graph["tensors"]["c"]["shape"] == ["batch", 4, 8, 8]  # after shape inference
    assert graph["inputs"] == ["x"] and graph["outputs"] == ["y"]


def test_weights_in_constant_nodes_count(tmp_path):
    """Some exporters (Paddle) store weights as Constant nodes, not initializers."""
    w = numpy_helper.from_array(np.ones((4, 6), np.float32), "wv")
    nodes = [
        helper.make_node("Constant", [], ["w"], value=w),
        helper.make_node("MatMul", ["x", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "const",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])],
    )
    path = tmp_path / "const.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = load_model(path)
    assert model.parameters == 24
    report = inspect_model(model)
    assert report["parameters_by_dtype"]["float32"]["count"] == 24
    assert report["macs_by_op"] == {"MatMul": 24}


def test_ten_thousand_nodes(tmp_path):
    path = save_chain_model(tmp_path / "big.onnx", nodes=10_000)
    report = inspect_model(load_model(path))
    assert report["node_count"] == 9_999
    assert report["op_histogram"] == {"MatMul": 3333, "Add": 3333, "Relu": 3333}
    assert report["macs_per_sample"] == 3333 * 16 * 16
    assert len(report["graph"]["nodes"]) == 9_999


def test_tflite_graph_and_histogram(tmp_path):
    report = inspect_model(load_model(mf.save_tflite(tmp_path)))
    assert report["op_histogram"] == {"CONV_2D": 1, "MEAN": 1, "FULLY_CONNECTED": 1}
    assert report["node_count"] == 3
    assert report["model"]["inputs"][0]["shape"] == ["batch", 8, 8, 3]


def test_native_histograms(tmp_path):
    keras_report = inspect_model(load_model(mf.save_keras(tmp_path)))
    assert keras_report["op_histogram"] == {"Conv2D": 1, "GlobalAveragePooling2D": 1, "Dense": 1}
    ep_report = inspect_model(load_model(mf.save_exported_program(tmp_path)))
    assert ep_report["op_histogram"]["aten.conv2d.default"] == 1
    assert ep_report["model"]["parameters"] == 4 * 27 + 4 + 256 * 5 + 5


def test_tflite_macs(tmp_path):
    report = inspect_model(load_model(mf.save_tflite(tmp_path)))
    # Conv 3x3x3 -> 4 channels on 8x8 (same padding), then Dense 4 -> 5.
    assert report["macs_by_op"] == {"CONV_2D": 8 * 8 * 4 * 27, "FULLY_CONNECTED": 5 * 4}


def test_native_parameter_bytes(tmp_path):
    report = inspect_model(load_model(mf.save_keras(tmp_path)))
    assert report["parameters_by_dtype"] == {"float32": {"count": 137, "bytes": 548}}
    weights, src = mf.save_state_dict(tmp_path)
    eager = load_model(weights, model_file=src, input_shapes={"x": [1, 3, 8, 8]})
    report = inspect_model(eager)
    assert report["parameters_by_dtype"]["float32"]["count"] == 1397
    assert report["parameter_bytes"] == 1397 * 4
    assert eager.outputs[0].shape == ("batch", 5)  # probed with one forward pass
