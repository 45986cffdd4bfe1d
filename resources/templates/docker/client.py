"""Call this server the four ways it answers, and check its answer against the one the model gave
when it was exported (sample_response.json).

    python client.py                          # all four protocols, against localhost
    python client.py --protocol rest,grpc     # two of them
    python client.py --protocol grpc --grpc my-host:8081 --api-key KEY
    python client.py --request my_request.json --no-check

Protocols: `rest` (Open Inference Protocol v2 JSON), `rest-binary` (Triton's binary tensor data
extension), `grpc` (OIP v2 GRPCInferenceService, as tritonclient.grpc calls it) and `tf-serving`
(TF Serving's PredictionService.Predict). Needs numpy, orjson, grpcio and protobuf (requirements.txt);
the gRPC stubs are the server's own (server/protos), so neither tritonclient nor TensorFlow is
needed. Exit status 1 when an answer differs from sample_response.json by more than --tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the server's datatype tables and generated gRPC stubs

from server.decode import NUMPY_TO_V2, V2_TO_NUMPY, little_endian_bytes  # noqa: E402

PROTOCOLS = ("rest", "rest-binary", "grpc", "tf-serving")


def arrays(tensors: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """v2 JSON tensors ({name, shape, datatype, data}) as numpy arrays."""
    return {
        t["name"]: np.asarray(t["data"], dtype=V2_TO_NUMPY[t["datatype"]]).reshape(t["shape"])
        for t in tensors
    }


def _unpack(raw: bytes, dtype: Any, shape: Any) -> np.ndarray:
    """Bytes of a binary protocol (little-endian, row-major) as an array."""
    return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).reshape(list(shape))


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _route(url: str, model: str, version: str) -> str:
    return f"{url}/v2/models/{model}" + (f"/versions/{version}" if version else "")


def rest(
    url: str, model: str, version: str, inputs: dict[str, np.ndarray], key: str | None
) -> dict:
    body = {
        "inputs": [
            {"name": n, "shape": list(a.shape), "datatype": NUMPY_TO_V2[a.dtype.name],
             "data": a.ravel().tolist()}
            for n, a in inputs.items()
        ]
    }  # fmt: skip
    request = urllib.request.Request(
        f"{_route(url, model, version)}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **_headers(key)},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return arrays(json.loads(response.read())["outputs"])


def rest_binary(
    url: str, model: str, version: str, inputs: dict[str, np.ndarray], key: str | None
) -> dict:
    tensors = [little_endian_bytes(a) for a in inputs.values()]
    header = json.dumps(
        {
            "inputs": [
                {"name": n, "shape": list(a.shape), "datatype": NUMPY_TO_V2[a.dtype.name],
                 "parameters": {"binary_data_size": len(t)}}
                for (n, a), t in zip(inputs.items(), tensors, strict=True)
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()  # fmt: skip
    request = urllib.request.Request(
        f"{_route(url, model, version)}/infer",
        data=header + b"".join(tensors),
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
            **_headers(key),
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        length = int(response.headers.get("Inference-Header-Content-Length", len(body)))
    answer, offset, out = json.loads(body[:length]), length, {}
    for t in answer["outputs"]:
        size = t["parameters"]["binary_data_size"]
        raw = body[offset : offset + size]
        out[t["name"]] = _unpack(raw, V2_TO_NUMPY[t["datatype"]], t["shape"])
        offset += size
    return out


def _metadata(key: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")] if key else []


def grpc_v2(
    target: str, model: str, version: str, inputs: dict[str, np.ndarray], key: str | None
) -> dict:
    import grpc
    from server.protos import oip_v2_pb2, oip_v2_pb2_grpc

    request = oip_v2_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, array in inputs.items():
        request.inputs.add(name=name, datatype=NUMPY_TO_V2[array.dtype.name], shape=array.shape)
        request.raw_input_contents.append(little_endian_bytes(array))
    with grpc.insecure_channel(target) as channel:
        stub = oip_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, timeout=60, metadata=_metadata(key))
    return {
        t.name: _unpack(raw, V2_TO_NUMPY[t.datatype], t.shape)
        for t, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }


def tf_serving(
    target: str, model: str, version: str, inputs: dict[str, np.ndarray], key: str | None
) -> dict:
    import grpc
    from server.grpc_codec import NUMPY_TO_TF, TF_TO_NUMPY
    from server.protos import tensorflow_pb2, tensorflow_serving_pb2, tensorflow_serving_pb2_grpc

    request = tensorflow_serving_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    if version:
        request.model_spec.version.value = int(version)
    for name, array in inputs.items():
        request.inputs[name].CopyFrom(
            tensorflow_pb2.TensorProto(
                dtype=NUMPY_TO_TF[array.dtype.name],
                tensor_shape=tensorflow_pb2.TensorShapeProto(
                    dim=[tensorflow_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
                ),
                tensor_content=little_endian_bytes(array),
            )
        )
    with grpc.insecure_channel(target) as channel:
        stub = tensorflow_serving_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=60, metadata=_metadata(key))
    return {
        name: _unpack(t.tensor_content, TF_TO_NUMPY[t.dtype], [d.size for d in t.tensor_shape.dim])
        for name, t in response.outputs.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=f"http://localhost:{os.environ.get('PORT', '$port')}")
    parser.add_argument("--grpc", default=f"localhost:{os.environ.get('GRPC_PORT', '$grpc_port')}")
    parser.add_argument("--model", default="$model_name")
    parser.add_argument("--version", default="", help="a version number (default: the server's)")
    parser.add_argument(
        "--protocol", default="all", help=f"all, or some of {', '.join(PROTOCOLS)}, comma-separated"
    )
    parser.add_argument("--request", default=str(HERE / "sample_request.json"))
    parser.add_argument("--expected", default=str(HERE / "sample_response.json"))
    parser.add_argument("--no-check", action="store_true", help="print, do not compare")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--api-key", default=os.environ.get("API_KEY") or None)
    args = parser.parse_args(argv)
    chosen = PROTOCOLS if args.protocol == "all" else tuple(args.protocol.split(","))
    unknown = [p for p in chosen if p not in PROTOCOLS]
    if unknown:
        parser.error(f"unknown protocol(s) {unknown}; choose from {', '.join(PROTOCOLS)} or all")

    inputs = arrays(json.loads(Path(args.request).read_text())["inputs"])
    expected = (
        {} if args.no_check else arrays(json.loads(Path(args.expected).read_text())["outputs"])
    )
    calls = {
        "rest": lambda: rest(args.url, args.model, args.version, inputs, args.api_key),
        "rest-binary": lambda: rest_binary(
            args.url, args.model, args.version, inputs, args.api_key
        ),
        "grpc": lambda: grpc_v2(args.grpc, args.model, args.version, inputs, args.api_key),
        "tf-serving": lambda: tf_serving(args.grpc, args.model, args.version, inputs, args.api_key),
    }
    failed = False
    for protocol in chosen:
        started = time.perf_counter()
        outputs = calls[protocol]()
        ms = (time.perf_counter() - started) * 1000
        parts = []
        for name, array in outputs.items():
            part = f"{name} {list(array.shape)} {array.dtype}"
            if name in expected:
                worst = float(np.abs(array.astype(np.float64) - expected[name]).max(initial=0))
                part += f" max abs diff {worst:.3g}"
                failed |= worst > args.tolerance or array.shape != expected[name].shape
            parts.append(part)
        print(f"{protocol:<11} {ms:7.1f} ms  {'; '.join(parts)}")
    if failed:
        print(f"FAILED: an answer differs from {args.expected} by more than {args.tolerance}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
