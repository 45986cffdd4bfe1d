"""The compare step (issue 16): every node of the original is kept, replaced, fused or removed in
a variant, each naming its counterparts; what the variant inserted is listed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from workflows.data import load_dataset
from workflows.formats import load_model
from workflows.insight.compare import compare
from workflows.quantization.quantizers import (
    convert_fp16,
    quantize_dynamic_int8,
    quantize_static_qdq,
)


@pytest.fixture(scope="module")
def sample(tmp_path_factory, sample_dir):
    """The sample as ONNX and its static INT8, dynamic INT8 and FP16 variants."""
    from workflows.steps.convert import convert_model

    folder = tmp_path_factory.mktemp("compare")
    fp32 = folder / "digits_cnn.fp32.onnx"
    convert_model(load_model(sample_dir / "digits_cnn.pt2"), fp32)
    calibration = load_dataset(sample_dir / "digits_calibration.npz", load_model(fp32).inputs)
    quantize_static_qdq(fp32, folder / "int8.onnx", calibration)
    quantize_dynamic_int8(fp32, folder / "dynamic.onnx")
    convert_fp16(fp32, folder / "fp16.onnx")
    return {"folder": folder, "fp32": fp32, "calibration": calibration}


def _statuses(result):
    return {r["node"]: (r["status"], r["counterparts"]) for r in result["nodes"]}


def test_static_int8_maps_each_node_and_lists_its_qdq_pairs(sample):
    result = compare(sample["fp32"], sample["folder"] / "int8.onnx")
    kept = ("node_conv2d", "node_conv2d_1", "node_max_pool2d", "node_Reshape_7", "node_linear",
            "node_linear_1")  # fmt: skip
    # The QDQ quantizer drops each Relu: the uint8 QuantizeLinear after the Conv/Gemm clamps.
    fused = {"node_relu": "node_conv2d", "node_relu_1": "node_conv2d_1",
             "node_relu_2": "node_linear"}  # fmt: skip
    assert _statuses(result) == {
        **{n: ("kept", [n]) for n in kept},
        **{n: ("fused", [into]) for n, into in fused.items()},
    }
    assert all("uint8 range" in r["note"] for r in result["nodes"] if r["status"] == "fused")
    pairs = {e["tensor"] for e in result["inserted"]
             if e["kind"] == "qdq pair" and e["op_type"] == "QuantizeLinear"}  # fmt: skip
    assert pairs == {"x", "relu", "relu_1", "max_pool2d", "_unsafe_view", "relu_2",
                     "linear_1_QuantizeLinear_Input"}  # fmt: skip
    weights = {e["tensor"] for e in result["inserted"] if e["kind"] == "weight dequantize"}
    assert weights == {f"{layer}.{p}_quantized" if p == "bias" else f"{layer}.weight_quantized"
                       for layer in ("features.0", "features.2", "classifier.1", "classifier.3")
                       for p in ("weight", "bias")}  # fmt: skip
    s = result["summary"]
    assert (s["kept"], s["fused"], s["unmatched"], s["in_int8"], s["in_float"]) == (6, 3, 0, 4, 0)
    assert s["inserted"] == {"weight dequantize": 8, "qdq pair": 7}
    assert s["candidate_nodes"] == 9 - 3 + 8 + 2 * 7
    assert result["tensors"] == []  # QDQ keeps every shared tensor float32, same shape


def test_dynamic_int8_replaces_each_conv_and_gemm_by_integer_ops(sample):
    result = compare(sample["fp32"], sample["folder"] / "dynamic.onnx")
    rows = {r["node"]: r for r in result["nodes"]}
    for node, integer_op in (
        ("node_conv2d", "ConvInteger"),
        ("node_conv2d_1", "ConvInteger"),
        ("node_linear", "MatMulInteger"),
        ("node_linear_1", "MatMulInteger"),
    ):
        r = rows[node]
        assert r["status"] == "replaced" and r["precision"] == "int8", r
        assert f"{node}_quant" in r["counterparts"] or f"{node}_MatMul_quant" in r["counterparts"]
        assert integer_op in r["note"] and "Cast" in r["note"] and "Mul" in r["note"]
    assert [n for n, r in rows.items() if r["status"] == "kept"] == [
        "node_relu", "node_relu_1", "node_max_pool2d", "node_Reshape_7", "node_relu_2"]  # fmt: skip
    assert result["summary"]["inserted"] == {"dynamic quantize": 4}
    assert [e["tensor"] for e in result["inserted"]] == ["x", "relu", "_unsafe_view", "relu_2"]


def test_fp16_keeps_every_node_and_lists_the_casts_and_changed_dtypes(sample):
    result = compare(sample["fp32"], sample["folder"] / "fp16.onnx")
    assert {r["status"] for r in result["nodes"]} == {"kept"}
    casts = [(e["kind"], e["op_type"]) for e in result["inserted"]]
    assert casts == [("precision cast", "Cast")] * 2  # in and out: the I/O stays float32
    changed = {t["tensor"]: (t["reference"], t["candidate"]) for t in result["tensors"]}
    assert changed["relu_1"] == ("float32[batch,32,8,8]", "float16[batch,32,8,8]")
    assert "x" not in changed and "linear_1" not in changed
    assert len(changed) == 8  # every intermediate tensor


def test_a_node_kept_in_float_says_why(sample, tmp_path):
    q = tmp_path / "partial.onnx"
    quantize_static_qdq(
        sample["fp32"], q, sample["calibration"], nodes_to_exclude=["node_linear_1"]
    )
    why = {"node_linear_1": "the fallback search: its activation linear_1 kept 9.5 dB"}
    rows = {r["node"]: r for r in compare(sample["fp32"], q, why)["nodes"]}
    assert rows["node_linear_1"]["precision"] == "float"
    assert rows["node_linear_1"]["why"] == why["node_linear_1"]
    assert rows["node_linear"]["precision"] == "int8" and "why" not in rows["node_linear"]
    without = {r["node"]: r for r in compare(sample["fp32"], q)["nodes"]}
    assert without["node_linear_1"]["why"] == "the quantizer left it in float"


def _fusable_model(path):
    """Conv -> BatchNormalization -> Relu -> Identity -> Reshape (shape from a Shape/Gather/
    Unsqueeze/Concat chain) -> MatMul -> Add: what ONNX Runtime's optimiser fuses and folds."""
    rng = np.random.default_rng(0)

    def init(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    inits = [
        init("w", rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.1),
        init("cb", np.zeros(8, np.float32)), init("s", np.ones(8, np.float32)),
        init("bb", np.full(8, 0.1, np.float32)), init("m", np.zeros(8, np.float32)),
        init("v", np.ones(8, np.float32)),
        init("fw", rng.standard_normal((512, 10)).astype(np.float32) * 0.1),
        init("fb", np.zeros(10, np.float32)), init("zero", np.array(0, np.int64)),
        init("ax", np.array([0], np.int64)), init("minus1", np.array([-1], np.int64)),
    ]  # fmt: skip
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["bn"], name="bn"),
        node("Relu", ["bn"], ["r"], name="relu"),
        node("Identity", ["r"], ["idn"], name="identity"),
        node("Shape", ["idn"], ["shp"], name="shape"),
        node("Gather", ["shp", "zero"], ["b0"], name="gather", axis=0),
        node("Unsqueeze", ["b0", "ax"], ["b1"], name="unsq"),
        node("Concat", ["b1", "minus1"], ["newshape"], name="concat", axis=0),
        node("Reshape", ["idn", "newshape"], ["flat"], name="reshape"),
        node("MatMul", ["flat", "fw"], ["mm"], name="matmul"),
        node("Add", ["mm", "fb"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes, "fusable", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _optimised(src, dst, level):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return dst


def test_onnx_runtimes_fusions_and_folds_are_named(tmp_path):
    ref = _fusable_model(tmp_path / "ref.onnx")
    opt = _optimised(ref, tmp_path / "ext.onnx", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    result = compare(ref, opt)
    gemm = "matmul/MatMulAddFusion"  # ORT names a fused node after the first it replaced
    assert _statuses(result) == {
        "conv": ("replaced", ["conv"]),  # Conv -> FusedConv (with the BN and the Relu)
        "bn": ("fused", ["conv"]),
        "relu": ("fused", ["conv"]),
        "identity": ("removed", []),
        "shape": ("removed", []), "gather": ("removed", []), "unsq": ("removed", []),
        "concat": ("removed", []),
        "reshape": ("kept", ["reshape"]),
        "matmul": ("replaced", [gemm]),
        "add": ("fused", [gemm]),
    }  # fmt: skip
    notes = {r["node"]: r["note"] for r in result["nodes"]}
    assert notes["conv"] == "Conv -> FusedConv" and notes["matmul"] == "MatMul -> Gemm"
    assert notes["identity"] == "bypassed: its readers read r"
    assert {notes[n] for n in ("shape", "gather", "unsq", "concat")} == {"constant-folded"}
    assert result["inserted"] == []
    # The basic level fuses the BN but keeps the Relu a node of its own.
    basic = _optimised(ref, tmp_path / "basic.onnx", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    rows = _statuses(compare(ref, basic))
    assert rows["conv"] == ("kept", ["conv"]) and rows["relu"] == ("kept", ["relu"])
    assert rows["bn"] == ("fused", ["conv"])


def test_the_step_reads_a_quantize_folder_and_its_reasons(sample, tmp_path):
    from workflows.steps.compare import CompareOptions, compare_variants

    folder = tmp_path / "q"
    folder.mkdir()
    shutil.copy(sample["fp32"], folder / "digits_cnn.fp32.onnx")
    quantize_static_qdq(sample["fp32"], folder / "digits_cnn.int8-static.onnx",
                        sample["calibration"], nodes_to_exclude=["node_linear_1"])  # fmt: skip
    culprit = {"tensor": "linear_1", "kind": "activation", "sqnr_db": 9.5,
               "nodes": ["node_linear_1"], "round": 1}  # fmt: skip
    variant = {"file": "digits_cnn.int8-static.onnx", "excluded_nodes": ["node_linear_1"],
               "fallback": {"chosen": "1 node(s) in float", "culprits": [culprit]}}  # fmt: skip
    (folder / "report.json").write_text(json.dumps({"step": "quantize", "variants": [variant]}))
    out = tmp_path / "compare.json"
    result = compare_variants(CompareOptions(candidates=[str(folder)], output=str(out)))
    assert json.loads(out.read_text()) == result
    (only,) = result["candidates"]
    assert only["name"] == "int8-static" and result["reference"].endswith("fp32.onnx")
    row = next(r for r in only["nodes"] if r["node"] == "node_linear_1")
    assert row["why"] == ("the fallback search: its activation linear_1 kept 9.5 dB SQNR in INT8 "
                          "(round 1)")  # fmt: skip
