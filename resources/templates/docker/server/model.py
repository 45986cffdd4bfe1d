"""The served model: an ONNX Runtime session, its signature, and request-to-tensor conversion."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

# Open Inference Protocol v2 datatypes <-> numpy.
V2_TO_NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
NUMPY_TO_V2 = {np.dtype(v).name: k for k, v in V2_TO_NUMPY.items()}
ORT_TO_NUMPY = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


class RequestError(Exception):
    """A client's mistake: becomes a 4xx response with this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class TensorInfo:
    name: str
    dtype: str  # numpy name
    shape: list[int | None]  # None for a dynamic dim

    def v2(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": NUMPY_TO_V2.get(self.dtype, "BYTES"),
            "shape": [-1 if d is None else d for d in self.shape],
        }


def _info(arg: Any) -> TensorInfo:
    shape = [d if isinstance(d, int) and d >= 0 else None for d in arg.shape]
    return TensorInfo(arg.name, ORT_TO_NUMPY.get(arg.type, "float32"), shape)


class ServedModel:
    """One ONNX model loaded from model_dir (model.onnx + config.json)."""

    def __init__(self, model_dir: Path, threads: int = 0, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        config_path = model_dir / "config.json"
        self.config = json.loads(config_path.read_text()) if config_path.exists() else {}
        self.name: str = self.config.get("name", "model")
        self.version: str = str(self.config.get("version", "1"))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads > 0:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(model_dir / self.config.get("file", "model.onnx")),
            opts,
            providers=["CPUExecutionProvider"],
        )
        self.inputs = [_info(a) for a in self.session.get_inputs()]
        self.outputs = [_info(a) for a in self.session.get_outputs()]

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnxruntime_onnx",
            "inputs": [t.v2() for t in self.inputs],
            "outputs": [t.v2() for t in self.outputs],
        }

    def warm_up(self) -> None:
        feeds = {}
        for t in self.inputs:
            shape = [1 if d is None else d for d in t.shape]
            feeds[t.name] = np.zeros(shape, dtype=t.dtype)
        self.session.run(None, feeds)

    def check(self, name: str, array: np.ndarray) -> np.ndarray:
        """Validate one input tensor against the signature; RequestError says what is wrong."""
        info = next((t for t in self.inputs if t.name == name), None)
        if info is None:
            known = ", ".join(t.name for t in self.inputs)
            raise RequestError(f"unknown input {name!r}; the model's inputs are: {known}")
        if len(array.shape) != len(info.shape) or any(
            d is not None and d != a for d, a in zip(info.shape, array.shape, strict=True)
        ):
            expected = [-1 if d is None else d for d in info.shape]
            raise RequestError(
                f"input {name!r} has shape {list(array.shape)} but the model expects "
                f"{expected} (-1 = any size)"
            )
        if array.ndim and info.shape and info.shape[0] is None and array.shape[0] > self.max_batch:
            raise RequestError(
                f"input {name!r}: a batch of {array.shape[0]} exceeds this server's limit of "
                f"{self.max_batch} (MAX_BATCH); split the request",
                413,
            )
        return array

    def tensor(
        self, name: str, data: Any, shape: list[int] | None, datatype: str | None
    ) -> np.ndarray:
        """A request tensor (v2 style: flat or nested data + shape + datatype) as a numpy array."""
        info = next((t for t in self.inputs if t.name == name), None)
        if info is None:
            known = ", ".join(t.name for t in self.inputs)
            raise RequestError(f"unknown input {name!r}; the model's inputs are: {known}")
        expected_v2 = NUMPY_TO_V2.get(info.dtype)
        if datatype is not None and datatype != expected_v2:
            raise RequestError(
                f"input {name!r} has datatype {datatype} but the model expects {expected_v2}"
            )
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                array = np.asarray(data, dtype=info.dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            raise RequestError(
                f"input {name!r}: data is not a list of {expected_v2} numbers ({exc})"
            ) from exc
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            # 1e39 is a finite JSON number but overflows FP32 (and FP16 overflows sooner).
            raise RequestError(f"input {name!r}: a value is out of range for {expected_v2}")
        if shape is not None:
            if not isinstance(shape, list) or not all(
                type(d) is int and d >= 0
                for d in shape  # not bool, a subclass of int
            ):
                raise RequestError(f"input {name!r}: shape must be a list of non-negative integers")
            needed = math.prod(shape)  # Python ints: np.prod wraps around at 2**63
            if needed != array.size:
                raise RequestError(
                    f"input {name!r}: shape {shape} needs {needed} values but data has {array.size}"
                )
            array = array.reshape(shape)
        return self.check(name, array)

    def infer(
        self, feeds: dict[str, np.ndarray], wanted: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        missing = [t.name for t in self.inputs if t.name not in feeds]
        if missing:
            raise RequestError(f"missing input(s): {', '.join(missing)}")
        names = [t.name for t in self.outputs]
        if wanted:
            unknown = [w for w in wanted if w not in names]
            if unknown:
                raise RequestError(
                    f"unknown output(s) {unknown}; the model's outputs are: {', '.join(names)}"
                )
        results = self.session.run(wanted or None, feeds)
        return dict(zip(wanted or names, results, strict=True))
