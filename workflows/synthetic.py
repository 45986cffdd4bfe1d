"""Synthetic ONNX graphs of any size, for benchmarks and scale tests (no framework needed)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np


def chain_model(nodes: int, width: int = 16, seed: int = 0):
    """An MLP-like chain of `nodes` ops (MatMul, Add, Relu repeating) with a dynamic batch."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    layers = max(1, nodes // 3)
    inits, graph_nodes = [], []
    current = "x"
    for i in range(layers):
        w = numpy_helper.from_array(
            (rng.standard_normal((width, width)) * 0.1).astype(np.float32), f"w{i}"
        )
        b = numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")
        inits += [w, b]
        graph_nodes += [
            helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"], name=f"matmul_{i}"),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add_{i}"),
            helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu_{i}"),
        ]
        current = f"r{i}"
    graph = helper.make_graph(
        graph_nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def save_chain_model(path: Path, nodes: int, width: int = 16) -> Path:
    """Write `chain_model(nodes, width)` to `path`."""
    import onnx

    onnx.save(chain_model(nodes, width), str(path))
    return Path(path)


def mlp_model(widths: tuple[int, ...] = (1024, 2048, 2048, 1024, 10), seed: int = 0):
    """A float32 MLP (Gemm + Relu) with the given layer widths and a dynamic batch."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    current = "x"
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
        ]
        nodes.append(
            helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [f"g{i}"], name=f"gemm_{i}")
        )
        current = f"g{i}"
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [current], [f"r{i}"], name=f"relu_{i}"))
            current = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", widths[0]])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["batch", widths[-1]])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
