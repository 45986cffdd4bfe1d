"""The ASGI app: Open Inference Protocol v2 REST, TF-Serving-style predict, Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import anyio
import numpy as np
import orjson
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from server import decode as decoding
from server.core import AUTH_HINT, INLINE_PARSE_BYTES, INLINE_RENDER_VALUES, Serving, Version
from server.decode import NUMPY_TO_V2, RequestError, image_feeds, little_endian_bytes
from server.grpc_api import SERVER_METADATA, start_grpc, stop_grpc
from server.settings import Settings


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing bodies over `limit` bytes (413) before reading them."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(
            f"request body is {int(length)} bytes; the limit is {limit} (MAX_BODY_BYTES)", 413
        )
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestError(
                    f"request body exceeds the limit of {limit} bytes (MAX_BODY_BYTES)", 413
                )
    except ClientDisconnect:
        # Gone before its body arrived (or closed for sending it too slowly: BODY_TIMEOUT).
        # nginx's 499: counted in the metrics as the client's doing, not a server error.
        raise RequestError(
            "the client closed the connection before sending its body", 499
        ) from None
    return bytes(body)


class Decoder:
    """Runs decode.* on a request body: in the event loop when there is little to parse
    (INLINE_PARSE_BYTES), else off it: in a worker thread, or in a separate process when the
    body is large. json.loads and np.asarray hold the GIL for
    their whole run, so a 16 MiB body decoded in a thread stalls every other connection for
    ~0.5 s (a liveness probe with a 1 s timeout then fails under load); in another process it
    stalls nothing here. Mid-size bodies go to threads: a process round trip costs ~1 ms."""

    def __init__(self, process_above: int, processes: int) -> None:
        self.process_above = process_above
        self.processes = max(0, processes)
        self.pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self.processes:
            # spawn: a fresh interpreter (no copy of ONNX Runtime's threads, as fork would make)
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(
                self.processes, mp_context=context, initializer=decoding.watch_parent
            )
            self.pool.submit(decoding.parse_json, b"0").result(timeout=60)  # started now

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    async def __call__(
        self,
        function: Callable[..., Any],
        body: bytes,
        *args: Any,
        parsed: int | None = None,
        inline: bool = True,
    ) -> Any:
        """`function(body, *args)`; `parsed`: the bytes that need parsing, when not all of the
        body does (a binary request's raw tensors are only copied, which is fast anywhere);
        `inline`: whether a small body may be decoded in the event loop."""
        size = len(body) if parsed is None else parsed
        if self.pool is not None and size > self.process_above:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self.pool, function, body, *args)
            except BrokenProcessPool:
                # The decoding process died (the OOM killer, say): start a new one for the next
                # requests instead of failing every large request from now on.
                await anyio.to_thread.run_sync(self._restart)
                raise RequestError(
                    "the request decoder was restarted; retry the request", 503
                ) from None
        if inline and size <= INLINE_PARSE_BYTES:
            return function(body, *args)
        return await anyio.to_thread.run_sync(function, body, *args)

    def _restart(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.start()


# Triton's binary tensor data extension: the JSON part's length; raw tensors follow it.
BINARY_HEADER = "Inference-Header-Content-Length"


def binary_header_length(request: Request) -> int | None:
    """The request's Inference-Header-Content-Length, or None for a plain JSON request."""
    value = request.headers.get(BINARY_HEADER)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise RequestError(f"{BINARY_HEADER} must be a whole number of bytes, not {value!r}")
    return int(value)


async def render(content: Any, values: int) -> bytes:
    """`content` as JSON; in a worker thread when it holds more than INLINE_RENDER_VALUES
    numbers (`values`), as a large answer would stall the loop."""
    if values <= INLINE_RENDER_VALUES:
        return _render(content)
    return await anyio.to_thread.run_sync(_render, content)


async def json_response(content: Any, values: int) -> Response:
    """A JSON response of `values` numbers, rendered where `render` says."""
    return Response(await render(content, values), media_type="application/json")


def _render(content: Any) -> bytes:
    # orjson writes numpy arrays directly (~25x faster than tolist + json.dumps for 1,000
    # floats) but writes NaN and Infinity as null: refuse those first, with a message.
    _finite(content)
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY, default=_plain)


def _finite(content: Any) -> None:
    if isinstance(content, dict):
        for value in content.values():
            _finite(value)
    elif isinstance(content, list):
        for value in content:
            _finite(value)
    elif (
        isinstance(content, np.ndarray | np.floating)
        and content.dtype.kind == "f"
        and not np.isfinite(content).all()
    ):
        raise ModelOutputError(
            "the model produced NaN or Infinity for this input, which JSON cannot carry"
        )


class ModelOutputError(Exception):
    """The model's answer cannot be sent (a 500 that says why, not a bare one)."""


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):  # a non-contiguous array, say
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class Guard:
    """Pure ASGI middleware: API key check, request metrics, and 4xx for client mistakes."""

    def __init__(
        self, app: Any, serving: Serving, routes: list[Route], open_paths: set[str]
    ) -> None:
        self.app, self.serving, self.metrics, self.routes = app, serving, serving.metrics, routes
        self.open_paths = open_paths  # besides /v2/health/*: health checks without the key

    def _endpoint(self, scope: dict[str, Any]) -> str:
        for route in self.routes:
            if route.matches(scope)[0] == Match.FULL:
                return route.path
        return "unmatched"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = self._endpoint(scope)
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            path = scope["path"]
            if not path.startswith("/v2/health") and path not in self.open_paths:
                # latin-1 decodes any byte: a non-ASCII header is a wrong key (401), not a 500.
                headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
                }
                if not self.serving.authorized(headers):
                    response = error(f"missing or wrong API key: {AUTH_HINT}", 401)
                    await response(scope, receive, send_wrapper)
                    return
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def create_app(settings: Settings | None = None) -> Any:
    """The served app (a Starlette app wrapped in the Guard middleware)."""
    settings = settings or Settings.from_env()
    serving = Serving(settings)
    metrics = serving.metrics
    decode = Decoder(settings.decode_process_above, settings.decode_processes)

    def asked(request: Request) -> Version:
        """The version a /v2/models/{name}[/versions/{version}]/... request asks for."""
        return serving.version(request.path_params["name"], request.path_params.get("version"))

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": serving.ready}, status_code=200 if serving.ready else 503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse(SERVER_METADATA)

    async def model_metadata(request: Request) -> Response:
        return JSONResponse(serving.metadata(asked(request)))

    async def model_ready(request: Request) -> Response:
        model = asked(request).model
        return JSONResponse(
            {"name": model.name, "version": model.version, "ready": serving.ready},
            status_code=200 if serving.ready else 503,
        )

    async def infer_v2(request: Request) -> Response:
        return await infer(request, asked(request), v2_only=True)

    async def invocations(request: Request) -> Response:
        # SageMaker's route: any request the v2 route takes, or TF Serving's {"instances": ...},
        # answered in the format it was asked in, by the default version.
        return await infer(request, serving.version(serving.name), v2_only=False)

    async def infer(request: Request, version: Version, v2_only: bool) -> Response:
        kind = request.headers.get("content-type", "").lower()
        if kind.startswith("image/"):
            return await infer_image(request, version)
        header_length = binary_header_length(request)
        body = await read_body(request, settings.max_body_bytes)
        signature = version.model.signature
        if v2_only or header_length is not None:
            decoded = await decode(
                decoding.v2_request, body, signature, header_length, parsed=header_length
            )
        else:
            decoded = await decode(decoding.any_request, body, signature)
            if not isinstance(decoded, decoding.V2Request):
                return await predictions_answer(decoded, version)
        return await v2_answer(decoded, version)

    async def v2_answer(decoded: decoding.V2Request, version: Version) -> Response:
        model = version.model
        results = await version.run(decoded.feeds, decoded.wanted or None)
        binary = {n for n in results if decoded.binary_all or n in decoded.binary_outputs}
        outputs, tail = [], []
        for name, arr in results.items():
            out: dict[str, Any] = {
                "name": name,
                "datatype": NUMPY_TO_V2.get(arr.dtype.name, "BYTES"),
                "shape": list(arr.shape),
            }
            if name in binary:
                raw = little_endian_bytes(arr)
                out["parameters"] = {"binary_data_size": len(raw)}
                tail.append(raw)
            else:
                out["data"] = arr.ravel()  # made a list in the rendering thread
            outputs.append(out)
        response: dict[str, Any] = {
            "model_name": model.name,
            "model_version": model.version,
            "outputs": outputs,
        }
        if decoded.has_id:
            response["id"] = decoded.id
        values = sum(int(a.size) for n, a in results.items() if n not in binary)
        if not tail:
            return await json_response(response, values)
        header = await render(response, values)
        return Response(
            header + b"".join(tail),
            media_type="application/octet-stream",
            headers={BINARY_HEADER: str(len(header))},
        )

    async def infer_image(request: Request, version: Version) -> Response:
        model = version.model
        recipe = model.config.get("preprocess")
        if not recipe:
            raise RequestError(
                "this model takes tensors (JSON or binary), not images: it was exported without "
                "image preprocessing (dockyard-cli export docker --images ...)",
                415,
            )
        body = await read_body(request, settings.max_body_bytes)
        feeds = await decode(  # never inline: a small PNG can hold a large image
            image_feeds, body, recipe, model.signature, settings.max_image_pixels, inline=False
        )
        results = await version.run(feeds)
        outputs = [
            {
                "name": name,
                "datatype": NUMPY_TO_V2.get(arr.dtype.name, "BYTES"),
                "shape": list(arr.shape),
                "data": arr.ravel(),
            }
            for name, arr in results.items()
        ]
        return await json_response(
            {"model_name": model.name, "model_version": model.version, "outputs": outputs},
            sum(int(a.size) for a in results.values()),
        )

    async def predict_v1(request: Request) -> Response:
        # TF Serving's REST routes are /v1/models/{name}[/versions/{version}]:predict; Starlette
        # sees "name:predict" (or "version:predict").
        params = request.path_params
        if "version_verb" in params:
            version, _, verb = params["version_verb"].partition(":")
            name = params["name"]
        else:
            name, _, verb = params["name_verb"].partition(":")
            version = None
        if verb != "predict":
            raise RequestError(f"unsupported verb {verb!r}; use :predict", 404)
        return await predict_instances(request, serving.version(name, version or None))

    async def vertex_predict(request: Request) -> Response:
        return await predict_instances(request, serving.version(serving.name))

    async def predict_instances(request: Request, version: Version) -> Response:
        # TF Serving's predict, and Vertex AI's AIP_PREDICT_ROUTE: {"instances": [...]} (or
        # columnar "inputs") -> {"predictions": [...]}.
        body = await read_body(request, settings.max_body_bytes)
        feeds = await decode(decoding.v1_request, body, version.model.signature)
        return await predictions_answer(feeds, version)

    async def predictions_answer(feeds: dict[str, np.ndarray], version: Version) -> Response:
        results = await version.run(feeds)
        if len(results) == 1:
            predictions: Any = next(iter(results.values()))
        else:
            batch = len(next(iter(results.values())))
            predictions = [{k: v[i] for k, v in results.items()} for i in range(batch)]
        values = sum(int(a.size) for a in results.values())
        return await json_response({"predictions": predictions}, values)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def request_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        return error(str(exc), exc.status)

    async def output_error(request: Request, exc: Exception) -> Response:
        return error(str(exc), 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await serving.start()
        await anyio.to_thread.run_sync(decode.start)
        grpc_server = await start_grpc(serving) if settings.grpc_port else None
        serving.ready = True
        yield
        serving.ready = False
        if grpc_server is not None:
            await stop_grpc(grpc_server, settings.graceful_timeout)
        await serving.stop()
        decode.stop()

    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer_v2, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}", model_metadata),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/infer", infer_v2, methods=["POST"]),
        Route("/v1/models/{name_verb}", predict_v1, methods=["POST"]),
        Route("/v1/models/{name}/versions/{version_verb}", predict_v1, methods=["POST"]),
        Route("/metrics", metrics_endpoint),
        # SageMaker's contract (port 8080; `docker run IMAGE serve`: the image has `serve`).
        Route("/ping", ready),
        Route("/invocations", invocations, methods=["POST"]),
    ]
    open_paths = {"/ping"}  # health checks carry no API key
    if settings.vertex_health_route:
        routes.append(Route(settings.vertex_health_route, ready))
        open_paths.add(settings.vertex_health_route)
    if settings.vertex_predict_route:
        routes.append(Route(settings.vertex_predict_route, vertex_predict, methods=["POST"]))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={RequestError: request_error, ModelOutputError: output_error},
    )
    return Guard(app, serving, routes, open_paths)
