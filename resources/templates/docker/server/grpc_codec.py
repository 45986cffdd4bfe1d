"""gRPC messages to tensors and back: Open Inference Protocol v2 (ModelInfer) and TF Serving
(Predict), checked against the model's signature exactly as REST requests are (server/decode.py).
Pure functions of protobuf messages and numpy: no grpc, no ONNX Runtime."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from server.decode import NUMPY_TO_V2, RequestError, Signature, binary_tensor, little_endian_bytes
from server.protos import oip_v2_pb2, tensorflow_pb2

# ModelInfer's typed lists: which InferTensorContents field carries each v2 datatype.
V2_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}

# TensorFlow DataType numbers (server/protos/tensorflow.proto) <-> numpy, and the TensorProto
# list that carries each when tensor_content is not used.
NUMPY_TO_TF = {
    "float32": tensorflow_pb2.DT_FLOAT,
    "float64": tensorflow_pb2.DT_DOUBLE,
    "int32": tensorflow_pb2.DT_INT32,
    "uint8": tensorflow_pb2.DT_UINT8,
    "int16": tensorflow_pb2.DT_INT16,
    "int8": tensorflow_pb2.DT_INT8,
    "int64": tensorflow_pb2.DT_INT64,
    "bool": tensorflow_pb2.DT_BOOL,
    "uint16": tensorflow_pb2.DT_UINT16,
    "float16": tensorflow_pb2.DT_HALF,
    "uint32": tensorflow_pb2.DT_UINT32,
    "uint64": tensorflow_pb2.DT_UINT64,
}
TF_TO_NUMPY = {v: k for k, v in NUMPY_TO_TF.items()}
TF_VALUES = {
    "float32": "float_val",
    "float64": "double_val",
    "int32": "int_val",
    "uint8": "int_val",
    "int16": "int_val",
    "int8": "int_val",
    "uint16": "int_val",
    "int64": "int64_val",
    "bool": "bool_val",
    "float16": "half_val",
    "uint32": "uint32_val",
    "uint64": "uint64_val",
}


def v2_feeds(
    request: oip_v2_pb2.ModelInferRequest, signature: Signature
) -> tuple[dict[str, np.ndarray], list[str]]:
    """A ModelInferRequest's inputs as checked arrays, and the outputs it asks for."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise RequestError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "when used, it carries every input, in order"
        )
    feeds: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name, shape, datatype = tensor.name, list(tensor.shape), tensor.datatype
        if name in feeds:
            raise RequestError(f"input {name!r} is given twice")
        if raw:
            feeds[name] = binary_tensor(signature, name, raw[index], shape, datatype)
            continue
        field = V2_CONTENTS.get(datatype)
        if field is None:
            expected = NUMPY_TO_V2.get(signature.info(name).dtype)
            raise RequestError(
                f"input {name!r}: datatype {datatype or '(empty)'} cannot be sent in contents; "
                f"the model expects {expected} (FP16 goes in raw_input_contents)"
            )
        values = getattr(tensor.contents, field)
        feeds[name] = signature.tensor(name, np.asarray(values), shape, datatype)
    return feeds, [o.name for o in request.outputs]


def v2_response(
    request: oip_v2_pb2.ModelInferRequest,
    results: dict[str, np.ndarray],
    name: str,
    version: str,
) -> oip_v2_pb2.ModelInferResponse:
    """The ModelInferResponse for `results`: shapes and datatypes, values as raw bytes (as
    Triton answers; tritonclient's as_numpy reads them)."""
    response = oip_v2_pb2.ModelInferResponse(model_name=name, model_version=version, id=request.id)
    for output_name, array in results.items():
        response.outputs.add(
            name=output_name,
            datatype=NUMPY_TO_V2.get(array.dtype.name, "BYTES"),
            shape=list(array.shape),
        )
        response.raw_output_contents.append(little_endian_bytes(array))
    return response


def tf_array(name: str, proto: tensorflow_pb2.TensorProto, signature: Signature) -> np.ndarray:
    """A TF Serving request's TensorProto as a checked array (tensor_content or typed lists; a
    single value fills the whole shape, as in TensorFlow)."""
    info = signature.info(name)
    dtype = TF_TO_NUMPY.get(proto.dtype)
    if dtype != info.dtype:
        got = tensorflow_pb2.DataType.Name(proto.dtype) if proto.dtype in TF_TO_NUMPY else None
        want = tensorflow_pb2.DataType.Name(NUMPY_TO_TF[info.dtype])
        raise RequestError(
            f"input {name!r} has dtype {got or proto.dtype} but the model expects {want}"
        )
    if proto.tensor_shape.unknown_rank:
        raise RequestError(f"input {name!r}: tensor_shape must be known (unknown_rank is set)")
    shape = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in shape):
        raise RequestError(f"input {name!r}: tensor_shape has a negative dimension {shape}")
    if proto.tensor_content:
        return binary_tensor(signature, name, proto.tensor_content, shape, NUMPY_TO_V2[dtype])
    values: Any = getattr(proto, TF_VALUES[dtype])
    if dtype == "float16":  # half_val holds the bit patterns
        values = np.asarray(values, dtype=np.int64).astype(np.uint16).view(np.float16)
    values = np.asarray(values)
    needed = math.prod(shape)
    if values.size == 1 and needed > 1:
        values = np.full(needed, values[0])
    return signature.tensor(name, values, shape, None)


def tf_tensor(array: np.ndarray) -> tensorflow_pb2.TensorProto:
    """An output as TF Serving answers it (tf.make_ndarray reads it)."""
    return tensorflow_pb2.TensorProto(
        dtype=NUMPY_TO_TF.get(array.dtype.name, tensorflow_pb2.DT_INVALID),
        tensor_shape=tensorflow_pb2.TensorShapeProto(
            dim=[tensorflow_pb2.TensorShapeProto.Dim(size=int(d)) for d in array.shape]
        ),
        tensor_content=little_endian_bytes(array),
    )


def tf_signature(inputs: list[Any], outputs: list[Any]) -> tensorflow_pb2.SignatureDef:
    """The model's signature as TF Serving describes a SavedModel's `serving_default`."""

    def info(t: Any) -> tensorflow_pb2.TensorInfo:
        return tensorflow_pb2.TensorInfo(
            name=t.name,
            dtype=NUMPY_TO_TF.get(t.dtype, tensorflow_pb2.DT_INVALID),
            tensor_shape=tensorflow_pb2.TensorShapeProto(
                dim=[
                    tensorflow_pb2.TensorShapeProto.Dim(size=-1 if d is None else d)
                    for d in t.shape
                ]
            ),
        )

    return tensorflow_pb2.SignatureDef(
        inputs={t.name: info(t) for t in inputs},
        outputs={t.name: info(t) for t in outputs},
        method_name="tensorflow/serving/predict",
    )
