"""What the REST and gRPC front-ends share: the model's versions, their runs (batched or not),
metrics, readiness and the API key check. Both run requests through `Version.run`, so they join
the same batches and count in the same metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
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
            "dockyard_inference_seconds", "Model run time", ["version"], registry=self.registry
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


class Version:
    """One served version: its model, its runs (batched or not) and its drift monitor."""

    def __init__(self, serving: Serving, folder: Path) -> None:
        settings, metrics = serving.settings, serving.metrics
        self.model = ServedModel(folder, settings.threads, settings.max_batch)
        # The folder names the version, as in TF Serving and Triton: a copy of 2/ as 3/ is
        # served as version 3 whatever its config.json says.
        self.model.version = folder.name
        self._in_thread = serving.in_thread
        self._inference = metrics.inference.labels(self.model.version)
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
                    metrics.batch_rows.observe(rows),
                    metrics.batch_requests.observe(requests),
                ),
                on_queue=metrics.queue.observe,
            )
            if batching
            else None
        )
        self.monitor = Monitor.load(folder, settings.drift_half_life)

    def _timed_infer(self, feeds: dict[str, np.ndarray], wanted: list[str] | None) -> Any:
        started = time.perf_counter()
        result = self.model.infer(feeds, wanted)
        self._inference.observe(time.perf_counter() - started)
        if self.monitor is not None:
            try:
                self.monitor.observe(feeds, result)
            except Exception:  # monitoring never costs an answer
                log.exception("drift monitoring failed on a batch; the answer is sent anyway")
        return result

    async def run(
        self, feeds: dict[str, np.ndarray], wanted: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """The model's outputs for one request (joined with others when batching is on)."""
        if self.batcher is not None:
            return await self.batcher.infer(feeds, wanted)
        return await self._in_thread(self._timed_infer, feeds, wanted)

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self.model.warm_up)
        if self.batcher is not None:
            self.batcher.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()


class Serving:
    """The served model's versions and everything around their runs; `start`/`stop` in the
    event loop. A request that names no version gets the default one (`default`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.ready = False
        self._limiter = anyio.CapacityLimiter(max(1, settings.concurrency))
        self.repository = ModelRepository(settings.model_dir)
        self.name = self.repository.name
        self.versions = {
            v: Version(self, folder) for v, folder in self.repository.version_folders().items()
        }
        for version in self.versions.values():
            if version.model.name != self.name:
                raise SystemExit(
                    f"{version.model.model_dir}: config.json names model "
                    f"{version.model.name!r}, but this folder serves {self.name!r}"
                )
        self.pinned = settings.default_version  # DEFAULT_VERSION: wins over model.json
        self.default = self._check_default(self.pinned or self.repository.default_version())
        self._watcher: asyncio.Task[None] | None = None
        batching = [v for v in self.versions.values() if v.batcher is not None]
        self.metrics.batching.set(1 if batching else 0)
        monitors = {n: v.monitor for n, v in self.versions.items() if v.monitor is not None}
        if monitors:
            self.metrics.registry.register(MonitorCollector(monitors))

    def _check_default(self, version: str | None) -> str:
        if version is None:
            return max(self.versions, key=version_order)
        if version not in self.versions:
            raise SystemExit(
                f"default version {version!r} is not served; {self.repository.folder} holds "
                f"version(s) {', '.join(sorted(self.versions, key=version_order))}"
            )
        return version

    def version(self, name: str, version: str | None = None) -> Version:
        """The version a request asks for (None or "": the default); 404 for anything else."""
        self.check_model_name(name)
        if not version:
            return self.versions[self.default]
        found = self.versions.get(version)
        if found is None:
            raise RequestError(
                f"model {name!r} has no version {version!r}; it serves version(s) "
                f"{', '.join(sorted(self.versions, key=version_order))} "
                f"(default {self.default})",
                404,
            )
        return found

    def metadata(self, version: Version) -> dict[str, Any]:
        """OIP v2 model metadata of `version`, listing every version served."""
        return {
            **version.model.metadata(),
            "versions": sorted(self.versions, key=version_order),
        }

    async def in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        # ONNX Runtime releases the GIL: run it in worker threads, at most CONCURRENCY at a time.
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    def check_model_name(self, name: str) -> None:
        if name != self.name:
            raise RequestError(
                f"model {name!r} is not served here; this server serves {self.name!r}", 404
            )

    def authorized(self, headers: dict[str, str]) -> bool:
        """Whether lower-cased `headers` (HTTP headers or gRPC metadata) carry the API key."""
        key = self.settings.api_key
        if not key:
            return True
        sent = headers.get("x-api-key") or headers.get("authorization", "")
        sent = sent.removeprefix("Bearer ").strip()
        return hmac.compare_digest(sent.encode(), key.encode())

    def reload_default(self) -> bool:
        """Re-read the default version from model.json (unless DEFAULT_VERSION pins it); True
        when it changed. A version that is not served is refused with a log line and the
        current default stays."""
        if self.pinned:
            return False
        wanted = self.repository.default_version()
        wanted = wanted or max(self.versions, key=version_order)
        if wanted == self.default:
            return False
        if wanted not in self.versions:
            log.error(
                "%s asks for default version %r, which is not served; still serving version %s",
                self.repository.config_path, wanted, self.default,
            )  # fmt: skip
            return False
        log.warning("default version of %r: %s -> %s", self.name, self.default, wanted)
        self.default = wanted
        return True

    async def _watch_default(self, every: float) -> None:
        # model.json's modification time, read every `every` seconds: a rollback is an edit of
        # one file (a ConfigMap mounted over it, in Kubernetes) and no restart.
        seen = self.repository.config_stamp()
        while True:
            await asyncio.sleep(every)
            stamp = self.repository.config_stamp()
            if stamp != seen:
                seen = stamp
                try:
                    self.reload_default()
                except Exception:  # a half-written or broken file: keep serving as before
                    log.exception(
                        "cannot read %s; the default version stays %s",
                        self.repository.config_path, self.default,
                    )  # fmt: skip

    async def start(self) -> None:
        for version in self.versions.values():
            await version.start()
        every = self.settings.version_poll_seconds
        if every > 0 and not self.pinned:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_default(every))

    async def stop(self) -> None:
        self.ready = False
        if self._watcher is not None:
            self._watcher.cancel()
        for version in self.versions.values():
            await version.stop()


def version_order(version: str) -> tuple[int, int | str]:
    """Sort key of version names: numbers by value (2 before 10), then other names."""
    return (0, int(version)) if version.isdigit() else (1, version)


class ModelRepository:
    """The model's folder: `model.json` (its name and default version) and one folder per
    version (`1/`, `2/`, ... each with model.onnx and config.json), as TF Serving and Triton
    lay out a model's versions."""

    CONFIG = "model.json"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config_path = folder / self.CONFIG
        if not folder.is_dir():
            raise SystemExit(f"MODEL_DIR={folder}: no such folder")
        config = self._config()
        self.name: str = config.get("name") or folder.name

    def _config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            return {}
        config = json.loads(self.config_path.read_text())
        if not isinstance(config, dict):
            raise ValueError(f"{self.config_path}: expected a JSON object")
        return config

    def config_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.config_path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def default_version(self) -> str | None:
        """model.json's default_version (None: the newest version)."""
        value = self._config().get("default_version")
        return None if value in (None, "") else str(value)

    def version_folders(self) -> dict[str, Path]:
        found = {
            p.name: p for p in self.folder.iterdir() if p.is_dir() and (p / "config.json").is_file()
        }
        if not found:
            raise SystemExit(
                f"MODEL_DIR={self.folder}: no version folders (1/, 2/, ... each holding "
                "config.json and the model)"
            )
        return found
