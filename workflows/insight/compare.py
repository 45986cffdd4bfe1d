"""What a conversion or quantization changed, node by node (issue 16's compare view).

Every node of the reference graph gets one status:
- kept: the candidate has a node of the same name and operator;
- replaced: by one or more candidate nodes (another operator, or split, e.g. dynamic INT8's
  Conv -> ConvInteger + Cast + Mul + Add);
- fused: into a candidate node that does its work too (BatchNormalization into Conv, a Relu the
  QDQ quantizer folds into the uint8 range of the Conv before it, MatMul + Add -> Gemm);
- removed: constant-folded, bypassed (Identity, Dropout) or dead;
- unmatched: none of the above could be shown (a test fails on these).

Candidate nodes are matched by name first, then by structure: a name derived from the reference
node's ("node_conv2d" -> "node_conv2d_quant", "matmul" -> "matmul/MatMulAddFusion"), a tensor
name both graphs share (ORT's optimisers and quantizers keep the tensor that leaves a fused
group), then position (a node whose
neighbours all belong to one group joins it). Candidate nodes left over were inserted: QDQ
pairs, weight dequantizers, dynamic quantizers, precision casts, or other (ORT's layout nodes).

Top-level graph only: the nodes of If/Loop bodies are compared as one node.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("kept", "replaced", "fused", "removed", "unmatched")
# Operators whose INT8 form is the point of quantizing (workflows.quantization.quantizers).
COMPUTE_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
INTEGER_OPS = {
    "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "QGemm",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QAttention", "DynamicQuantizeLSTM",
}  # fmt: skip
PASS_THROUGH = {"Identity", "Dropout"}
CLAMPS = {"Relu", "Clip"}  # what the QDQ quantizer folds into a uint8 QuantizeLinear
_LOW_PRECISION = {10, 16}  # TensorProto.FLOAT16, BFLOAT16
_NAME_BOUNDARY = "_/.:"


@dataclass
class _Graph:
    """One model's top-level graph, indexed."""

    nodes: list[Any]
    keys: list[str]  # node name, or op and first output where the node has none
    producer: dict[str, int] = field(default_factory=dict)
    consumers: dict[str, list[int]] = field(default_factory=dict)
    constants: set[str] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)
    types: dict[str, str] = field(default_factory=dict)  # tensor -> "float32[1,3,224,224]"
    elem: dict[str, int] = field(default_factory=dict)


def _load(path: Path) -> _Graph:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    # A model shape inference cannot read (custom domains) still compares, without dtypes.
    with contextlib.suppress(Exception):
        proto = onnx.shape_inference.infer_shapes(proto)
    g = proto.graph
    keys = [n.name or f"{n.op_type}→{n.output[0] if n.output else '?'}" for n in g.node]
    graph = _Graph(list(g.node), keys)
    for i, n in enumerate(g.node):
        for t in n.output:
            if t:
                graph.producer[t] = i
        for t in n.input:
            if t:
                graph.consumers.setdefault(t, []).append(i)
        if n.op_type == "Constant":
            graph.constants.update(n.output)
    graph.constants.update(t.name for t in g.initializer)
    graph.inputs = {i.name for i in g.input} - graph.constants
    graph.outputs = {o.name for o in g.output}
    for info in [*g.value_info, *g.input, *g.output]:  # the graph's I/O win over stale value_info
        tt = info.type.tensor_type
        if not info.type.HasField("tensor_type") or not tt.elem_type:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
                for d in tt.shape.dim] if tt.HasField("shape") else None  # fmt: skip
        graph.types[info.name] = dtype + (f"[{','.join(dims)}]" if dims is not None else "[…]")
        graph.elem[info.name] = tt.elem_type
    for t in g.initializer:
        graph.elem.setdefault(t.name, t.data_type)
    return graph


def _insertion(b: _Graph, j: int) -> str | None:
    """What kind of node a quantizer or precision converter inserts `b.nodes[j]` is, if one."""
    n = b.nodes[j]
    if n.op_type == "QuantizeLinear":
        after = [b.nodes[c].op_type for c in b.consumers.get(n.output[0], [])]
        return "qdq pair" if "DequantizeLinear" in after else "quantize"
    if n.op_type == "DequantizeLinear":
        if n.input[0] in b.constants:
            return "weight dequantize"
        before = b.producer.get(n.input[0])
        if before is not None and b.nodes[before].op_type == "QuantizeLinear":
            return "qdq pair"
        return "dequantize"
    if n.op_type == "DynamicQuantizeLinear":
        return "dynamic quantize"
    if n.op_type == "Cast":
        to = next((a.i for a in n.attribute if a.name == "to"), 0)
        if to in _LOW_PRECISION or b.elem.get(n.input[0]) in _LOW_PRECISION:
            return "precision cast"
    return None


def _by_prefix(names: dict[str, int], candidate: str) -> int | None:
    """The reference node whose name the candidate's extends at a word boundary (longest)."""
    best = None
    for cut in range(len(candidate) - 1, 2, -1):
        if candidate[cut] in _NAME_BOUNDARY and candidate[:cut] in names:
            best = names[candidate[:cut]]
            break
    return best


def _match(a: _Graph, b: _Graph) -> tuple[dict[int, int], dict[int, str]]:
    """Candidate node -> reference node it belongs to, and candidate node -> insertion kind."""
    a_names = {n.name: i for i, n in enumerate(a.nodes) if n.name}
    owner: dict[int, int] = {}
    for j, n in enumerate(b.nodes):
        if n.name in a_names:
            owner[j] = a_names[n.name]
    inserted = {j: kind for j in range(len(b.nodes))
                if j not in owner and (kind := _insertion(b, j))}  # fmt: skip
    free = [j for j in range(len(b.nodes)) if j not in owner and j not in inserted]
    for j in free:  # a name derived from the reference node's (by the tool that made it)
        if b.nodes[j].name:
            found = _by_prefix(a_names, b.nodes[j].name)
            if found is not None:
                owner[j] = found
    for j in free:  # a tensor the reference node produced leaves this node
        found = next((a.producer[t] for t in b.nodes[j].output if t in a.producer), None)
        if j not in owner and found is not None:
            owner[j] = found
    changed = True
    while changed:  # a node whose neighbours all belong to one reference node joins it
        changed = False
        for j in free:
            if j in owner:
                continue
            n = b.nodes[j]
            near = [b.producer[t] for t in n.input if t in b.producer]
            near += [c for t in n.output for c in b.consumers.get(t, [])]
            groups = {owner[k] for k in near if k in owner}
            loose = [k for k in near if k not in owner and k not in inserted]
            if len(groups) == 1 and not loose:
                owner[j] = groups.pop()
                changed = True
    return owner, inserted


def _reference_status(
    a: _Graph, b: _Graph, owner: dict[int, int], inserted: dict[int, str]
) -> list[dict[str, Any]]:
    """Each reference node's status and counterparts (candidate node keys), see module doc."""
    members: dict[int, list[int]] = {}
    for j, i in owner.items():
        members.setdefault(i, []).append(j)
    counterparts: dict[int, list[int]] = {}
    rows: list[dict[str, Any]] = [{} for _ in a.nodes]
    # Consumers before producers: "fused into what its consumer became" needs the consumer's.
    for i in reversed(range(len(a.nodes))):
        n = a.nodes[i]
        mine = sorted(members.get(i, []))
        outs = [t for t in n.output if t]
        status, note, parts = "unmatched", "", mine
        if mine:
            same = len(mine) == 1 and b.nodes[mine[0]].name == n.name
            if same and b.nodes[mine[0]].op_type == n.op_type:
                status = "kept"
            else:
                status = "replaced"
                ops = sorted({b.nodes[j].op_type for j in mine})
                note = f"{n.op_type} -> {' + '.join(ops)}"
        elif outs and all(t in b.constants for t in outs):
            status, note = "removed", "constant-folded"
        elif makers := sorted({b.producer[t] for t in outs if t in b.producer}):
            status, parts = "fused", makers
            note = "its output now leaves " + ", ".join(b.keys[j] for j in makers)
            after = [b.nodes[c].op_type for t in outs for c in b.consumers.get(t, [])]
            if n.op_type in CLAMPS and "QuantizeLinear" in after:
                note += (
                    f": the uint8 range of the QuantizeLinear after it clamps as {n.op_type} did"
                )

        elif not any(t in b.consumers or t in b.outputs for t in outs):
            data = [t for t in n.input if t and t not in a.constants]
            after = sorted({c for t in outs for c in a.consumers.get(t, [])})
            later = sorted({j for c in after for j in counterparts.get(c, [])})
            bypass = [t for t in data if t in b.producer or t in b.inputs]
            folded = [rows[c].get("note") == "constant-folded" for c in after]
            if not after and not (set(outs) & a.outputs):
                status, note = "removed", "dead: nothing read its output"
            elif after and all(folded):
                status, note = "removed", "constant-folded"
            elif n.op_type in PASS_THROUGH or (
                # readers unchanged, now reading its input: it did nothing (a no-op Cast,
                # Reshape); a reader that changed did its work (Sigmoid -> Mul: QuickGelu)
                bypass
                and later
                and all(rows[c]["status"] == "kept" for c in after)
                and any(t in b.nodes[j].input for t in bypass for j in later)
            ):
                status, note = "removed", "bypassed: its readers read " + ", ".join(bypass)
            elif later:
                status, parts = "fused", later
                note = "fused into what " + ", ".join(a.keys[c] for c in after) + " became"
        counterparts[i] = parts
        rows[i] = {"node": a.keys[i], "op_type": n.op_type, "status": status,
                   "counterparts": [b.keys[j] for j in parts], "note": note}  # fmt: skip
    return rows


def _precision(b: _Graph, parts: list[int]) -> str:
    """int8 where the candidate computes the node in integers (an integer op, or a float op fed
    by DequantizeLinear: ORT runs a DQ -> Conv -> Q group as one INT8 kernel), else float."""
    for j in parts:
        n = b.nodes[j]
        if n.op_type in INTEGER_OPS:
            return "int8"
        fed = [b.producer.get(t) for t in n.input[:2] if t]
        if fed and all(p is not None and b.nodes[p].op_type == "DequantizeLinear" for p in fed):
            return "int8"
    return "float"


def float_reasons(variant: dict[str, Any]) -> dict[str, str]:
    """Node -> why a quantize variant kept it in float, from its entry in quantize's report."""
    reasons = {}
    fallback = variant.get("fallback") or {}
    for c in fallback.get("culprits", []):
        for node in c.get("nodes", []):
            reasons.setdefault(node, f"the fallback search: its {c.get('kind', 'tensor')} "
                               f"{c.get('tensor')} kept {c.get('sqnr_db')} dB SQNR in INT8 "
                               f"(round {c.get('round')})")  # fmt: skip
    chosen = fallback.get("chosen")
    for node in variant.get("excluded_nodes") or []:
        reasons.setdefault(node, f"excluded by the fallback search's try '{chosen}'")
    return reasons


def compare(
    reference: Path, candidate: Path, reasons: dict[str, str] | None = None
) -> dict[str, Any]:
    """How `candidate` (a converted, optimised or quantized model) differs from `reference`,
    node by node (see module doc). `reasons` says why named nodes were kept in float.

    Returns {"reference", "candidate", "nodes": [per reference node: node, op_type, status,
    counterparts, note, precision (compute ops of a quantized candidate), why], "inserted":
    [candidate nodes no reference node accounts for: node, op_type, kind, tensor], "tensors":
    [shared tensors whose dtype or shape differ], "summary": counts}."""
    a, b = _load(Path(reference)), _load(Path(candidate))
    owner, inserted = _match(a, b)
    rows = _reference_status(a, b, owner, inserted)
    quantized = bool(inserted) and any("quantize" in k or "qdq" in k for k in inserted.values())
    quantized = quantized or any(n.op_type in INTEGER_OPS for n in b.nodes)
    keys = {k: j for j, k in enumerate(b.keys)}
    for row in rows:
        if quantized and row["op_type"] in COMPUTE_OPS and row["status"] != "removed":
            row["precision"] = _precision(b, [keys[k] for k in row["counterparts"]])
            if row["precision"] == "float":
                row["why"] = (reasons or {}).get(row["node"], "the quantizer left it in float")
    extra = []
    for j, n in enumerate(b.nodes):
        if j in owner:
            continue
        kind = inserted.get(j, "other")
        tensor = n.input[0] if n.input else ""
        extra.append({"node": b.keys[j], "op_type": n.op_type, "kind": kind, "tensor": tensor})
    tensors = [{"tensor": t, "reference": a.types[t], "candidate": b.types[t]}
               for t in a.types if t in b.types and a.types[t] != b.types[t]]  # fmt: skip
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    kinds: dict[str, int] = {}
    for e in extra:  # a QDQ pair counted once, by its QuantizeLinear
        if not (e["kind"] == "qdq pair" and e["op_type"] == "DequantizeLinear"):
            kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    return {
        "step": "compare",
        "reference": str(reference),
        "candidate": str(candidate),
        "nodes": rows,
        "inserted": extra,
        "tensors": tensors,
        "summary": {
            **counts,
            "reference_nodes": len(a.nodes),
            "candidate_nodes": len(b.nodes),
            "inserted": {k: v for k, v in kinds.items() if v},
            "in_float": sum(r.get("precision") == "float" for r in rows),
            "in_int8": sum(r.get("precision") == "int8" for r in rows),
        },
    }
