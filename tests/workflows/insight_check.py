"""An independent recomputation of the insight step's INT8 error per node, straight from ONNX
Runtime's qdq_loss_debug (shared by the engine tests and the real-model suite)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workflows.quantization.quantizers import DatasetReader

LOSSLESS = 150.0  # dB


def _median_channel_sqnr(reference, candidate) -> float:
    """Median over channels (axis 1; a 1-D tensor: its elements) of 20 log10(|x| / |x - y|):
    written out again here, so that the test does not check the module against itself."""
    x = np.concatenate(reference).astype(np.float64)
    y = np.concatenate(candidate).astype(np.float64)
    axis = min(1, x.ndim - 1)
    x = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    y = np.moveaxis(y, axis, 0).reshape(y.shape[axis], -1)
    signal, noise = np.linalg.norm(x, axis=1), np.linalg.norm(x - y, axis=1)
    live = signal > 0
    if not live.any():
        return float("inf")  # an all-zero tensor (ConstantOfShape): nothing to lose
    return float(np.median(20 * np.log10(signal[live] / np.maximum(noise[live], 1e-300))))


def _recomputed(float_path, qdq_path, data, tmp_path) -> dict[str, tuple[float, float]]:
    """Per quantized activation, (local, accumulated) SQNR straight from ORT's qdq_loss_debug,
    the Relu the QDQ quantizer folds into uint8 applied to the pre-quantization tensor."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg

    with contextlib.redirect_stdout(io.StringIO()):
        dbg.modify_model_output_intermediate_tensors(str(float_path), str(tmp_path / "f.onnx"))
        dbg.modify_model_output_intermediate_tensors(str(qdq_path), str(tmp_path / "q.onnx"))
        float_acts = dbg.collect_activations(str(tmp_path / "f.onnx"), DatasetReader(data))
        qdq_acts = dbg.collect_activations(str(tmp_path / "q.onnx"), DatasetReader(data))
    matched = dbg.create_activation_matching(qdq_acts, float_acts)
    relu_out = {n.output[0] for n in onnx.load(str(float_path)).graph.node if n.op_type == "Relu"}
    figures = {}
    for tensor, m in matched.items():
        pre = [np.maximum(a, 0) for a in m["pre_qdq"]] if tensor in relu_out else m["pre_qdq"]
        figures[tensor] = (
            _median_channel_sqnr(pre, m["post_qdq"]),
            _median_channel_sqnr(m["float"], m["post_qdq"]),
        )
    return figures


def check_int8_errors(
    result: dict[str, Any], float_path: Path, qdq_path: Path, data, tmp_path: Path
) -> int:
    """Every node's local and accumulated SQNR in `result` (node_errors on `data`) equals the
    recomputed one within 0.1 dB; returns how many nodes carried a figure."""
    recomputed = _recomputed(float_path, qdq_path, data.take(result["samples"]), tmp_path)
    checked = 0
    for row in result["nodes"]:
        if row["tensor"] is None:
            continue
        local, accumulated = recomputed[row["tensor"]]
        # Past float32's own rounding (~140 dB) there is no noise to compare: a MaxPool or Concat
        # re-quantized on its input's own grid.
        if local > LOSSLESS:
            assert row["sqnr_db"] > LOSSLESS, row
        else:
            assert row["sqnr_db"] == pytest.approx(local, abs=0.1), row
        if accumulated > LOSSLESS:
            assert row["accumulated_db"] > LOSSLESS, row
        else:
            assert row["accumulated_db"] == pytest.approx(accumulated, abs=0.1), row
        checked += 1
    return checked
