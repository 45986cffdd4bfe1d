"""gRPC beside REST, in the same process and event loop (grpc.aio): KServe/Triton's
GRPCInferenceService (Open Inference Protocol v2) and TF Serving's PredictionService (Predict,
GetModelMetadata), so `tritonclient.grpc` and `tensorflow-serving-api` client code works
unchanged. Both go through `Serving.run`: the same batches, limits, metrics and API key as REST.

A client's mistake is INVALID_ARGUMENT (NOT_FOUND for another model's name) with the message REST
would give; a missing or wrong key is UNAUTHENTICATED. ServerLive and ServerReady need no key,
as /v2/health/* does not.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import grpc
from google.protobuf import any_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from server import grpc_codec
from server.core import AUTH_HINT, INLINE_PARSE_BYTES, Serving, Version, version_order
from server.decode import RequestError
from server.protos import (
    oip_v2_pb2,
    oip_v2_pb2_grpc,
    tensorflow_serving_pb2,
    tensorflow_serving_pb2_grpc,
)

log = logging.getLogger("server")

SERVER_METADATA = {
    "name": "dockyard-onnxruntime",
    "version": "1",
    "extensions": ["tf_serving_predict", "metrics", "binary_tensor_data"],
}

# RequestError's HTTP status -> gRPC status (as grpc-gateway maps them, read the other way).
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,  # a batch over MAX_BATCH: Triton says the same
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
}
SIGNATURE = "serving_default"


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _rpc(service: str, open_: bool = False) -> Callable[..., Any]:
    """Wrap a servicer method: API key check (unless `open_`), metrics, and errors -> codes."""

    def decorate(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        endpoint = f"/{service}/{method.__name__}"

        @functools.wraps(method)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            serving: Serving = self.serving
            metrics = serving.metrics
            metrics.in_flight.inc()
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                if not open_:
                    metadata = {k.lower(): v for k, v in context.invocation_metadata() or ()}
                    if not serving.authorized(metadata):
                        raise _Abort(
                            grpc.StatusCode.UNAUTHENTICATED,
                            f"missing or wrong API key: {AUTH_HINT} as gRPC metadata",
                        )
                return await method(self, request, context)
            except RequestError as exc:
                code = _CODES.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT)
                await context.abort(code, str(exc))
            except _Abort as exc:
                code = exc.code
                await context.abort(code, str(exc))
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # a bug or the model failing: said, logged, not a crash
                code = grpc.StatusCode.INTERNAL
                log.exception("gRPC %s failed", endpoint)
                await context.abort(code, f"{type(exc).__name__}: {str(exc)[:500]}")
            finally:
                metrics.in_flight.dec()
                metrics.requests.labels(endpoint, code.name).inc()
                metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

        return wrapper

    return decorate


_OIP = "inference.GRPCInferenceService"
_TFS = "tensorflow.serving.PredictionService"


class InferenceService(oip_v2_pb2_grpc.GRPCInferenceServiceServicer):
    """Open Inference Protocol v2 over gRPC."""

    def __init__(self, serving: Serving) -> None:
        self.serving = serving

    def _check(self, name: str, version: str) -> Version:
        return self.serving.version(name, version)

    @_rpc(_OIP, open_=True)
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return oip_v2_pb2.ServerLiveResponse(live=True)

    @_rpc(_OIP, open_=True)
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return oip_v2_pb2.ServerReadyResponse(ready=self.serving.ready)

    @_rpc(_OIP)
    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            self._check(request.name, request.version)
        except RequestError:  # not served here: not ready (as Triton answers), not an error
            return oip_v2_pb2.ModelReadyResponse(ready=False)
        return oip_v2_pb2.ModelReadyResponse(ready=self.serving.ready)

    @_rpc(_OIP)
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return oip_v2_pb2.ServerMetadataResponse(**SERVER_METADATA)

    @_rpc(_OIP)
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        meta = self.serving.metadata(self._check(request.name, request.version))
        response = oip_v2_pb2.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"]
        )
        for kind in ("inputs", "outputs"):
            for t in meta[kind]:
                getattr(response, kind).add(
                    name=t["name"], datatype=t["datatype"], shape=t["shape"]
                )
        return response

    @_rpc(_OIP)
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        version = self._check(request.model_name, request.model_version)
        model = version.model
        if request.raw_input_contents or request.ByteSize() <= INLINE_PARSE_BYTES:
            feeds, wanted = grpc_codec.v2_feeds(request, model.signature)
        else:  # typed contents: a long list to convert
            feeds, wanted = await anyio.to_thread.run_sync(
                grpc_codec.v2_feeds, request, model.signature
            )
        results = await version.run(feeds, wanted or None)
        # Answered in raw_output_contents: bytes copied, fast at any size.
        return grpc_codec.v2_response(request, results, model.name, model.version)


class PredictionService(tensorflow_serving_pb2_grpc.PredictionServiceServicer):
    """TF Serving's Predict and GetModelMetadata, for the model as signature `serving_default`."""

    def __init__(self, serving: Serving) -> None:
        self.serving = serving

    def _spec(self, spec: Any) -> tuple[Version, tensorflow_serving_pb2.ModelSpec]:
        """The version the request's ModelSpec asks for, and the ModelSpec to answer with."""
        if spec.HasField("version_label"):
            raise RequestError(
                "version labels are not served here; ask for a version number "
                f"({', '.join(sorted(self.serving.versions, key=version_order))}) or none "
                f"(version {self.serving.default})",
                404,
            )
        version = self.serving.version(
            spec.name, str(spec.version.value) if spec.HasField("version") else None
        )
        model = version.model
        if spec.signature_name not in ("", SIGNATURE):
            raise RequestError(
                f"signature {spec.signature_name!r} is not served; the model's signature is "
                f"{SIGNATURE!r}"
            )
        answer = tensorflow_serving_pb2.ModelSpec(name=model.name, signature_name=SIGNATURE)
        if model.version.isdigit():
            answer.version.value = int(model.version)
        return version, answer

    @_rpc(_TFS)
    async def Predict(self, request: Any, context: Any) -> Any:
        version, spec = self._spec(request.model_spec)
        signature = version.model.signature

        def decode() -> dict[str, Any]:
            return {k: grpc_codec.tf_array(k, v, signature) for k, v in request.inputs.items()}

        typed = any(not t.tensor_content for t in request.inputs.values())
        if not typed or request.ByteSize() <= INLINE_PARSE_BYTES:
            feeds = decode()
        else:  # typed *_val lists: long ones to convert
            feeds = await anyio.to_thread.run_sync(decode)
        results = await version.run(feeds, list(request.output_filter) or None)
        # Answered in tensor_content: bytes copied, fast at any size.
        response = tensorflow_serving_pb2.PredictResponse(model_spec=spec)
        for name, array in results.items():
            response.outputs[name].CopyFrom(grpc_codec.tf_tensor(array))
        return response

    @_rpc(_TFS)
    async def GetModelMetadata(self, request: Any, context: Any) -> Any:
        version, spec = self._spec(request.model_spec)
        fields = list(request.metadata_field)
        if not fields:
            raise RequestError('metadata_field is empty; ask for "signature_def"')
        unknown = [f for f in fields if f != "signature_def"]
        if unknown:
            raise RequestError(
                f'metadata field {unknown[0]!r} is not served; ask for "signature_def"'
            )
        model = version.model
        signatures = tensorflow_serving_pb2.SignatureDefMap()
        signatures.signature_def[SIGNATURE].CopyFrom(
            grpc_codec.tf_signature(model.inputs, model.outputs)
        )
        packed = any_pb2.Any()
        packed.Pack(signatures)
        response = tensorflow_serving_pb2.GetModelMetadataResponse(model_spec=spec)
        response.metadata["signature_def"].CopyFrom(packed)
        return response


async def stop_grpc(server: grpc.aio.Server, grace: float) -> None:
    """Say NOT_SERVING, then let in-flight calls finish for up to `grace` seconds."""
    await server.health.enter_graceful_shutdown()  # type: ignore[attr-defined]
    await server.stop(grace)


async def start_grpc(serving: Serving) -> grpc.aio.Server:
    """Start the gRPC server on HOST:GRPC_PORT in the running event loop."""
    settings = serving.settings
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            # Several uvicorn workers share the port as they share REST's; a single server must
            # not silently share it with another process that happens to use the same port.
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ]
    )
    oip_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(serving), server)
    tensorflow_serving_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(serving), server
    )
    # The standard gRPC health service (Kubernetes `grpc:` probes, grpc_health_probe): SERVING
    # from start-up (the model is warm by then), NOT_SERVING once shutdown begins. No API key.
    server.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(server.health, server)
    for service in ("", _OIP, _TFS):
        await server.health.set(service, health_pb2.HealthCheckResponse.SERVING)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{settings.grpc_port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise SystemExit(
            f"cannot serve gRPC on {address}: the port is in use or not allowed; set GRPC_PORT "
            "to a free port, or GRPC_PORT=0 to serve REST only"
        )
    await server.start()
    log.info("gRPC on %s", address)
    return server
