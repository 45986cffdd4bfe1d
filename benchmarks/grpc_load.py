"""A gRPC load generator for benchmarks/serving.py: `clients` concurrent ModelInfer calls (Open
Inference Protocol v2, raw_input_contents) for `seconds`, in an asyncio event loop in its own
process (grpc.aio: one process keeps 32 streams busy at a few thousand calls/s, so the client is
not what is measured). Prints one JSON line: requests, errors, req/s, p50/p99 ms.

    PYTHONPATH=EXPORT_DIR python benchmarks/grpc_load.py TARGET MODEL INPUTS.npz CLIENTS SECONDS
    PYTHONPATH=EXPORT_DIR python benchmarks/grpc_load.py --frame MODEL INPUTS.npz OUT

It uses the export's own stubs (server/protos), the ones a user's client would be generated from.
`--frame` writes the ModelInfer request as one length-prefixed gRPC message (the body of the
HTTP/2 POST a gRPC client sends) for h2load, nghttp2's C load generator.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import grpc
import numpy as np
from server.protos import oip_v2_pb2, oip_v2_pb2_grpc


def _request(model: str, inputs: dict[str, np.ndarray]) -> oip_v2_pb2.ModelInferRequest:
    v2 = {"float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32"}
    request = oip_v2_pb2.ModelInferRequest(model_name=model)
    for name, array in inputs.items():
        request.inputs.add(name=name, datatype=v2[array.dtype.name], shape=array.shape)
        request.raw_input_contents.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
    return request


async def _run(target: str, request: Any, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = oip_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(10):  # warm-up (connection, first runs)
            await stub.ModelInfer(request)
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    await stub.ModelInfer(request, timeout=60)
                    latencies.append(time.perf_counter() - started)
                except grpc.aio.AioRpcError:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - started
    ms = np.asarray(latencies or [float("nan")]) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def grpc_frame(message: bytes) -> bytes:
    """A gRPC message on the wire: not compressed (0), its length (4 bytes, big-endian), itself."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _inputs(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def main() -> None:
    if sys.argv[1] == "--frame":
        model, inputs_file, out = sys.argv[2:5]
        message = _request(model, _inputs(inputs_file)).SerializeToString()
        with open(out, "wb") as f:
            f.write(grpc_frame(message))
        return
    target, model, inputs_file, clients, seconds = sys.argv[1:6]
    inputs = _inputs(inputs_file)
    result = asyncio.run(_run(target, _request(model, inputs), int(clients), float(seconds)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
