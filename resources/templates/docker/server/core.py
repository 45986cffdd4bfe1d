"""What the REST and gRPC front-ends share: the model, its runs (batched or not), metrics,
readiness and the API key check. Both call `Serving.run`, so their requests join the same batches
and count in the same metrics."""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from server.batcher import Batcher, batchable
from server.decode import RequestError
from server.model import ServedModel
from server.monitor import Monitor, MonitorCollector
from server.settings import Settings

log = logging.getLogger("uvicorn.error")


class Metrics:
    """Prometheus metrics of this process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dockyard_requests_total",
            "Requests (HTTP: endpoint and status code; gRPC: method and status name)",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dockyard_request_seconds", "Request latency", ["endpoint"], registry=self.registry
        )
        self.inference = Histogram(
            "dockyard_inference_seconds", "Model run time", registry=self.registry
        )
        self.in_flight = Gauge(
            "dockyard_requests_in_flight", "Requests being served", registry=self.registry
        )
        self.batching = Gauge(
            "dockyard_dynamic_batching", "1 when requests are batched", registry=self.registry
        )
        self.batch_rows = Histogram(
            "dockyard_batch_rows", "Rows per model run", registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )  # fmt: skip
        self.batch_requests = Histogram(
            "dockyard_batch_requests", "Requests per model run", registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )  # fmt: skip
        self.queue = Histogram(
            "dockyard_queue_seconds", "Time a request waited for a model run",
            registry=self.registry,
        )  # fmt: skip


def batch_runners(threads: int) -> int:
    """Batched model runs at once: as many as fill the cores without oversubscribing them (one
    when each run uses every core, THREADS=0). More runs at once only split the same cores, and
    the requests that wait meanwhile are what batching joins. Measured on 2 cores with a
    224x224 CNN: one run of 2-8 images at a time gives 230-260 images/s, two at a time 182-224,
    four unbatched runs at a time 202."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // threads) if threads > 0 else 1


# Work this small runs in the event loop itself, in REST and gRPC alike: a round trip to a worker
# thread costs ~0.17 ms on an idle 2-core machine (more under load), as much as orjson parsing
# ~16 KB of JSON or rendering ~6,000 floats, and per-request overhead is most of the cost of a
# small model's request. Copying raw tensor bytes (binary REST, gRPC raw contents,
# tensor_content) is fast at any size and always runs inline.
INLINE_PARSE_BYTES = 16 * 1024
INLINE_RENDER_VALUES = 4096

AUTH_HINT = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


class Serving:
    """The served model and everything around its runs; `start`/`stop` in the event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = ServedModel(settings.model_dir, settings.threads, settings.max_batch)
        self.metrics = Metrics()
        self.ready = False
        self._limiter = anyio.CapacityLimiter(max(1, settings.concurrency))
        batching = settings.batching in ("1", "true", "on") or (
            settings.batching == "auto"
            and self.model.config.get("batching", True) is not False
            and batchable(self.model.inputs, self.model.outputs)
        )
        self.batcher = (
            Batcher(
                self._timed_infer,
                self._in_thread,
                settings.batch_max_size,
                settings.batch_max_delay_ms / 1000,
                runners=batch_runners(settings.threads),
                on_batch=lambda rows, requests: (
                    self.metrics.batch_rows.observe(rows),
                    self.metrics.batch_requests.observe(requests),
                ),
                on_queue=self.metrics.queue.observe,
            )
            if batching
            else None
        )
        self.metrics.batching.set(1 if self.batcher else 0)
        self.monitor = Monitor.load(settings.model_dir, settings.drift_half_life)
        if self.monitor is not None:
            self.metrics.registry.register(MonitorCollector(self.monitor))

    def _timed_infer(self, feeds: dict[str, np.ndarray], wanted: list[str] | None) -> Any:
        started = time.perf_counter()
        result = self.model.infer(feeds, wanted)
        self.metrics.inference.observe(time.perf_counter() - started)
        if self.monitor is not None:
            try:
                self.monitor.observe(feeds, result)
            except Exception:  # monitoring never costs an answer
                log.exception("drift monitoring failed on a batch; the answer is sent anyway")
        return result

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        # ONNX Runtime releases the GIL: run it in worker threads, at most CONCURRENCY at a time.
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    async def run(
        self, feeds: dict[str, np.ndarray], wanted: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """The model's outputs for one request (joined with others when batching is on)."""
        if self.batcher is not None:
            return await self.batcher.infer(feeds, wanted)
        return await self._in_thread(self._timed_infer, feeds, wanted)

    def check_model_name(self, name: str) -> None:
        if name != self.model.name:
            raise RequestError(
                f"model {name!r} is not served here; this server serves {self.model.name!r}", 404
            )

    def authorized(self, headers: dict[str, str]) -> bool:
        """Whether lower-cased `headers` (HTTP headers or gRPC metadata) carry the API key."""
        key = self.settings.api_key
        if not key:
            return True
        sent = headers.get("x-api-key") or headers.get("authorization", "")
        sent = sent.removeprefix("Bearer ").strip()
        return hmac.compare_digest(sent.encode(), key.encode())

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self.model.warm_up)
        if self.batcher is not None:
            self.batcher.start()

    async def stop(self) -> None:
        self.ready = False
        if self.batcher is not None:
            await self.batcher.stop()
