"""Accuracy-driven fallback: find where INT8 loses the most and keep those nodes in float.

Uses ONNX Runtime's own debugging tools (`onnxruntime.quantization.qdq_loss_debug`): it runs the
float and the QDQ model on the same inputs, matches every quantized activation and weight with its
float twin and measures the signal-to-quantization-noise ratio (SQNR, dB; lower is worse).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.data import Dataset
from workflows.quantization.quantizers import DatasetReader


@dataclass
class Culprit:
    """A tensor whose quantization hurts, and the float-model nodes that keep it float if excluded."""

    tensor: str
    kind: str  # "activation" or "weight"
    sqnr_db: float
    nodes: list[str]


# ORT's QDQ quantizer drops these when their output is quantized (uint8 clamps them for free), so
# keeping their output in float also means keeping the node that feeds them in float.
REMOVABLE_ACTIVATIONS = ("Relu", "Clip")


def median_channel_sqnr(reference: Any, candidate: Any) -> float:
    """Median over channels of per-channel SQNR (dB).

    Written here because ORT's default SQNR is over the whole tensor, where one outlier channel
    carries almost all the energy and hides that every other channel was quantized to zero.
    """
    import numpy as np

    x = np.concatenate([np.asarray(a, np.float64) for a in reference])
    y = np.concatenate([np.asarray(a, np.float64) for a in candidate])
    # Float activations can hold -inf (basic-pitch takes the log of a zero spectrum bin): those
    # elements are left out; a non-finite quantized value where the float one is finite counts
    # as a huge error.
    finite = np.isfinite(x)
    x = np.where(finite, x, 0.0)
    y = np.nan_to_num(np.where(finite, y, 0.0), nan=1e30, posinf=1e30, neginf=-1e30)
    axis = 1 if x.ndim >= 3 else x.ndim - 1
    x = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    y = np.moveaxis(y, axis, 0).reshape(y.shape[axis], -1)
    signal = np.linalg.norm(x, axis=1)
    live = signal > 0
    if not live.any():
        return float("inf")
    noise = np.maximum(np.linalg.norm(x - y, axis=1)[live], np.finfo(np.float64).eps)
    return float(np.median(20 * np.log10(signal[live] / noise)))


def _node_index(proto: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    producer = {o: n for n in proto.graph.node for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    return producer, consumers


def rank_culprits(float_path: Path, qdq_path: Path, data: Dataset, workdir: Path) -> list[Culprit]:
    """Quantized tensors, worst SQNR first, each with the nodes to exclude to keep it in float."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg

    workdir.mkdir(parents=True, exist_ok=True)
    aug_float, aug_qdq = workdir / "float_aug.onnx", workdir / "qdq_aug.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        dbg.modify_model_output_intermediate_tensors(str(float_path), str(aug_float))
        dbg.modify_model_output_intermediate_tensors(str(qdq_path), str(aug_qdq))
        float_acts = dbg.collect_activations(str(aug_float), DatasetReader(data))
        qdq_acts = dbg.collect_activations(str(aug_qdq), DatasetReader(data))
        matched = dbg.create_activation_matching(qdq_acts, float_acts)
        act_err = dbg.compute_activation_error(matched, median_channel_sqnr)
        # ORT's compute_weight_error fails on a scalar weight (a 0-d array has no len()): the
        # same SQNR, per weight, with scalars given as 1-element arrays.
        weight_err = {
            name: dbg.compute_signal_to_quantization_noice_ratio(
                np.atleast_1d(m["float"]), np.atleast_1d(m["dequantized"])
            )
            for name, m in dbg.create_weight_matching(str(float_path), str(qdq_path)).items()
        }

    proto = onnx.load(str(float_path), load_external_data=False)
    producer, consumers = _node_index(proto)
    names = {n.name for n in proto.graph.node}
    culprits = []
    for tensor, err in act_err.items():
        # qdq_err: the noise quantizing this one tensor adds (local), not what it inherited upstream.
        nodes: list[str] = []
        node = producer.get(tensor)
        if node is not None:
            nodes.append(node.name)
            if node.op_type in REMOVABLE_ACTIVATIONS and node.input[0] in producer:
                nodes.append(producer[node.input[0]].name)
        nodes += consumers.get(tensor, [])
        nodes = [n for n in dict.fromkeys(nodes) if n in names]
        if nodes:
            culprits.append(Culprit(tensor, "activation", float(err["qdq_err"]), nodes))
    shapes = {t.name: list(t.dims) for t in proto.graph.initializer}
    for tensor, sqnr in weight_err.items():
        # A bias's int32 error follows from its input's activation scale (scale = s_in * s_w):
        # a symptom of that activation, which is ranked above. Rank real weights only.
        if len(shapes.get(tensor, [])) <= 1:
            continue
        nodes = [n for n in consumers.get(tensor, []) if n in names]
        if nodes:
            culprits.append(Culprit(tensor, "weight", float(sqnr), nodes))
    culprits.sort(key=lambda c: c.sqnr_db)
    return culprits
