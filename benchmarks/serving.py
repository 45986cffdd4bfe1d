"""Load benchmark of the exported inference server (issue 13), in one process tree and one run:
the Docker export's server (outside Docker) over REST JSON, REST binary tensors and gRPC, with
dynamic batching off and on, against TorchServe serving the same weights (eager PyTorch) and a real
Triton (nvidia-pytriton's server, the same ONNX model in ONNX Runtime) on the same machine.

    python benchmarks/serving.py [--models sample,cnn] [--seconds 10] [--clients 1,8,32]
                                 [--no-torchserve] [--no-triton]

Load generators: `hey` for HTTP (apt-get install hey; a Go client, so the 2 cores are not spent in
a Python client) and `h2load` for gRPC (apt-get install nghttp2-client; C, sending the ModelInfer
request made with the export's own stubs; `--grpc-client python` uses benchmarks/grpc_load.py,
grpc.aio in its own process, which runs out of CPU before the server on 2 cores at one client).
Models: the bundled sample (8x8 digits, 64 floats per request) and EfficientNet-Lite0's
architecture with seeded random weights (benchmarks/models; 4.65 M parameters, one 224x224x3 image
per request, 602 KB as raw FP32, 3 MB as JSON). Every server gets one worker and all cores; each
run lasts --seconds after a warm-up. Prints req/s, p50, p99, errors and server RSS per run, then
the ratios issue 13 asks for.

Triton runs from a Python 3.13 venv made on first use in the cache (pip install nvidia-pytriton
and onnxruntime: the one download this benchmark makes); --no-triton skips it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workflows.exporters.common import free_port  # noqa: E402
from workflows.exporters.docker import (  # noqa: E402
    DockerExportOptions,
    export_docker,
    exported_server,
)
from workflows.exporters.model_versions import model_folder  # noqa: E402
from workflows.exporters.torchserve import (  # noqa: E402
    TorchServe,
    TorchServeExportOptions,
    export_torchserve,
)
from workflows.machine import measured_on  # noqa: E402

SAMPLE = ROOT / "resources" / "sample"
CACHE = Path(os.environ.get("DOCKYARD_BENCH_CACHE", Path.home() / ".cache" / "dockyard" / "bench"))
TRITON_REQUIREMENTS = ["nvidia-pytriton==0.7.0", "onnxruntime==1.32.0"]


# -- models --------------------------------------------------------------------------------------
def sample_model() -> dict[str, Any]:
    x = np.load(SAMPLE / "digits_test.npz")["x"][:1].astype(np.float32)
    return {
        "label": "digits sample (1x1x8x8)",
        "pt2": SAMPLE / "digits_cnn.pt2",
        "weights": SAMPLE / "digits_cnn.safetensors",
        "model_file": SAMPLE / "digits_cnn.py",
        "shape": [1, 1, 8, 8],
        "x": x,
    }


def cnn_model() -> dict[str, Any]:
    """EfficientNet-Lite0's architecture, seeded weights: a .pt2 with a dynamic batch (for the
    Docker export) and safetensors + the model file (for TorchServe's eager handler)."""
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(ROOT / "benchmarks" / "models"))
    from efficientnet_lite0 import EfficientNetLite0

    folder = CACHE / "efficientnet_lite0"
    pt2, weights = folder / "efficientnet_lite0.pt2", folder / "efficientnet_lite0.safetensors"
    model_file = ROOT / "benchmarks" / "models" / "efficientnet_lite0.py"
    if not pt2.exists():
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = EfficientNetLite0().eval()
        for m in model.modules():  # non-trivial BatchNorm statistics, as a trained model has
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        save_file(model.state_dict(), str(weights))
        example = torch.rand(2, 3, 224, 224)
        batch = torch.export.Dim("batch", min=1, max=64)
        program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
        torch.export.save(program, str(pt2))
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    return {
        "label": "EfficientNet-Lite0 architecture (1x3x224x224)",
        "pt2": pt2,
        "weights": weights,
        "model_file": model_file,
        "model_class": "EfficientNetLite0",
        "shape": [1, 3, 224, 224],
        "x": x,
    }


# -- load generators -----------------------------------------------------------------------------
def parse_hey(text: str) -> dict[str, float]:
    """req/s (successful answers only: hey's own Requests/sec counts failures too), p50/p99 ms,
    requests and errors (non-200 answers and transport errors) from hey's summary."""

    def number(pattern: str) -> float:
        found = re.search(pattern, text)
        return float(found.group(1)) if found else float("nan")

    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", text))
    ok = int(codes.get("200", 0))
    errors = sum(int(v) for k, v in codes.items() if k != "200")
    failures = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    errors += sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]", failures, re.M))
    total = number(r"Total:\s+([\d.]+) secs")
    return {
        "rps": ok / total if total > 0 else float("nan"),
        "p50_ms": number(r"50%+ in ([\d.]+) secs") * 1000,
        "p99_ms": number(r"99%+ in ([\d.]+) secs") * 1000,
        "requests": ok,
        "errors": errors,
    }


def hey(url: str, body: Path, clients: int, seconds: float, kind: str, headers: dict) -> dict:
    args = ["hey", "-c", str(clients), "-m", "POST", "-T", kind, "-D", str(body)]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    subprocess.run([*args, "-n", str(max(20, clients * 4)), url], capture_output=True, check=True)
    r = subprocess.run([*args, "-z", f"{seconds}s", url], capture_output=True, text=True)
    return parse_hey(r.stdout)


def grpc_load(folder: Path, target: str, name: str, npz: Path, clients: int, seconds: float):
    env = {**os.environ, "PYTHONPATH": str(folder)}
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "grpc_load.py"), target, name, str(npz),
         str(clients), str(seconds)],
        capture_output=True, text=True, env=env, timeout=seconds + 120,
    )  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def grpc_frame_file(folder: Path, name: str, npz: Path) -> Path:
    """The ModelInfer request as h2load sends it (made with the export's own stubs)."""
    out = npz.with_suffix(".grpc")
    if not out.exists():
        env = {**os.environ, "PYTHONPATH": str(folder)}
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "grpc_load.py"), "--frame", name,
             str(npz), str(out)],
            check=True, env=env,
        )  # fmt: skip
    return out


def grpc_counts(base: str) -> dict[str, float]:
    """ModelInfer calls the server has answered, by gRPC status (its /metrics)."""
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    pattern = (
        r'dockyard_requests_total\{endpoint="/inference\.GRPCInferenceService/ModelInfer",'
        r'status="(\w+)"\} ([\d.e+]+)'
    )
    return {status: float(n) for status, n in re.findall(pattern, text)}


def h2load_grpc(base: str, port: int, frame: Path, clients: int, seconds: float) -> dict:
    """gRPC load from h2load (nghttp2's C client, apt-get install nghttp2-client): `clients`
    connections, one call in flight on each, for `seconds` after a warm-up. A C client keeps a
    Python server busy at any rate it can answer, where a Python gRPC client on the same 2 cores
    runs out first. h2load sees only HTTP/2 statuses; the gRPC status of every call is counted
    from the server's metrics (errors: any status but OK)."""
    url = f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"
    args = ["h2load", "-c", str(clients), "-m", "1", "-d", str(frame),
            "-H", "content-type: application/grpc", "-H", "te: trailers"]  # fmt: skip
    # Warm-up as for hey: its own run (h2load's --warm-up-time counts in its log and total).
    subprocess.run([*args, "-n", str(max(20, clients * 4)), url], capture_output=True, check=True)
    before = grpc_counts(base)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "requests.tsv"
        r = subprocess.run(
            [*args, "-D", f"{seconds:g}", "--log-file", str(log), url],
            capture_output=True, text=True, timeout=seconds + 120,
        )  # fmt: skip
        rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    after = grpc_counts(base)
    if r.returncode != 0:
        raise RuntimeError(r.stdout[-2000:] + r.stderr[-2000:])
    # HTTP/2 200 for every call the server answered, whatever its gRPC status.
    answered = [int(row[2]) / 1000 for row in rows if row[1] == "200"]
    refused = int(sum(after.get(k, 0) - before.get(k, 0) for k in after if k != "OK"))
    ms = np.asarray(answered or [float("nan")])
    done = re.search(r"finished in ([\d.]+)(m?s)", r.stdout)
    wall = float(done.group(1)) / (1000 if done.group(2) == "ms" else 1) if done else seconds
    # (The metrics also count calls still in flight when h2load stopped: hence the floor.)
    succeeded = max(0, len(answered) - refused)
    return {
        "rps": succeeded / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "requests": succeeded,
        "errors": refused + len(rows) - len(answered),
    }


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (TorchServe: Java + Python workers)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


# -- request bodies ------------------------------------------------------------------------------
def bodies(folder: Path, name: str, x: np.ndarray) -> dict[str, Any]:
    tensor = {"name": name, "shape": list(x.shape), "datatype": "FP32"}
    json_body = folder / "request.json"
    json_body.write_bytes(json.dumps({"inputs": [{**tensor, "data": x.ravel().tolist()}]}).encode())
    raw = x.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    binary = folder / "request.bin"
    binary.write_bytes(header + raw)
    npz = folder / "request.npz"
    np.savez(npz, **{name: x})
    ts = folder / "torchserve.json"
    ts.write_bytes(json.dumps({"inputs": x.tolist()}).encode())
    return {"json": json_body, "binary": binary, "header": len(header), "npz": npz, "ts": ts}


def raw_ort(model_path: Path, name: str, x: np.ndarray, seconds: float = 2.0) -> dict[str, float]:
    """Batch-1 latency of the model in ONNX Runtime alone, run for `seconds` (at least 200
    runs). Measured again just before each one-client run: on a shared host the CPU's speed
    drifts by minutes (p50 4-10 ms for the CNN within one hour here), so only a raw figure
    taken beside the server's gives a fair ratio."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    for _ in range(10):
        session.run(None, {name: x})
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 200 or time.perf_counter() < deadline:
        started = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - started)
    ms = np.asarray(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


# -- servers -------------------------------------------------------------------------------------
def bench_dockyard(
    folder: Path, name: str, files: dict, clients: list[int], seconds: float, grpc_client: str,
    onnx: Path, x: np.ndarray,
):  # fmt: skip
    rows = []
    url_path = f"/v2/models/{name}/infer"
    frame = grpc_frame_file(folder, name, files["npz"]) if grpc_client == "h2load" else None
    for batching in ("0", "1"):
        grpc_port = free_port()
        env = {"BATCHING": batching, "GRPC_PORT": str(grpc_port), "API_KEY": ""}
        with exported_server(folder, env, quiet=True) as (base, proc):
            for c in clients:
                # Raw ONNX Runtime beside the one-client runs (the server idle meanwhile).
                raw = raw_ort(onnx, "x", x, seconds) if c == 1 else None
                runs = {
                    "REST JSON": hey(base + url_path, files["json"], c, seconds,
                                     "application/json", {}),
                    "REST binary": hey(base + url_path, files["binary"], c, seconds,
                                       "application/octet-stream",
                                       {"Inference-Header-Content-Length": files["header"]}),
                    "gRPC": h2load_grpc(base, grpc_port, frame, c, seconds) if frame else
                            grpc_load(folder, f"127.0.0.1:{grpc_port}", name, files["npz"], c,
                                      seconds),
                }  # fmt: skip
                for protocol, r in runs.items():
                    label = f"Dockyard {protocol}, batching {'on' if batching == '1' else 'off'}"
                    row = {"server": label, "clients": c, **r, "rss_mb": rss_mb(proc.pid)}
                    if raw is not None:
                        row["raw_p50_ms"], row["raw_p99_ms"] = raw["p50_ms"], raw["p99_ms"]
                    rows.append(row)
    return rows


def bench_torchserve(model: dict, files: dict, clients: list[int], seconds: float, tmp: Path):
    out = tmp / "torchserve"
    load = {
        "path": str(model["weights"]),
        "model_file": str(model["model_file"]),
        "input_shapes": {"x": model["shape"]},
    }
    if model.get("model_class"):
        load["model_class"] = model["model_class"]
    export_torchserve(
        TorchServeExportOptions(model=load, output=str(out), name="bench", smoke_test=False)
    )
    ts = TorchServe(out / "model-store", {"bench": "bench.mar"}, tmp)
    rows = []
    try:
        ts.wait_ready("bench", files["ts"].read_bytes())
        for c in clients:
            r = hey(f"http://127.0.0.1:{ts.port}/predictions/bench", files["ts"], c, seconds,
                    "application/json", {})  # fmt: skip
            rows.append({"server": "TorchServe 0.12 JSON (eager)", "clients": c, **r,
                         "rss_mb": rss_mb(ts.proc.pid)})  # fmt: skip
    finally:
        ts.stop()
    return rows


def _python313() -> str:
    """A Python 3.13 interpreter: $DOCKYARD_PYTHON313, python3.13 on PATH, or pyenv's."""
    found = [os.environ.get("DOCKYARD_PYTHON313"), shutil.which("python3.13")]
    found += [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.13*/bin/python3.13"))]
    for candidate in filter(None, found):
        ok = subprocess.run([candidate, "--version"], capture_output=True)  # pyenv shims may fail
        if ok.returncode == 0:
            return candidate
    raise RuntimeError("Python 3.13 is needed for Triton (pytriton); set DOCKYARD_PYTHON313 "
                       "or use --no-triton")  # fmt: skip


def triton_python() -> Path:
    """The Python 3.13 venv with pytriton + onnxruntime, made on first use."""
    venv = CACHE / "pytriton-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        base = _python313()
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *TRITON_REQUIREMENTS],
                       check=True)  # fmt: skip
    return python


def bench_triton(onnx: Path, files: dict, clients: list[int], seconds: float, max_batch: int):
    python = triton_python()
    http, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [str(python), str(ROOT / "benchmarks" / "triton_server.py"), str(onnx), "bench",
         str(http), str(grpc_port), str(max_batch)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{http}"
    rows = []
    try:
        deadline = time.monotonic() + 180
        while True:  # ready, and answering inferences (it says "no available versions" ~10 s)
            try:
                req = urllib.request.Request(
                    base + "/v2/models/bench/infer", data=files["json"].read_bytes(),
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip
                with urllib.request.urlopen(req, timeout=10) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Triton did not start")
            time.sleep(1)
        for c in clients:
            for protocol, body, kind, headers in (
                ("JSON", files["json"], "application/json", {}),
                ("binary", files["binary"], "application/octet-stream",
                 {"Inference-Header-Content-Length": files["header"]}),
            ):  # fmt: skip
                r = hey(base + "/v2/models/bench/infer", body, c, seconds, kind, headers)
                rows.append({"server": f"Triton (pytriton 0.7) REST {protocol}", "clients": c,
                             **r, "rss_mb": rss_mb(proc.pid)})  # fmt: skip
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
    return rows


# -- report --------------------------------------------------------------------------------------
def table(rows: list[dict]) -> None:
    print(f"{'server':42} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6} {'RSS MB':>7}")  # fmt: skip
    for r in rows:
        print(f"{r['server']:42} {r['clients']:>7} {r['rps']:>8.1f} {r['p50_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f} {r['errors']:>6} {r['rss_mb']:>7.0f}")  # fmt: skip


def pick(rows: list[dict], server: str, clients: int) -> dict | None:
    return next((r for r in rows if r["server"] == server and r["clients"] == clients), None)


def ratios(rows: list[dict], raw: dict, sample: bool) -> None:
    """The figures issue 13's acceptance names, computed from this run."""

    def best(prefix: str, clients: int) -> dict | None:
        found = [r for r in rows if r["server"].startswith(prefix) and r["clients"] == clients]
        return max(found, key=lambda r: r["rps"]) if found else None

    def say(text: str, value: float, target: float) -> None:
        verdict = "meets" if value >= target else "MISSES"
        print(f"  {text}: {value:.2f} ({verdict} >= {target:g})")

    if sample:
        for protocol in ("REST JSON", "REST binary", "gRPC"):
            on = pick(rows, f"Dockyard {protocol}, batching on", 32)
            off = pick(rows, f"Dockyard {protocol}, batching off", 32)
            if on and off:
                say(f"batching on/off at 32 clients, {protocol}", on["rps"] / off["rps"], 1.5)
        return
    ours = best("Dockyard", 8)
    ours_binary = max(
        (r for r in rows if r["clients"] == 8 and r["server"].startswith("Dockyard")
         and ("binary" in r["server"] or "gRPC" in r["server"])),
        key=lambda r: r["rps"], default=None,
    )  # fmt: skip
    ts = pick(rows, "TorchServe 0.12 JSON (eager)", 8)
    triton = pick(rows, "Triton (pytriton 0.7) REST binary", 8)
    if ours and ts:
        say(f"8 clients, best Dockyard ({ours['server']}) / TorchServe", ours["rps"] / ts["rps"], 3)
    if ours_binary and triton:
        say(f"8 clients, Dockyard binary ({ours_binary['server']}) / Triton binary",
            ours_binary["rps"] / triton["rps"], 1)  # fmt: skip
    one = [r for r in rows if r["clients"] == 1 and r["server"].startswith("Dockyard")
           and "binary" in r["server"]]  # fmt: skip
    for r in one:
        p50, p99 = r.get("raw_p50_ms", raw["p50_ms"]), r.get("raw_p99_ms", raw["p99_ms"])
        print(f"  1 client, {r['server']}: p99 {r['p99_ms']:.2f} ms = "
              f"{r['p99_ms'] / p50:.2f}x raw ONNX Runtime p50 ({p50:.2f} ms, measured beside it), "
              f"{r['p99_ms'] / p99:.2f}x its p99 ({p99:.2f} ms); target <= 2x")  # fmt: skip
    for protocol in ("REST JSON", "REST binary", "gRPC"):
        for c in sorted({r["clients"] for r in rows}):
            on = pick(rows, f"Dockyard {protocol}, batching on", c)
            off = pick(rows, f"Dockyard {protocol}, batching off", c)
            if on and off:
                print(f"  batching on/off, {protocol}, {c} clients: {on['rps'] / off['rps']:.2f} "
                      "(target: never lower, 1.0 within noise)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sample,cnn")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", default=None, help="default: 1,8,32 (sample), 1,8 (cnn)")
    parser.add_argument("--no-torchserve", action="store_true")
    parser.add_argument("--no-triton", action="store_true")
    parser.add_argument("--triton-max-batch", type=int, default=8)
    parser.add_argument("--json", help="also write every row here")
    parser.add_argument(
        "--grpc-client", choices=["h2load", "python"], default="h2load",
        help="gRPC load from h2load (C, default) or benchmarks/grpc_load.py (grpc.aio)",
    )  # fmt: skip
    args = parser.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("hey is needed: apt-get install hey")
    if args.grpc_client == "h2load" and shutil.which("h2load") is None:
        raise SystemExit(
            "h2load is needed: apt-get install nghttp2-client (or --grpc-client python)"
        )
    print(f"{measured_on()['label']}, {os.cpu_count()} cores; {args.seconds:g} s per run")
    everything = []
    for key in args.models.split(","):
        model = sample_model() if key == "sample" else cnn_model()
        default = "1,8,32" if key == "sample" else "1,8"
        clients = [int(c) for c in (args.clients or default).split(",")]
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            ctx = tmp / "docker"
            export_docker(
                DockerExportOptions(
                    model={"path": str(model["pt2"])}, output=str(ctx), name="bench"
                )
            )
            onnx = model_folder(ctx) / "1" / "model.onnx"
            files = bodies(tmp, "x", model["x"])
            raw = raw_ort(onnx, "x", model["x"])
            rows = bench_dockyard(
                ctx, "bench", files, clients, args.seconds, args.grpc_client, onnx, model["x"]
            )
            if not args.no_torchserve:
                rows += bench_torchserve(model, files, clients, args.seconds, tmp)
            if not args.no_triton:
                rows += bench_triton(onnx, files, clients, args.seconds, args.triton_max_batch)
        print(f"\n{model['label']}: raw ONNX Runtime batch 1 p50 {raw['p50_ms']:.2f} ms, "
              f"p99 {raw['p99_ms']:.2f} ms")  # fmt: skip
        table(rows)
        print("Ratios:")
        ratios(rows, raw, key == "sample")
        everything.append({"model": key, "raw_ort": raw, "rows": rows})
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()
