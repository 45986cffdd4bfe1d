"""Where a variant loses accuracy, per node of the float graph (issue 16's error overlays).

INT8 (QDQ) variants: the measurement the fallback ranks its culprits by
(`workflows.quantization.fallback.measure_errors`, ONNX Runtime's qdq_loss_debug, median
per-channel SQNR): per quantized activation the noise quantizing it adds ("local") and the noise
accumulated up to it against the float model ("accumulated"), per weight its own SQNR. Other
variants that keep the float graph's tensor names (FP16 from onnxconverter-common, a pruned or
clustered copy): each shared intermediate tensor against the float model's. A node's figures are
those of its worst measured output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows.data import Dataset
from workflows.quantization.fallback import (
    REMOVABLE_ACTIVATIONS,
    collect_both,
    measure_errors,
    median_channel_sqnr,
    node_index,
)

SAMPLES = 32  # as many as the fallback ranks on: the medians settle well before


def _is_qdq(path: Path) -> bool:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return any(n.op_type == "DequantizeLinear" for n in proto.graph.node)


def _same_graph_errors(
    float_path: Path, variant_path: Path, data: Dataset, workdir: Path
) -> dict[str, dict[str, float]]:
    """Every intermediate tensor both models have, the variant's against the float model's."""
    import numpy as np

    reference, variant = collect_both(float_path, variant_path, data, workdir)
    errors = {}
    for name, values in reference.items():
        other = variant.get(name)
        if other is None or not np.issubdtype(np.asarray(values[0]).dtype, np.floating):
            continue
        sqnr = median_channel_sqnr(values, [np.asarray(v, np.float32) for v in other])
        errors[name] = {"local": sqnr, "accumulated": sqnr}
    return errors


def node_errors(
    float_path: Path, variant_path: Path, data: Dataset, workdir: Path
) -> dict[str, Any]:
    """Per node of the float model: the SQNR (dB, median per channel; lower is worse) its
    output keeps in the variant, which output that is, and for INT8 its weight's SQNR.

    Returns {"kind": "int8" | "same-graph", "samples", "nodes": [...], "worst": node name}; nodes
    in the float graph's order, None where nothing of the node was measured (not quantized, or a
    tensor the variant does not have)."""
    import onnx

    data = data.take(SAMPLES)
    int8 = _is_qdq(variant_path)
    weights: dict[str, float] = {}
    if int8:
        activations, weights = measure_errors(float_path, variant_path, data, workdir)
        tensors = {
            t: {"local": e["qdq_err"], "accumulated": e.get("xmodel_err")}
            for t, e in activations.items()
        }
    else:
        tensors = _same_graph_errors(float_path, variant_path, data, workdir)

    proto = onnx.load(str(float_path), load_external_data=False)
    by_name = {n.name: n for n in proto.graph.node}
    _, consumers = node_index(proto)
    ranks = {t.name: len(t.dims) for t in proto.graph.initializer}

    rows = []
    for node in proto.graph.node:
        measured = [t for t in node.output if t in tensors]
        if not measured and int8 and len(node.output) == 1:
            # Conv -> Relu: the QDQ quantizer quantizes the pair's output only (one INT8 kernel).
            after = [by_name[c] for c in consumers.get(node.output[0], []) if c in by_name]
            if len(after) == 1 and after[0].op_type in REMOVABLE_ACTIVATIONS:
                measured = [t for t in after[0].output if t in tensors]
        row: dict[str, Any] = {"node": node.name, "op_type": node.op_type, "tensor": None,
                               "sqnr_db": None, "accumulated_db": None, "weight_sqnr_db": None}  # fmt: skip
        if measured:
            worst = min(measured, key=lambda t: tensors[t]["local"])
            row.update(tensor=worst, sqnr_db=_db(tensors[worst]["local"]),
                       accumulated_db=_db(tensors[worst]["accumulated"]))  # fmt: skip
        own = [weights[i] for i in node.input if i in weights and ranks.get(i, 0) > 1]
        if own:
            row["weight_sqnr_db"] = _db(min(own))
        rows.append(row)
    scored = [r for r in rows if r["sqnr_db"] is not None]
    return {
        "kind": "int8" if int8 else "same-graph",
        "samples": len(data),
        "nodes": rows,
        "worst": min(scored, key=lambda r: r["sqnr_db"])["node"] if scored else None,
    }


def _db(value: float | None) -> float | None:
    """Rounded for the report; infinite (no noise at all) kept as a large finite number."""
    if value is None:
        return None
    return round(min(float(value), 999.0), 3)
