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


def node_index(proto: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Each tensor's producing node, and the names of the nodes that read it."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    return producer, consumers


def _clamp_like_the_float_model(matched: dict[str, dict[str, Any]], float_path: Path) -> None:
    """Where the QDQ quantizer removed a Relu or Clip (uint8 clamps for free), the tensor before
    its QuantizeLinear is the unclamped output of the node before: clamp it as the removed node
    did, so that the clamp is not counted as quantization noise (a Gemm whose Relu zeroes half
    its outputs otherwise shows 0 dB). Idempotent where the node was kept."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(float_path), load_external_data=False)
    consts = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer if not t.dims}
    for node in proto.graph.node:
        if node.op_type not in REMOVABLE_ACTIVATIONS or node.output[0] not in matched:
            continue
        low, high = 0.0, None
        if node.op_type == "Clip":  # bounds as attributes (opset < 11) or constant inputs
            attrs = {a.name: a.f for a in node.attribute}
            given = dict(zip(("min", "max"), node.input[1:3], strict=False))
            if any(name and name not in consts for name in given.values()):
                continue  # bounds computed at run time: leave the tensor as it is
            low = consts[given["min"]] if given.get("min") else attrs.get("min")
            high = consts[given["max"]] if given.get("max") else attrs.get("max")
            if low is None and high is None:
                continue
        pair = matched[node.output[0]]
        pair["pre_qdq"] = [np.clip(a, low, high) for a in pair["pre_qdq"]]


def collect_both(
    float_path: Path, other_path: Path, data: Dataset, workdir: Path
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Every intermediate tensor of both models on `data` (qdq_loss_debug's augmented copies,
    written to `workdir`): name -> one array per batch, float model first."""
    from onnxruntime.quantization import qdq_loss_debug as dbg

    workdir.mkdir(parents=True, exist_ok=True)
    collected = []
    with contextlib.redirect_stdout(io.StringIO()):
        for path, augmented in ((float_path, "float_aug.onnx"), (other_path, "other_aug.onnx")):
            dbg.modify_model_output_intermediate_tensors(str(path), str(workdir / augmented))
            collected.append(dbg.collect_activations(str(workdir / augmented), DatasetReader(data)))
    return collected[0], collected[1]


def measure_errors(
    float_path: Path, qdq_path: Path, data: Dataset, workdir: Path
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Every quantized activation's SQNR (dB, median per channel) on `data`: "qdq_err" (the noise
    quantizing that one tensor adds) and "xmodel_err" (against the float model: the noise
    accumulated up to it); and every quantized weight's SQNR. ORT's qdq_loss_debug throughout."""
    import numpy as np
    from onnxruntime.quantization import qdq_loss_debug as dbg

    float_acts, qdq_acts = collect_both(float_path, qdq_path, data, workdir)
    with contextlib.redirect_stdout(io.StringIO()):
        matched = dbg.create_activation_matching(qdq_acts, float_acts)
        _clamp_like_the_float_model(matched, float_path)
        act_err = dbg.compute_activation_error(matched, median_channel_sqnr)
        # ORT's compute_weight_error fails on a scalar weight (a 0-d array has no len()): the
        # same SQNR, per weight, with scalars given as 1-element arrays.
        weight_err = {
            name: dbg.compute_signal_to_quantization_noice_ratio(
                np.atleast_1d(m["float"]), np.atleast_1d(m["dequantized"])
            )
            for name, m in dbg.create_weight_matching(str(float_path), str(qdq_path)).items()
        }
    return act_err, weight_err


def rank_culprits(float_path: Path, qdq_path: Path, data: Dataset, workdir: Path) -> list[Culprit]:
    """Quantized tensors, worst SQNR first, each with the nodes to exclude to keep it in float."""
    import onnx

    act_err, weight_err = measure_errors(float_path, qdq_path, data, workdir)
    proto = onnx.load(str(float_path), load_external_data=False)
    producer, consumers = node_index(proto)
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
