"""The served model: an ONNX Runtime session, its signature, and request-to-tensor conversion."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from server.decode import NUMPY_TO_V2, RequestError, Signature, TensorInfo

__all__ = ["NUMPY_TO_V2", "RequestError", "ServedModel", "TensorInfo"]

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


def _info(arg: Any) -> TensorInfo:
    shape = [d if isinstance(d, int) and d >= 0 else None for d in arg.shape]
    return TensorInfo(arg.name, ORT_TO_NUMPY.get(arg.type, "float32"), shape)


class ServedModel:
    """One ONNX model loaded from model_dir (model.onnx + config.json)."""

    def __init__(self, model_dir: Path, threads: int = 0, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self.model_dir = model_dir
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
        self.signature = Signature(self.inputs, max_batch)

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnxruntime_onnx",
            "inputs": [t.v2() for t in self.inputs],
            "outputs": [t.v2() for t in self.outputs],
        }

    def warm_up(self) -> None:
        """One inference before the server says it is ready: on warmup.npz (the sample request
        the export was checked with, which fits the model's dynamic sizes), else on zeros with
        unknown dimensions as 1 — which a model may refuse (a detector whose sizes must be
        multiples of 32): then the first request pays for the warm-up instead of start-up failing."""
        sample = self.model_dir / "warmup.npz"
        if sample.exists():
            with np.load(sample, allow_pickle=False) as data:
                self.session.run(None, {k: data[k] for k in data.files})
            return
        feeds = {}
        for t in self.inputs:
            shape = [1 if d is None else d for d in t.shape]
            feeds[t.name] = np.zeros(shape, dtype=t.dtype)
        try:
            self.session.run(None, feeds)
        except Exception as exc:  # any refusal: serve anyway, say why
            logging.getLogger("server").warning(
                "warm-up skipped: the model refused zeros with unknown dimensions as 1 (%s)",
                str(exc).splitlines()[0][:300],
            )

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
        try:
            results = self.session.run(wanted or None, feeds)
        except InvalidArgument as exc:
            # Shapes and dtypes passed the signature check: what is left is a size the model
            # refuses (a dimension that must be a multiple of 32, say) - the request's doing.
            raise RequestError(f"the model refused this input: {str(exc)[:500]}") from exc
        return dict(zip(wanted or names, results, strict=True))
