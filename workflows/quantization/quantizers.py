"""ONNX Runtime's own quantization tooling: pre-processing, dynamic INT8, static INT8 (QDQ), FP16.

Nothing here re-implements quantization; it chooses ORT's options and names failures clearly.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workflows.data import Dataset
from workflows.errors import ConversionError, DataError, StepCancelled, first_line
from workflows.progress import Progress

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANT_TYPES = ("int8", "uint8")


def _quiet() -> contextlib.AbstractContextManager:
    # ORT's quantizer logs a line per tensor at INFO; keep our output readable.
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    return contextlib.redirect_stdout(io.StringIO())


@contextlib.contextmanager
def _quantizer_errors(src: Path, what: str) -> Iterator[None]:
    """ONNX Runtime's quantizer failing on a model (its own bugs included: per-channel weights
    with some bias layouts raise a numpy ValueError in ORT 1.32) as a ConversionError."""
    try:
        yield
    except (DataError, StepCancelled):
        raise
    except Exception as exc:
        raise ConversionError(
            f"{src}: ONNX Runtime's quantizer could not make {what}: {type(exc).__name__}: "
            f"{first_line(exc)}. Try other options (per-tensor weights, another calibration method)."
        ) from exc


def preprocess(src: Path, dst: Path) -> str:
    """quant_pre_process (shape inference + graph optimisation); falls back to a plain copy."""
    import tempfile

    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src).resolve(), Path(dst).resolve()
    try:
        # When symbolic shape inference gives up, ORT saves a debug copy of the model (and its
        # weights, as a uuid-named .data file) into the working directory: the user's. Run it in
        # a scratch one (this is a step's own process; the paths are absolute).
        with (
            _quiet(),
            tempfile.TemporaryDirectory(prefix="dockyard-shapes-") as scratch,
            contextlib.chdir(scratch),
        ):
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return "ok"
    except Exception as exc:  # symbolic shape inference fails on some exotic graphs: skip it
        try:
            with _quiet():
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
            return f"ok without symbolic shape inference ({type(exc).__name__})"
        except Exception as exc2:
            dst.write_bytes(src.read_bytes())
            return f"skipped: {exc2}"


class DatasetReader:
    """ORT CalibrationDataReader over a Dataset, a batch at a time (re-iterable via rewind).

    It also implements ORT's strided-calibration protocol (`len()` in batches, `set_range`), so
    that `quantize_static` collects one batch per call and merges it before the next: without
    it, ORT's histogram calibrators (Entropy, Percentile) keep every intermediate tensor of every
    sample in memory until the end (8.1 GB for 128 YOLOv8n samples; MinMax keeps only reduced
    ranges). `on_batch(samples_done, total)` is called after each batch is handed out."""

    def __init__(
        self,
        data: Dataset,
        batch_size: int = 16,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.data, self.batch_size, self.on_batch = data, data.batch_size(batch_size), on_batch
        self._it: Iterator[dict[str, np.ndarray]] = iter(())
        self.rewind()

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def _batches(self, start: int, stop: int) -> Iterator[dict[str, np.ndarray]]:
        total = len(self.data)
        for i in range(start, stop):
            yield self.data.batch(i, self.batch_size)
            if self.on_batch is not None:
                self.on_batch(min((i + 1) * self.batch_size, total), total)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = self._batches(start_index, min(end_index, len(self)))

    def rewind(self) -> None:
        self._it = self._batches(0, len(self))

    def __iter__(self):
        self.rewind()
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def _qtype(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    if name not in QUANT_TYPES:
        raise DataError(f"unknown quantization type {name!r}; use one of {', '.join(QUANT_TYPES)}")
    return QuantType.QInt8 if name == "int8" else QuantType.QUInt8


# Entropy and Percentile calibration build a 2,048-bin histogram of every tensor in numpy, and
# their time grows faster than the samples: on magika (69 tensors, AVX2-only EPYC) Percentile took
# 34.5 s on 256 samples and 89.7 s on 512 (MinMax: 10.4 s on 512). They judge each distribution's
# shape, which a few hundred samples set: they calibrate on a seeded subset of this many.
HISTOGRAM_SAMPLES = 256


def quantize_static_qdq(
    src: Path,
    dst: Path,
    calibration: Dataset,
    method: str = "minmax",
    per_channel: bool = False,
    activation_type: str = "uint8",
    weight_type: str = "int8",
    nodes_to_exclude: Sequence[str] = (),
    percentile: float = 99.999,
    reduce_range: bool = False,
    op_types: Sequence[str] | None = None,
    progress: Progress | None = None,
    ranges_cache: Path | None = None,
) -> None:
    """Static INT8 in QDQ format with calibration on `calibration` (QOperator is 10-40x slower
    here). `reduce_range`: 7-bit weights, which cannot saturate u8s8 kernels without VNNI.
    Entropy and Percentile calibrate on at most HISTOGRAM_SAMPLES of `calibration`.

    Calibration reads the data a batch at a time (memory stays flat however many samples) and
    reports each batch to `progress`. `ranges_cache`: a folder where the tensor ranges are kept
    per calibration setting, so that tries differing only in weights, activation type or nodes
    kept in float calibrate once (ORT's calibration cache)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    if method not in CALIBRATION_METHODS:
        raise DataError(
            f"unknown calibration method {method!r}; use {', '.join(CALIBRATION_METHODS)}"
        )
    calib_method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    if method != "minmax" and len(calibration) > HISTOGRAM_SAMPLES:
        calibration = calibration.split(HISTOGRAM_SAMPLES, seed=0)[0]
    extra: dict[str, Any] = {"CalibStridedMinMax": 1}  # a batch per collect (any method)
    if method == "percentile":
        extra["CalibPercentile"] = percentile
    cache = None
    if ranges_cache is not None:
        ops = "all" if not op_types else "-".join(sorted(op_types))
        detail = f"-{percentile}" if method == "percentile" else ""
        cache = Path(ranges_cache) / f"ranges-{method}{detail}-{ops}.json"
        cache.parent.mkdir(parents=True, exist_ok=True)

    def on_batch(done: int, total: int) -> None:
        if progress is not None:
            progress.update(done / total, f"Calibrating: {done:,} of {total:,} samples")

    with _quiet(), _quantizer_errors(src, "static INT8"):
        quantize_static(
            str(src),
            str(dst),
            DatasetReader(calibration, on_batch=on_batch),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=_qtype(activation_type),
            weight_type=_qtype(weight_type),
            nodes_to_exclude=list(nodes_to_exclude) or None,
            reduce_range=reduce_range,
            op_types_to_quantize=list(op_types) if op_types else None,
            calibrate_method=calib_method,
            extra_options=extra,
            calibration_cache_path=cache,
        )


# The compute operators: static INT8 of these only leaves element-wise ops (Add, Mul, Sigmoid,
# Concat …) in float between them; on magika's file-type CNN that kept top-1 within 0.3 points
# where quantizing every op cost 65.
COMPUTE_OP_TYPES = ["Conv", "ConvTranspose", "Gemm", "MatMul"]

# Operator types dynamic INT8 quantizes: everything ORT can, or the matrix products only (what
# transformers and RNNs gain from; ConvInteger is slow on CPU and lost PP-OCRv4's recogniser half
# its characters, while MatMul-only kept 99 % of them).
DYNAMIC_OPS: dict[str, list[str] | None] = {
    "all": None,
    "matmul": ["MatMul", "Gemm", "Attention", "LSTM", "GRU", "EmbedLayerNormalization"],
}


def quantize_dynamic_int8(
    src: Path,
    dst: Path,
    per_channel: bool = False,
    weight_type: str = "int8",
    nodes_to_exclude: Sequence[str] = (),
    op_types: Sequence[str] | None = None,
) -> None:
    """Dynamic INT8: weights quantized ahead, activations at run time (no calibration data);
    `op_types` limits it to those operator types."""
    from onnxruntime.quantization import quantize_dynamic

    with _quiet(), _quantizer_errors(src, "dynamic INT8"):
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=per_channel,
            weight_type=_qtype(weight_type),
            nodes_to_exclude=list(nodes_to_exclude) or None,
            op_types_to_quantize=list(op_types) if op_types else None,
        )


def float_tensor_count(proto: Any) -> int:
    """float32 initializers plus float32 graph inputs."""
    from onnx import TensorProto

    n = sum(1 for t in proto.graph.initializer if t.data_type == TensorProto.FLOAT)
    return n + sum(
        1 for i in proto.graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT
    )


def convert_fp16(src: Path, dst: Path) -> None:
    """FP16 weights and compute, float32 inputs and outputs (onnxconverter-common)."""
    import onnx
    from onnxconverter_common import float16

    proto = onnx.load(str(src))
    if not float_tensor_count(proto):
        raise DataError(
            f"{src}: the model has no float32 weights or inputs (already quantized or integer-only), "
            "so there is nothing to convert to FP16"
        )
    with _quiet():
        half = float16.convert_float_to_float16(proto, keep_io_types=True)
    onnx.save(half, str(dst))
