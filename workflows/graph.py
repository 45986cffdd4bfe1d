"""One Qt-free graph vocabulary for every format: nodes, the tensors between them, and shapes.

The GUI's native graph panels and the inspect report both read this, whatever the source format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from workflows.model import Dim


@dataclass
class Node:
    """One operator: its name, op type (with domain if not the default), tensors in and out."""

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tensor:
    """A tensor in the graph: shape after shape inference (None where unknown) and dtype."""

    name: str
    shape: tuple[Dim, ...] | None
    dtype: str
    constant: bool = False


@dataclass
class Graph:
    """Nodes in topological order, tensors by name, and the graph's own inputs and outputs."""

    nodes: list[Node]
    tensors: dict[str, Tensor]
    inputs: list[str]
    outputs: list[str]

    def edges(self) -> list[tuple[int, int, str]]:
        """(producer node index, consumer node index, tensor name) for every connection."""
        producer = {t: i for i, n in enumerate(self.nodes) for t in n.outputs}
        return [
            (producer[t], j, t) for j, n in enumerate(self.nodes) for t in n.inputs if t in producer
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (shapes as lists)."""
        from workflows.jsonable import jsonable

        return jsonable(
            {
                "nodes": [asdict(n) for n in self.nodes],
                "tensors": {k: asdict(v) for k, v in self.tensors.items()},
                "inputs": self.inputs,
                "outputs": self.outputs,
            }
        )


def _attr_value(attr: Any) -> Any:
    import onnx

    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list | tuple):
        return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in value][:16]
    if isinstance(value, int | float | str):
        return value
    return f"<{type(value).__name__}>"  # tensors and subgraphs: summarised, not copied


def from_onnx(proto: Any) -> Graph:
    """The uniform graph of an ONNX ModelProto (shapes from its value_info: infer them first)."""
    from workflows.formats.onnx_format import _dims, _dtype

    g = proto.graph
    tensors: dict[str, Tensor] = {}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        tensors[v.name] = Tensor(v.name, _dims(v.type), _dtype(v.type))
    import onnx

    for t in g.initializer:
        tensors[t.name] = Tensor(
            t.name,
            tuple(int(d) for d in t.dims),
            onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name,
            constant=True,
        )
    nodes = []
    for i, n in enumerate(g.node):
        op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        nodes.append(Node(n.name or f"{n.op_type}_{i}", op, list(n.input), list(n.output), attrs))
    init = {t.name for t in g.initializer}
    return Graph(
        nodes, tensors, [v.name for v in g.input if v.name not in init], [v.name for v in g.output]
    )


def from_tflite(interp: Any) -> Graph:
    """The uniform graph of a LiteRT interpreter's model."""
    import numpy as np

    details = {d["index"]: d for d in interp.get_tensor_details()}
    name = {i: d["name"] or f"t{i}" for i, d in details.items()}
    from workflows.formats.tflite_format import ops_details

    ops = ops_details(interp)
    produced = {t for op in ops for t in op["outputs"]}
    tensors = {
        name[i]: Tensor(
            name[i],
            tuple(int(x) for x in d["shape"]),
            np.dtype(d["dtype"]).name,
            constant=i not in produced,
        )
        for i, d in details.items()
    }
    inputs = [name[d["index"]] for d in interp.get_input_details()]
    for n in inputs:
        tensors[n].constant = False
    nodes = [
        Node(
            f"{op['op_name']}_{op['index']}",
            op["op_name"],
            [name[t] for t in op["inputs"] if t >= 0],
            [name[t] for t in op["outputs"]],
        )
        for op in ops
    ]
    return Graph(nodes, tensors, inputs, [name[d["index"]] for d in interp.get_output_details()])
