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


def branching_model(nodes: int, channels: int = 8, seed: int = 0):
    """About `nodes` ops in repeated residual and inception-style blocks (branches and merges,
    not a chain), as a CNN backbone has them: block names form a hierarchy (`stage1/block3/…`)
    as exporters write them. Runs on a [1, channels, 8, 8] input."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits: list = []
    graph_nodes: list = []

    def conv(name: str, x: str, kernel: int = 1) -> str:
        w = numpy_helper.from_array(
            (rng.standard_normal((channels, channels, kernel, kernel)) * 0.1).astype(np.float32),
            f"{name}.weight",
        )
        inits.append(w)
        pad = kernel // 2
        graph_nodes.append(helper.make_node("Conv", [x, w.name], [f"{name}.out"], name=name,
                                            pads=[pad] * 4))  # fmt: skip
        return f"{name}.out"

    def op(kind: str, name: str, *xs: str) -> str:
        graph_nodes.append(helper.make_node(kind, list(xs), [f"{name}.out"], name=name))
        return f"{name}.out"

    def residual(p: str, x: str) -> str:  # 6 ops
        y = op("Relu", f"{p}/relu1", conv(f"{p}/conv1", x, 3))
        y = conv(f"{p}/conv2", y, 3)
        return op("Relu", f"{p}/relu2", op("Add", f"{p}/add", x, op("Sigmoid", f"{p}/gate", y)))

    def inception(p: str, x: str) -> str:  # 10 ops
        a = conv(f"{p}/branch1/conv", x)
        b = op("Relu", f"{p}/branch2/relu", conv(f"{p}/branch2/conv1", x))
        b = conv(f"{p}/branch2/conv2", b, 3)
        c = conv(f"{p}/branch3/conv", op("Relu", f"{p}/branch3/relu", x), 3)
        s = op("Add", f"{p}/merge1", a, b)
        s = op("Add", f"{p}/merge2", s, c)
        return op("Relu", f"{p}/out", op("Mul", f"{p}/scale", s, op("Sigmoid", f"{p}/se", s)))

    x, blocks = "x", 0
    while len(graph_nodes) < nodes:
        stage, i = divmod(blocks, 16)
        p = f"stage{stage + 1}/block{i + 1}"
        x = inception(p, x) if blocks % 2 else residual(p, x)
        blocks += 1
    graph = helper.make_graph(
        graph_nodes, "branching",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 8, 8])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, channels, 8, 8])], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
