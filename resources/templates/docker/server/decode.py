"""Request bodies to tensors: strict JSON parsing and checks against the model's signature.

No ONNX Runtime here, so the same functions run in the server's threads (small bodies) and in a
separate decoding process (large ones): json.loads and list-to-array conversion hold the GIL for
their whole run (~0.5 s for a 16 MiB body), which in the serving process would stall every other
connection, /v2/health/live included. See app.decode().
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

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


class RequestError(Exception):
    """A client's mistake: becomes a 4xx response with this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self):  # keeps the status across the decoding process's pickling
        return (RequestError, (str(self), self.status))


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


@dataclass
class Signature:
    """What a request must match: the model's inputs and the batch limit."""

    inputs: list[TensorInfo]
    max_batch: int = 64
    names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.names = [t.name for t in self.inputs]

    def info(self, name: Any) -> TensorInfo:
        found = next((t for t in self.inputs if t.name == name), None)
        if found is None:
            raise RequestError(
                f"unknown input {name!r}; the model's inputs are: {', '.join(self.names)}"
            )
        return found

    def check(self, name: str, array: np.ndarray) -> np.ndarray:
        """Validate one input tensor against the signature; RequestError says what is wrong."""
        info = self.info(name)
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
        info = self.info(name)
        expected_v2 = NUMPY_TO_V2.get(info.dtype)
        if datatype is not None:
            _same_datatype(name, datatype, expected_v2)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                array = np.asarray(data, dtype=info.dtype)
                if array.dtype.kind in "iu" and not isinstance(data, np.ndarray):
                    _whole_numbers(name, data, array, expected_v2)
        except (TypeError, ValueError, OverflowError) as exc:
            raise RequestError(
                f"input {name!r}: data is not a list of {expected_v2} numbers ({exc})"
            ) from exc
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            # 1e39 is a finite JSON number but overflows FP32 (and FP16 overflows sooner).
            raise RequestError(f"input {name!r}: a value is out of range for {expected_v2}")
        if shape is not None:
            _valid_shape(name, shape)
            needed = math.prod(shape)  # Python ints: np.prod wraps around at 2**63
            if needed != array.size:
                raise RequestError(
                    f"input {name!r}: shape {shape} needs {needed} values but data has {array.size}"
                )
            array = array.reshape(shape)
        return self.check(name, array)


def _whole_numbers(name: str, data: Any, array: np.ndarray, expected_v2: str | None) -> None:
    """Integer inputs: 1.5 or 1e30 must not become 1 or a wrapped-around number silently."""
    exact = np.asarray(data)
    if exact.dtype.kind == "f" and (
        not np.isfinite(exact).all() or (exact != np.trunc(exact)).any()
    ):
        raise RequestError(f"input {name!r}: {expected_v2} data must be whole numbers")
    if exact.dtype.kind in "fiu" and exact.size and not np.array_equal(exact, array):
        info = np.iinfo(array.dtype)
        raise RequestError(
            f"input {name!r}: a value is out of range for {expected_v2} ({info.min}..{info.max})"
        )


def watch_parent() -> None:
    """Decoding-process initializer: exit as soon as the server process is gone (killed with
    SIGKILL, or by the OOM killer), instead of living on as an orphan holding its memory."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _same_datatype(name: str, datatype: Any, expected_v2: str | None) -> None:
    if datatype != expected_v2:
        raise RequestError(
            f"input {name!r} has datatype {datatype} but the model expects {expected_v2}"
        )


def _valid_shape(name: str, shape: Any) -> None:
    if not isinstance(shape, list) or not all(
        type(d) is int and d >= 0
        for d in shape  # not bool, a subclass of int
    ):
        raise RequestError(
            f"input {name!r}: shape must be a list of non-negative integers, not {str(shape)[:100]}"
        )


def little_endian_bytes(array: np.ndarray) -> bytes:
    """An array's bytes as every binary protocol here carries them: little-endian, row-major."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def binary_tensor(
    signature: Signature, name: str, chunk: bytes | memoryview, shape: Any, datatype: Any
) -> np.ndarray:
    """An input sent as raw bytes (Triton's binary tensor data extension): little-endian,
    row-major, exactly shape x itemsize bytes."""
    info = signature.info(name)
    expected_v2 = NUMPY_TO_V2.get(info.dtype)
    _same_datatype(name, datatype, expected_v2)  # required here: the bytes alone do not say
    _valid_shape(name, shape)
    dtype = np.dtype(info.dtype).newbyteorder("<")
    needed = math.prod(shape) * dtype.itemsize
    if needed != len(chunk):
        raise RequestError(
            f"input {name!r}: shape {shape} of {datatype} needs {needed} bytes but "
            f"binary_data_size is {len(chunk)}"
        )
    array = np.frombuffer(chunk, dtype=dtype).reshape(shape).astype(info.dtype, copy=True)
    return signature.check(name, array)


def parse_json(body: bytes) -> Any:
    """Strict JSON (RFC 8259): NaN, Infinity, numbers that overflow a double and integers longer
    than 64 bits are refused, as is deep nesting (each would otherwise reach numpy or the
    response and end in a 500). orjson parses (~4x faster than json.loads with these checks as
    hooks); a body it refuses is parsed again by the standard library, whose hooks name the
    mistake ("NaN is not a JSON number") where orjson gives only a position."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        _explain(body)
        raise RequestError(f"request body is not valid JSON: {exc}") from exc


def _explain(body: bytes) -> None:
    """Raise the standard library's specific RequestError for a body orjson refused."""
    try:
        json.loads(body, parse_constant=_no_constant, parse_float=_finite, parse_int=_int)
    except RecursionError:
        raise RequestError("request body is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError and the refusals of the hooks
        raise RequestError(f"request body is not valid JSON: {exc}") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range for a number")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise ValueError(f"the integer {text[:20]}… is too large")
    return int(text)


@dataclass
class V2Request:
    feeds: dict[str, np.ndarray]
    wanted: list[str]
    id: Any = None
    has_id: bool = False
    binary_outputs: set[str] = field(default_factory=set)  # answered as raw bytes
    binary_all: bool = False  # parameters.binary_data_output: every output as raw bytes


def _split(body: bytes, header_length: int | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary tail of a request (Inference-Header-Content-Length)."""
    if header_length is None:
        return body, memoryview(b"")
    if not 0 <= header_length <= len(body):
        raise RequestError(
            f"Inference-Header-Content-Length is {header_length} but the body has {len(body)} bytes"
        )
    return body[:header_length], memoryview(body)[header_length:]


def _flag(parameters: Any, key: str) -> bool:
    return isinstance(parameters, dict) and parameters.get(key) is True


def v2_request(body: bytes, signature: Signature, header_length: int | None = None) -> V2Request:
    """An Open Inference Protocol v2 infer request, decoded and checked: JSON, or a JSON header
    of `header_length` bytes followed by raw tensors (Triton's binary tensor data extension)."""
    header, binary = _split(body, header_length)
    return _v2(parse_json(header), binary, signature)


def _v2(request: Any, binary: memoryview, signature: Signature) -> V2Request:
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise RequestError(
            'expected a JSON object with an "inputs" list (Open Inference Protocol v2)'
        )
    requested = request.get("outputs", [])
    if not isinstance(requested, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        raise RequestError('"outputs" must be a list of {"name": ...} objects')
    feeds = {}
    offset = 0
    for item in request["inputs"]:
        parameters = item.get("parameters") if isinstance(item, dict) else None
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None and isinstance(item, dict) and "name" in item:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise RequestError(
                    f"input {item['name']!r}: binary_data_size {size!r} does not fit the "
                    f"{len(binary) - offset} bytes of binary data left"
                )
            feeds[item["name"]] = binary_tensor(
                signature, item["name"], binary[offset : offset + size],
                item.get("shape"), item.get("datatype"),
            )  # fmt: skip
            offset += size
            continue
        if not isinstance(item, dict) or "name" not in item or "data" not in item:
            raise RequestError('each input needs "name", "shape", "datatype" and "data"')
        feeds[item["name"]] = signature.tensor(
            item["name"], item["data"], item.get("shape"), item.get("datatype")
        )
    if offset != len(binary):
        raise RequestError(
            f"{len(binary) - offset} bytes of binary data are not claimed by any input's "
            "binary_data_size"
        )
    return V2Request(
        feeds,
        [o["name"] for o in requested],
        request.get("id"),
        "id" in request,
        {o["name"] for o in requested if _flag(o.get("parameters"), "binary_data")},
        _flag(request.get("parameters"), "binary_data_output"),
    )


def v1_request(body: bytes, signature: Signature) -> dict[str, np.ndarray]:
    """A TF-Serving-style predict request (row or columnar format), decoded and checked."""
    return _v1(parse_json(body), signature)


def any_request(body: bytes, signature: Signature) -> V2Request | dict[str, np.ndarray]:
    """A JSON request in either format, parsed once (SageMaker's /invocations): a V2Request when
    "inputs" is a list of named tensors (Open Inference Protocol v2), else TF Serving's."""
    request = parse_json(body)
    if not isinstance(request, dict) or ("inputs" not in request and "instances" not in request):
        raise RequestError(
            'expected an Open Inference Protocol v2 request {"inputs": [{"name": ...}]} or TF '
            'Serving\'s {"instances": [...]} (row format) or {"inputs": ...} (columnar)'
        )
    inputs = request.get("inputs")
    if isinstance(inputs, list) and inputs and all(isinstance(t, dict) for t in inputs):
        return _v2(request, memoryview(b""), signature)
    return _v1(request, signature)


def _v1(request: Any, signature: Signature) -> dict[str, np.ndarray]:
    if not isinstance(request, dict) or ("instances" not in request and "inputs" not in request):
        raise RequestError(
            'expected {"instances": [...]} (row format) or {"inputs": ...} (columnar)'
        )
    names = signature.names
    if "instances" in request:
        rows = request["instances"]
        if not isinstance(rows, list) or not rows:
            raise RequestError('"instances" must be a non-empty list')
        if len(names) == 1 and not isinstance(rows[0], dict):
            columns = {names[0]: rows}
        elif all(isinstance(r, dict) for r in rows):
            columns = {n: [r.get(n) for r in rows] for n in names}
        else:
            raise RequestError("multi-input models take instances as objects keyed by input name")
    else:
        inputs = request["inputs"]
        columns = inputs if isinstance(inputs, dict) else {names[0]: inputs}
    return {n: signature.tensor(n, v, None, None) for n, v in columns.items()}


def image_feeds(
    body: bytes, recipe: dict[str, Any], signature: Signature, max_pixels: int
) -> dict[str, np.ndarray]:
    """An image/* body as a batch of one for the model's single input (server/images.py)."""
    from server.images import ImageError, image_batch

    try:
        x = image_batch(body, recipe, max_pixels, "MAX_IMAGE_PIXELS")
    except ImageError as exc:
        if exc.too_large:
            raise RequestError(str(exc), 413) from None
        raise RequestError(
            f"the body is not an image this server can read (PNG, JPEG, ...): {exc}"
        ) from None
    name = signature.names[0]
    return {name: signature.check(name, x.astype(signature.info(name).dtype, copy=False))}
