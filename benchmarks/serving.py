"""The exported Docker server (run outside Docker) vs TorchServe serving the same sample model,
measured in one run with the same client and concurrency. Prints throughput and p50/p99.

    python benchmarks/serving.py [--requests 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workflows.exporters.docker import (  # noqa: E402
    DockerExportOptions,
    export_docker,
    exported_server,
)
from workflows.exporters.torchserve import (  # noqa: E402
    TorchServe,
    TorchServeExportOptions,
    export_torchserve,
)

SAMPLE = ROOT / "resources" / "sample"


def load(port: int, path: str, bodies: list[bytes], concurrency: int) -> dict[str, float]:
    """Send every body once, `concurrency` keep-alive connections at a time; latency per request."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    queue = list(enumerate(bodies))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                if not queue:
                    break
                _, body = queue.pop()
            t0 = time.perf_counter()
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if resp.status != 200:
                    errors[0] += 1
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors[0],
        "throughput": len(latencies) / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    x = np.load(SAMPLE / "digits_test.npz")["x"]
    picks = [x[i % len(x)] for i in range(args.requests)]
    v2 = [
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 1, 8, 8],
                        "datatype": "FP32",
                        "data": p.ravel().tolist(),
                    }
                ]
            }
        ).encode()
        for p in picks
    ]
    ts_bodies = [json.dumps({"inputs": p.tolist()}).encode() for p in picks]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        ctx = tmp_path / "docker"
        export_docker(
            DockerExportOptions(model={"path": str(SAMPLE / "digits_cnn.pt2")}, output=str(ctx))
        )
        mar = tmp_path / "ts"
        export_torchserve(
            TorchServeExportOptions(
                model={
                    "path": str(SAMPLE / "digits_cnn.safetensors"),
                    "model_file": str(SAMPLE / "digits_cnn.py"),
                    "input_shapes": {"x": [1, 1, 8, 8]},
                },
                output=str(mar),
                name="digits",
                smoke_test=False,
            )
        )

        with exported_server(ctx, {"THREADS": "1"}, quiet=True) as (base, _):
            port = int(base.rsplit(":", 1)[1])
            load(port, "/v2/models/digits-cnn/infer", v2[:100], args.concurrency)  # warm-up
            ours = load(port, "/v2/models/digits-cnn/infer", v2, args.concurrency)

        ts = TorchServe(mar / "model-store", {"digits": "digits.mar"}, tmp_path)
        try:
            ts.wait_ready("digits", ts_bodies[0])
            load(ts.port, "/predictions/digits", ts_bodies[:100], args.concurrency)  # warm-up
            theirs = load(ts.port, "/predictions/digits", ts_bodies, args.concurrency)
        finally:
            ts.stop()

    print(
        f"digits_cnn, batch 1 per request, {args.requests} requests, concurrency {args.concurrency}, "
        f"{os.cpu_count()} cores, one worker each"
    )
    print(f"{'server':42} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for label, r in (
        ("Dockyard export (ONNX Runtime, uvicorn)", ours),
        ("TorchServe 0.12 (eager PyTorch, same weights)", theirs),
    ):
        print(
            f"{label:42} {r['throughput']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}"
        )


if __name__ == "__main__":
    main()
