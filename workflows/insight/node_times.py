"""Where the time goes, per node of the model as the user sees it (issue 16's time overlay).

ONNX Runtime's profiler (`SessionOptions.enable_profiling`) times the kernels of the graph ORT
optimised: fused, renamed (`fused node_linear`, `node_conv2d_token_1`, `relu_nchwc`) and with
nodes of its own (layout `Transpose`, `ReorderOutput`). The same session saves that graph
(`optimized_model_filepath`), so every timed kernel is a node there; each is then traced back to
the model's nodes by name (ORT keeps the first fused node's name, or names a kernel after the
tensor it writes) and by the tensors around it: a kernel's time goes to the node it is named
after, and the nodes ORT fused into it are listed with it. Kernels with no counterpart (layout
changes ORT inserted) are kept as rows of their own, so the rows add up to the run.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WARMUP = 3
_ORT_AFFIXES = re.compile(r"^fused |_token_\d+$|_nchwc$")


@dataclass
class _Index:
    """The model's graph, looked up by name: built once, read for every kernel."""

    nodes: dict[str, Any]  # name -> node
    producer: dict[str, str]  # tensor -> name of the node writing it
    consumers: dict[str, list[Any]]  # tensor -> nodes reading it
    tensors: set[str]  # every tensor name, graph inputs and initializers included

    @classmethod
    def of(cls, proto: Any) -> _Index:
        consumers: dict[str, list[Any]] = defaultdict(list)
        for n in proto.graph.node:
            for i in n.input:
                consumers[i].append(n)
        producer = {o: n.name for n in proto.graph.node for o in n.output}
        tensors = set(producer) | {i.name for i in proto.graph.input}
        tensors |= {t.name for t in proto.graph.initializer}
        return cls({n.name: n for n in proto.graph.node}, producer, consumers, tensors)


def _fused_into(index: _Index, own: str, kernel: Any, claimed: set[str]) -> list[str]:
    """The model's nodes ORT fused into `kernel` (which stands for node `own`): walking up from
    what it writes (through a QuantizeLinear that only re-quantizes its output) to what it reads,
    stopping at nodes an earlier kernel already took."""
    starts = {i for i in kernel.input if i in index.tensors}
    ends = [o for o in kernel.output if o in index.tensors] or list(index.nodes[own].output)
    for t in list(ends):
        after = index.consumers.get(t, [])
        if after and all(n.op_type == "QuantizeLinear" for n in after):
            ends += [o for n in after for o in n.output]
    producer = index.producer
    found: list[str] = []
    stack = [producer[t] for t in ends if t in producer and t not in starts]
    while stack:
        name = stack.pop()
        if name in found or name in claimed:
            continue
        found.append(name)
        stack += [producer[i] for i in index.nodes[name].input if i in producer and i not in starts]
    return found


_KERNEL_PREFIXES = re.compile(r"^(QLinear|Fused|Nhwc|Q)(?=[A-Z])")


def _primary(kernel: Any, members: list[str], nodes: dict[str, Any], named: str) -> str:
    """Of the nodes in one kernel, the one whose op it runs (QLinearConv, FusedConv: the Conv)."""
    op = _KERNEL_PREFIXES.sub("", kernel.op_type)
    return next((m for m in members if nodes[m].op_type in (kernel.op_type, op)), named)


def _counterpart(kernel: Any, nodes: dict[str, Any], producer: dict[str, str]) -> str | None:
    """The model node an optimised kernel stands for: its own name, or its name without ORT's
    affixes, as a node or as the tensor a node writes."""
    for name in (kernel.name, _ORT_AFFIXES.sub("", kernel.name)):
        if name in nodes:
            return name
        if name in producer:
            return producer[name]
    return None


def node_times(
    path: Path, feeds: dict[str, np.ndarray], runs: int = 20, threads: int | None = None
) -> dict[str, Any]:
    """Mean milliseconds per run of each of the model's nodes (ORT's optimised kernels, traced
    back), with the nodes fused into each and ORT's own kernels as extra rows; and the run's
    measured time (wall clock per `session.run`, profiler on) to hold their sum against."""
    import onnx
    import onnxruntime as ort

    index = _Index.of(onnx.load(str(path), load_external_data=False))
    nodes = index.nodes
    with tempfile.TemporaryDirectory(prefix="dockyard-node-times-") as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        if threads:
            opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for _ in range(WARMUP):
            session.run(None, feeds)
        started = time.perf_counter()
        for _ in range(runs):
            session.run(None, feeds)
        run_ms = (time.perf_counter() - started) * 1000 / runs
        events = json.loads(Path(session.end_profiling()).read_text())
        optimized = onnx.load(str(Path(tmp) / "optimized.onnx"), load_external_data=False)

    kernels = [
        e for e in events
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
    ]  # fmt: skip
    timed = kernels[len(kernels) * WARMUP // (runs + WARMUP) :]  # drop the warm-up runs
    per_kernel: dict[str, float] = defaultdict(float)
    for e in timed:
        per_kernel[e["name"][: -len("_kernel_time")]] += e.get("dur", 0) / 1000 / runs

    rows: dict[str, dict[str, Any]] = {}
    claimed: set[str] = set()
    for kernel in optimized.graph.node:  # in topological order
        ms = per_kernel.get(kernel.name)
        if ms is None:
            continue
        named = _counterpart(kernel, nodes, index.producer)
        members = [] if named is None else _fused_into(index, named, kernel, claimed)
        own = _primary(kernel, members, nodes, named) if named else kernel.name
        claimed.update(members)
        if own not in rows:
            rows[own] = {
                "node": own,
                "op_type": nodes[own].op_type if named else kernel.op_type,
                "ms": 0.0,
                "kernels": [],
                "fused": [],
                "inserted_by_ort": named is None,  # a layout Transpose, ReorderOutput
            }
        row = rows[own]
        row["ms"] += ms
        row["kernels"].append(f"{kernel.name} ({kernel.op_type})")
        row["fused"] += [m for m in members if m != own and m not in row["fused"]]
    for row in rows.values():
        row["ms"] = round(row["ms"], 5)
    order = {n: i for i, n in enumerate(nodes)}
    listed = sorted(rows.values(), key=lambda r: order.get(r["node"], len(order)))
    return {
        "runs": runs,
        "run_ms": round(run_ms, 5),
        "kernels_ms": round(sum(per_kernel.values()), 5),
        "nodes": listed,
    }
