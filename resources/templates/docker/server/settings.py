"""Settings from environment variables (12-factor), with the defaults the image documents."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _number(name: str, default: float, kind: type = int) -> float:
    value = os.environ.get(name, "")
    try:
        return kind(value) if value.strip() else default
    except ValueError as exc:
        what = "a whole number" if kind is int else "a number"
        raise SystemExit(f"{name}={value!r} is not {what}") from exc


def _int(name: str, default: int) -> int:
    return int(_number(name, default, int))


def _float(name: str, default: float) -> float:
    return float(_number(name, default, float))


@dataclass(frozen=True)
class Settings:
    model_dir: Path
    host: str
    port: int
    grpc_port: int  # 0: no gRPC server
    workers: int
    threads: int
    concurrency: int
    max_body_bytes: int
    max_batch: int
    max_image_pixels: int
    vertex_health_route: str | None
    vertex_predict_route: str | None
    api_key: str | None
    graceful_timeout: int
    header_timeout: int
    body_timeout: int
    keepalive_timeout: int
    decode_processes: int
    decode_process_above: int
    log_level: str
    batching: str  # "auto" (the export's choice), "1" or "0"
    batch_max_size: int
    batch_max_delay_ms: float
    drift_half_life: float
    default_version: str | None
    version_poll_seconds: float

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            # The model's folder: model.json and one folder per version (server/core.py).
            model_dir=Path(os.environ.get("MODEL_DIR") or _only_model()),
            # Loopback unless told otherwise: `python -m server` on a laptop (auth off by default)
            # must not serve the network; the Dockerfile sets HOST=0.0.0.0 inside the container.
            host=os.environ.get("HOST", "127.0.0.1"),
            # Managed endpoints say where to listen: Vertex AI (AIP_HTTP_PORT) and SageMaker
            # inference pipelines (SAGEMAKER_BIND_TO_PORT) win over PORT.
            port=_int("AIP_HTTP_PORT", _int("SAGEMAKER_BIND_TO_PORT", _int("PORT", 8080))),
            # Vertex AI's routes (it sets both; the SageMaker routes /ping and /invocations are
            # always served).
            vertex_health_route=os.environ.get("AIP_HEALTH_ROUTE") or None,
            vertex_predict_route=os.environ.get("AIP_PREDICT_ROUTE") or None,
            # gRPC (server/grpc_api.py: KServe/Triton's GRPCInferenceService and TF Serving's
            # PredictionService) beside REST, in the same process; GRPC_PORT=0 turns it off.
            grpc_port=_int("GRPC_PORT", 8081),
            workers=_int("WORKERS", 1),
            threads=_int("THREADS", 0),
            concurrency=_int("CONCURRENCY", 4),
            max_body_bytes=_int("MAX_BODY_BYTES", 16 * 2**20),
            # Largest first dimension per request: bounds ONNX Runtime's memory per call (a
            # 12 MB body of zeros is a batch of 100,000 digits, several GiB of activations).
            max_batch=_int("MAX_BATCH", 64),
            # image/* bodies (server/images.py): larger images are refused before decoding.
            max_image_pixels=_int("MAX_IMAGE_PIXELS", 4096 * 4096),
            api_key=os.environ.get("API_KEY") or None,
            # Under `docker stop`'s 10 s, after which Docker kills the server mid-request.
            graceful_timeout=_int("GRACEFUL_TIMEOUT", 8),
            # Slow clients (server/protocol.py): the request head and body must arrive in time.
            header_timeout=_int("HEADER_TIMEOUT", 10),
            body_timeout=_int("BODY_TIMEOUT", 30),
            keepalive_timeout=_int("KEEPALIVE_TIMEOUT", 5),
            # Bodies over DECODE_PROCESS_ABOVE bytes are decoded in DECODE_PROCESSES separate
            # processes, off the serving process's GIL (app.Decoder); 0 processes: threads only.
            decode_processes=_int("DECODE_PROCESSES", 1),
            decode_process_above=_int("DECODE_PROCESS_ABOVE", 256 * 1024),
            log_level=os.environ.get("LOG_LEVEL", "info"),
            # Dynamic batching (server/batcher.py): requests waiting while the model is busy run
            # as one call of up to BATCH_MAX_SIZE rows; BATCH_MAX_DELAY_MS lets a run wait for
            # more. BATCHING=0/1 overrides the export's choice (on when the batch is dynamic).
            batching=os.environ.get("BATCHING", "auto").strip().lower() or "auto",
            batch_max_size=_int("BATCH_MAX_SIZE", 32),
            batch_max_delay_ms=_float("BATCH_MAX_DELAY_MS", 0.0),
            # Drift monitoring (server/monitor.py, when the export made a reference profile):
            # live figures weigh a sample half as much DRIFT_HALF_LIFE samples later.
            drift_half_life=_float("DRIFT_HALF_LIFE", 500.0),
            # The version a request that names none gets: DEFAULT_VERSION pins it; otherwise
            # model.json's default_version (re-read when the file changes, checked every
            # VERSION_POLL_SECONDS; 0: read at start only), else the newest version.
            default_version=os.environ.get("DEFAULT_VERSION", "").strip() or None,
            version_poll_seconds=_float("VERSION_POLL_SECONDS", 5.0),
        )


def _only_model() -> Path:
    """models/NAME beside the server package, when models/ holds one model."""
    models = Path(__file__).resolve().parents[1] / "models"
    found = sorted(p for p in models.iterdir() if p.is_dir()) if models.is_dir() else []
    if len(found) != 1:
        raise SystemExit(
            f"set MODEL_DIR to the model's folder: {models} holds "
            + (", ".join(p.name for p in found) if found else "no model folder")
        )
    return found[0]
