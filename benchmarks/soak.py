"""Load and soak test of the Docker export's server (issue #12): many clients and a stream of
maximal requests, inside the memory limit the generated Kubernetes manifest sets, with a liveness
probe timing /v2/health/live throughout. Prints the figures and exits 1 when a promise breaks:

- any 5xx, or any status other than 200 and the documented 413 (too big) / 429;
- health p99 over 100 ms (a Kubernetes probe with `timeoutSeconds: 1` has ten times that);
- server RSS (anonymous: heap and buffers, where a leak shows) drifting more than 10 % between
  the second and the last quarter of the run;
- the server killed (by the memory limit, say) or failing to answer.

    python benchmarks/soak.py                      # 200 clients, 120 s (the README's figures)
    python benchmarks/soak.py --clients 50 --seconds 60   # the short run CI does

The server runs in its own memory cgroup (v1 or v2, when this process may make one: root in a
container, as here) with the manifest's limit, so exceeding it kills the server as the kubelet
would; elsewhere the limit is only monitored. The load comes from this process (asyncio, raw
HTTP/1.1 keep-alive): on 2 cores it competes with the server, so figures are conservative.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import sys
import tempfile
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

SAMPLE = ROOT / "resources" / "sample"
OK_STATUSES = {200, 413, 429}


def manifest_memory_limit(folder: Path) -> int:
    """The memory limit in the export's k8s/base/deployment.yaml, in bytes."""
    text = (folder / "k8s" / "base" / "deployment.yaml").read_text()
    value, unit = re.search(r"limits:.*memory:\s*(\d+)(Mi|Gi)", text).groups()
    return int(value) * (2**20 if unit == "Mi" else 2**30)


class MemoryCgroup:
    """A memory cgroup holding the server, or None-like when this process may not make one."""

    def __init__(self, limit: int) -> None:
        self.path: Path | None = None
        name = f"dockyard-soak-{os.getpid()}"
        for base, limit_file in (
            (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"),  # v1
            (Path("/sys/fs/cgroup"), "memory.max"),  # v2
        ):
            try:
                if not (base / "cgroup.procs").exists():
                    continue
                path = base / name
                path.mkdir()
                (path / limit_file).write_text(str(limit))
                if (base / "memory.memsw.limit_in_bytes").exists():  # no swapping around it
                    with contextlib.suppress(OSError):
                        (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
                self.path = path
                return
            except OSError:
                continue

    def add(self, pid: int) -> None:
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()


def _anonymous(p) -> int:
    """A process's anonymous resident memory (heap, arenas, buffers: where a leak shows); the
    file-backed part (shared libraries) comes and goes with the kernel's reclaim (DAMON here),
    which once made a short run's RSS "drift" 16-18 % with no leak. Linux; else the full RSS."""
    try:
        for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return p.memory_info().rss


def rss(pid: int) -> int:
    """Anonymous resident memory of the server and its decoding processes."""
    import psutil

    server = psutil.Process(pid)
    total = 0
    for p in [server, *server.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += _anonymous(p)
    return total


async def http_call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one HTTP/1.1 request on a kept-alive connection; its status (body read and dropped)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if length:
        await reader.readexactly(int(length.group(1)))
    if re.search(rb"(?i)\r\nconnection: *close", head):
        raise ConnectionResetError("server closed the connection")
    return status


def post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Load:
    def __init__(self, port: int, deadline: float) -> None:
        self.port, self.deadline = port, deadline
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.failures: list[str] = []
        self.health: list[float] = []

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1

    async def client(self, request: bytes, record: bool = True) -> None:
        reader = writer = None
        while time.monotonic() < self.deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                started = time.perf_counter()
                status = await asyncio.wait_for(http_call(reader, writer, request), 60)
                if record:
                    self.latencies.append(time.perf_counter() - started)
                self.count(status)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.05)
        if writer is not None:
            writer.close()

    async def probe(self) -> None:
        """A liveness probe: /v2/health/live every 100 ms on its own connection."""
        request = b"GET /v2/health/live HTTP/1.1\r\nHost: soak\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        while time.monotonic() < self.deadline:
            started = time.perf_counter()
            try:
                status = await asyncio.wait_for(http_call(reader, writer, request), 5)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.failures.append(f"health: {type(exc).__name__}: {exc}")
                self.health.append(5.0)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                continue
            self.health.append(time.perf_counter() - started)
            if status != 200:
                self.failures.append(f"health answered {status}")
            await asyncio.sleep(0.1)
        writer.close()


async def run_load(
    port: int, seconds: float, clients: int, big_clients: int, pid: int, warmup: float = 15.0
) -> tuple[Load, list[tuple[float, int]]]:
    x = np.load(SAMPLE / "digits_test.npz")["x"][:1]
    one = post(
        "/v2/models/digits-cnn/infer",
        (
            '{"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": '
            + str(np.round(x.ravel(), 4).tolist())
            + "}]}"
        ).encode(),
    )
    batch = post(
        "/v1/models/digits-cnn:predict",
        ('{"instances": ' + str(np.zeros((64, 1, 8, 8)).tolist()) + "}").encode(),
    )
    # The largest body the server reads (just under MAX_BODY_BYTES = 16 MiB): 8M numbers, a batch
    # over MAX_BATCH, parsed in full before it is refused with a 413.
    values = (16 * 2**20 - 200) // 2
    rows = values // 64
    data = "0," * (rows * 64 - 1) + "0"
    maximal = post(
        "/v2/models/digits-cnn/infer",
        (
            f'{{"inputs": [{{"name": "x", "shape": [{rows}, 1, 8, 8], '
            f'"datatype": "FP32", "data": [{data}]}}]}}'
        ).encode(),
    )
    # Warm-up, not counted, under the full load the run makes: the allocator's arenas keep
    # growing for the first ~30 s of load before they level off (measured with a 5 s warm-up of
    # one client per kind: a 30 s run +13 %, a 60 s run +0.8 %, 122 s -1.0 %; a CI run once
    # measured +10.2 % at 60 s, its second quarter still in the growth), so the quarters that
    # are compared must come after it.
    warm = Load(port, time.monotonic() + warmup)
    await asyncio.gather(
        *[warm.client(one, record=False) for _ in range(clients - clients // 10)],
        *[warm.client(batch, record=False) for _ in range(max(1, clients // 10))],
        *[warm.client(maximal, record=False) for _ in range(big_clients)],
    )
    load = Load(port, time.monotonic() + seconds)
    samples: list[tuple[float, int]] = []

    async def sample_rss() -> None:
        start = time.monotonic()
        while time.monotonic() < load.deadline:
            with contextlib.suppress(Exception):
                samples.append((time.monotonic() - start, rss(pid)))
            await asyncio.sleep(0.5)

    tasks = [load.client(one) for _ in range(clients - clients // 10)]
    tasks += [load.client(batch) for _ in range(clients // 10)]
    tasks += [load.client(maximal, record=False) for _ in range(big_clients)]
    await asyncio.gather(load.probe(), sample_rss(), *tasks)
    return load, samples


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--big-clients", type=int, default=2, help="streams of maximal requests")
    parser.add_argument("--export", type=Path, help="an existing Docker export (default: make one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.export
        if folder is None:
            folder = Path(tmp) / "digits"
            export_docker(
                DockerExportOptions(
                    model={"path": str(SAMPLE / "digits_cnn.pt2")}, output=str(folder)
                )
            )
        limit = manifest_memory_limit(folder)
        cgroup = MemoryCgroup(limit)
        try:
            with exported_server(
                folder, {"LOG_LEVEL": "error"}, on_start=cgroup.add, quiet=True
            ) as (base, server):
                port = int(base.rsplit(":", 1)[1])
                started = time.monotonic()
                load, samples = asyncio.run(
                    run_load(port, args.seconds, args.clients, args.big_clients, server.pid)
                )
                elapsed = time.monotonic() - started
                alive = server.poll() is None
        finally:
            cgroup.remove()

    quarter = args.seconds / 4
    second = [r for t, r in samples if quarter <= t < 2 * quarter]
    last = [r for t, r in samples if t >= 3 * quarter]
    rss_start = statistics.median(second) if second else 0
    rss_end = statistics.median(last) if last else 0
    drift = (rss_end - rss_start) / rss_start if rss_start else float("inf")
    requests = sum(load.statuses.values())
    bad = {s: n for s, n in load.statuses.items() if s not in OK_STATUSES}
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), cpu)
    print(f"CPU: {cpu} ({os.cpu_count()} cores)")
    print(
        f"memory limit: {limit / 2**20:.0f} MiB "
        + ("(enforced, cgroup)" if cgroup.path else "(monitored only: no cgroup here)")
    )
    print(f"clients: {args.clients} + {args.big_clients} streams of maximal (16 MiB) requests")
    print(f"seconds: {elapsed:.1f}")
    print(
        f"requests: {requests} ({requests / elapsed:.0f}/s)  statuses: {dict(sorted(load.statuses.items()))}"
    )
    print(f"errors: {sum(bad.values())} bad statuses, {len(load.failures)} connection failures")
    print(
        f"latency p50/p99: {pct(load.latencies, 50) * 1e3:.1f} / "
        f"{pct(load.latencies, 99) * 1e3:.1f} ms"
    )
    print(
        f"health p50/p99/worst: {pct(load.health, 50) * 1e3:.1f} / "
        f"{pct(load.health, 99) * 1e3:.1f} / {max(load.health, default=0) * 1e3:.1f} ms "
        f"({len(load.health)} probes)"
    )
    print(
        f"RSS, anonymous (median, 2nd / last quarter): {rss_start / 2**20:.0f} / {rss_end / 2**20:.0f} MiB "
        f"({drift:+.1%}); peak {max((r for _, r in samples), default=0) / 2**20:.0f} MiB"
    )
    problems = []
    if not alive:
        problems.append("the server died during the run")
    if bad:
        problems.append(f"statuses outside {sorted(OK_STATUSES)}: {bad}")
    if load.failures:
        problems.append(f"{len(load.failures)} failed connections, e.g. {load.failures[:3]}")
    if not load.health or pct(load.health, 99) > 0.100:
        problems.append("health p99 over 100 ms")
    if abs(drift) > 0.10:
        problems.append(f"RSS drifted {drift:+.1%} (over 10 %)")
    if requests == 0:
        problems.append("no request answered")
    for p in problems:
        print(f"FAIL: {p}")
    print("PASS" if not problems else "FAIL")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
