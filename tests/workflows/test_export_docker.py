"""The exported Docker build context: its server is started outside Docker and called for real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from workflows.atomic import OWNER_MARK
from workflows.errors import ExportError
from workflows.exporters.common import free_port
from workflows.exporters.docker import DockerExportOptions, export_docker, image_allocator_settings
from workflows.exporters.model_versions import model_folder

from .served import Server

API_KEY = "test-key-123"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, sample_dir):
    out = tmp_path_factory.mktemp("docker") / "digits"
    result = export_docker(
        DockerExportOptions(model={"path": str(sample_dir / "digits_cnn.pt2")}, output=str(out))
    )
    return out, result


@pytest.fixture(scope="module")
def server(exported):
    s = Server(exported[0], API_KEY=API_KEY, MAX_BODY_BYTES=str(64 * 1024))
    yield s
    s.stop()


AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _reference(folder: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(
        str(model_folder(folder) / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return sess.run(None, {"x": x})[0]


def test_export_result_and_files(exported):
    folder, result = exported
    assert result["smoke_test"]["passed"] and result["smoke_test"]["max_abs_error"] <= 1e-5
    # The export's client.py checked every protocol against sample_response.json.
    assert result["smoke_test"]["protocols"] == ["rest", "rest-binary", "grpc", "tf-serving"]
    assert result["hadolint"]["ran"] and result["hadolint"]["findings"] == []
    assert result["build"]["built"] is False and "Docker engine" in result["build"]["reason"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["source"]["sha256"]) == 64
    assert [s["step"] for s in manifest["steps"]] == ["convert", "export"]
    assert manifest["tool_versions"]["onnxruntime"] == ort.__version__
    dockerfile = (folder / "Dockerfile").read_text()
    for needle in (
        "FROM python:3.11.11-slim-bookworm",
        "USER 10001",
        "HEALTHCHECK",
        "EXPOSE 8080 8081",
        "GRPC_PORT=8081",
        "MALLOC_ARENA_MAX=2",
    ):
        assert needle in dockerfile
    # Servers the tests and benchmarks start outside Docker take the image's allocator setting.
    assert image_allocator_settings(folder) == {"MALLOC_ARENA_MAX": "2"}
    lines = (folder / "requirements.txt").read_text().splitlines()
    reqs = [ln.split("==")[0] for ln in lines if ln and not ln.startswith("#")]
    assert reqs == [
        "onnxruntime", "numpy", "starlette", "uvicorn", "httptools", "prometheus-client", "orjson",
        "grpcio", "grpcio-health-checking", "protobuf",
    ]  # fmt: skip
    assert all("==" in ln for ln in lines if ln and not ln.startswith("#"))
    assert not list(folder.parent.glob(".*partial*"))


def test_client_py_calls_every_protocol_with_the_api_key(server, exported):
    def client(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "client.py",
                "--url",
                server.base,
                "--grpc",
                server.grpc_target,
                *args,
            ],
            cwd=exported[0],
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = client("--api-key", API_KEY)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["rest", "rest-binary", "grpc", "tf-serving"]
    diffs = [float(line.rsplit("max abs diff", 1)[1]) for line in lines]
    assert max(diffs) <= 1e-5
    r = client("--api-key", API_KEY, "--protocol", "rest,carrier-pigeon")
    assert r.returncode == 2 and "unknown protocol(s) ['carrier-pigeon']" in r.stderr
    r = client("--protocol", "rest")  # no key: the server refuses, client.py says so
    assert r.returncode != 0 and "401" in r.stderr


def test_an_oversized_head_on_a_kept_alive_connection_gets_431(server):
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"live":true}'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000)
        answer = b""
        while chunk := sock.recv(65536):  # the server answers, then closes
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert b"the request head is over 16384 bytes" in answer


def _digits(sample_dir: Path, n: int) -> np.ndarray:
    return np.load(sample_dir / "digits_test.npz")["x"][:n].astype(np.float32)


def test_sagemaker_routes_answer_like_the_v2_and_v1_routes(server, sample_dir):
    x = _digits(sample_dir, 3)
    v2 = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                      "data": x.ravel().tolist()}]}  # fmt: skip
    assert server.call("GET", "/ping")[0] == 200  # no API key: a health check
    status, want = server.call("POST", "/v2/models/digits-cnn/infer", v2, headers=AUTH)
    assert status == 200
    status, got = server.call("POST", "/invocations", v2, headers=AUTH)
    assert status == 200 and got["outputs"][0]["shape"] == [3, 10]
    assert got["outputs"][0]["data"] == want["outputs"][0]["data"]
    instances = {"instances": x.tolist()}
    status, want_v1 = server.call("POST", "/v1/models/digits-cnn:predict", instances, headers=AUTH)
    status, got_v1 = server.call("POST", "/invocations", instances, headers=AUTH)
    assert status == 200 and got_v1 == want_v1
    assert np.allclose(got_v1["predictions"], np.reshape(want["outputs"][0]["data"], (3, 10)))
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                     "parameters": {"binary_data_size": x.nbytes}}]}
    ).encode()  # fmt: skip
    status, got_binary = server.call(
        "POST", "/invocations", raw=header + x.astype("<f4").tobytes(),
        headers={**AUTH, "Inference-Header-Content-Length": str(len(header)),
                 "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert status == 200 and got_binary["outputs"][0]["data"] == want["outputs"][0]["data"]
    assert server.call("POST", "/invocations", v2)[0] == 401  # the API key still applies
    status, answer = server.call("POST", "/invocations", {"rows": []}, headers=AUTH)
    assert status == 400 and "Open Inference Protocol v2" in answer["error"]


def test_vertex_ai_routes_and_port(exported, sample_dir):
    folder = exported[0]
    health, predict = "/v1/endpoints/7/deployedModels/9", "/v1/endpoints/7/deployedModels/9:predict"
    port = free_port()
    s = Server(folder, PORT="1", AIP_HTTP_PORT=str(port), AIP_HEALTH_ROUTE=health,
               AIP_PREDICT_ROUTE=predict, port=port)  # fmt: skip
    try:
        assert s.call("GET", health)[0] == 200
        x = _digits(sample_dir, 2)
        status, got = s.call("POST", predict, {"instances": x.tolist(), "parameters": {}})
        assert status == 200
        want = _reference(folder, x)
        assert np.abs(np.asarray(got["predictions"]) - want).max() <= 1e-5
    finally:
        s.stop()


def test_the_images_serve_command_starts_the_server(exported, tmp_path):
    """SageMaker runs `docker run IMAGE serve`: the Dockerfile's own lines make `serve`."""
    folder = exported[0]
    line = next(ln for ln in (folder / "Dockerfile").read_text().splitlines() if "printf" in ln)
    command = line.strip().removeprefix("&& ").removesuffix("\\").strip()
    script = tmp_path / "serve"
    subprocess.run(["sh", "-c", command.replace("/usr/local/bin/serve", str(script))], check=True)
    port = free_port()
    env = {**os.environ, "PORT": str(port), "GRPC_PORT": "0", "HOST": "127.0.0.1",
           "PYTHONPATH": str(folder), "LOG_LEVEL": "warning",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    proc = subprocess.Popen(["sh", "-c", f"chmod 755 {script} && exec {script}"], cwd=folder,
                            env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    status = r.status
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_kubernetes_and_kserve_manifests(exported):
    folder, _ = exported
    dep = yaml.safe_load((folder / "k8s" / "base" / "deployment.yaml").read_text())
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["image"] == "dockyard/digits-cnn:1"
    hpa = yaml.safe_load((folder / "k8s" / "base" / "hpa.yaml").read_text())
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    svc = yaml.safe_load((folder / "k8s" / "base" / "service.yaml").read_text())
    # The Service selects the app's pods, stable and canary alike.
    assert svc["spec"]["selector"] == {"app": "digits-cnn"}
    assert dep["spec"]["selector"]["matchLabels"] == {"app": "digits-cnn", "track": "stable"}
    canary = yaml.safe_load(
        (folder / "k8s" / "overlays" / "canary" / "deployment-canary.yaml").read_text()
    )
    assert canary["metadata"]["name"] == "digits-cnn-canary" and canary["spec"]["replicas"] == 1
    assert canary["spec"]["selector"]["matchLabels"] == {"app": "digits-cnn", "track": "canary"}
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == "dockyard/digits-cnn:2"
    # Everything else is the stable Deployment's (probes, limits, security context).
    stable_pod, canary_pod = dep["spec"]["template"]["spec"], canary["spec"]["template"]["spec"]
    assert {**canary_pod["containers"][0], "image": None} == {
        **stable_pod["containers"][0],
        "image": None,
    }
    kserve_canary = yaml.safe_load((folder / "kserve" / "canary.yaml").read_text())
    assert kserve_canary["spec"]["predictor"]["canaryTrafficPercent"] == 10
    isvc = yaml.safe_load((folder / "kserve" / "inferenceservice.yaml").read_text())
    assert isvc["kind"] == "InferenceService"
    assert isvc["spec"]["predictor"]["containers"][0]["ports"][0]["containerPort"] == 8080


def test_manifests_pass_the_kubernetes_and_kserve_schemas(exported):
    """Every Kubernetes manifest against Kubernetes' own OpenAPI schemas (kubernetes-validate,
    offline, strict: no unknown fields); each KServe InferenceService against KServe's own
    schema (the kserve package's generated models, with the Kubernetes types they embed checked
    against Kubernetes' schemas: tests/workflows/kserve_schema.py)."""
    kv = pytest.importorskip("kubernetes_validate")
    from .kserve_schema import problems  # kserve: a test client (tests/clients.txt)

    folder, _ = exported
    version = kv.utils.latest_version()
    kinds = []
    for path in sorted((folder / "k8s").rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            kv.validate(doc, version, strict=True)  # raises kubernetes_validate.ValidationError
            kinds.append(doc["kind"])
    assert sorted(kinds) == ["Deployment", "Deployment", "HorizontalPodAutoscaler", "Service"]
    for name in ("inferenceservice.yaml", "canary.yaml"):
        isvc = yaml.safe_load((folder / "kserve" / name).read_text())
        assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
        assert problems(isvc) == [], name
    # The check can fail: a misspelt KServe field, a wrong type, a misspelt container field.
    predictor = isvc["spec"]["predictor"]
    container = {**predictor["containers"][0], "imagePullPolicee": "Always"}
    broken = {**isvc, "spec": {**isvc["spec"], "predictor": {
        **predictor, "canaryTrafficPercentage": 10, "minReplicas": "one", "containers": [container],
    }}}  # fmt: skip
    found = problems(broken)
    assert any("canaryTrafficPercentage: not a field of KServe's V1beta1PredictorSpec" in p
               for p in found), found  # fmt: skip
    assert any("minReplicas: expected int" in p for p in found), found
    assert any("imagePullPolicee" in p for p in found), found
    assert problems({**isvc, "spec": {}}) != []  # the predictor is required


# yamllint's defaults, but for lines up to 150 characters (descriptions and PromQL), no
# "---" required, and sequences indented or not as long as a file is consistent (the templates
# indent them, PyYAML's dumps of the canary manifests do not).
YAMLLINT = """
extends: default
rules:
  line-length: {max: 150}
  document-start: disable
  indentation: {spaces: consistent, indent-sequences: consistent}
"""


def test_generated_yaml_lints_clean(exported):
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    folder, _ = exported
    config = YamlLintConfig(YAMLLINT)
    files = sorted(
        p for sub in ("k8s", "kserve", "monitoring") for p in (folder / sub).rglob("*.yaml")
    )
    assert len(files) == 11
    found = [
        f"{path.relative_to(folder)}:{problem.line}: {problem.message} ({problem.rule})"
        for path in files
        for problem in linter.run(path.read_text(), config, str(path))
    ]
    assert found == []
    assert list(linter.run("a: {b: 1}\na: 2\n", config))  # it can fail: a duplicate key


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not found")
def test_kustomize_overlays_build_to_valid_manifests(exported):
    """`kubectl kustomize` builds each overlay; every resource passes Kubernetes' schemas."""
    kv = pytest.importorskip("kubernetes_validate")
    folder, _ = exported
    built = {}
    for overlay in ("dev", "prod", "canary"):
        r = subprocess.run(
            ["kubectl", "kustomize", str(folder / "k8s" / "overlays" / overlay)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        docs = list(yaml.safe_load_all(r.stdout))
        for doc in docs:
            kv.validate(doc, kv.utils.latest_version(), strict=True)
        built[overlay] = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    replicas = {
        overlay: {n: d["spec"]["replicas"] for (k, n), d in docs.items() if k == "Deployment"}
        for overlay, docs in built.items()
    }
    assert replicas == {
        "dev": {"digits-cnn": 1},
        "prod": {"digits-cnn": 3},
        "canary": {"digits-cnn": 3, "digits-cnn-canary": 1},
    }
    hpa = built["dev"][("HorizontalPodAutoscaler", "digits-cnn")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 2)
    service = built["canary"][("Service", "digits-cnn")]["spec"]["selector"]
    for name in ("digits-cnn", "digits-cnn-canary"):
        pod = built["canary"][("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
        assert service.items() <= pod.items()  # the Service reaches stable and canary pods


def test_every_endpoint(server, exported, sample_dir):
    folder, _ = exported
    assert server.call("GET", "/v2/health/live") == (200, {"live": True})
    assert server.call("GET", "/v2/health/ready") == (200, {"ready": True})
    status, meta = server.call("GET", "/v2/models/digits-cnn", headers=AUTH)
    assert status == 200
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"][0]["shape"] == [-1, 10]
    assert server.call("GET", "/v2", headers=AUTH)[0] == 200

    x = np.load(sample_dir / "digits_test.npz")["x"][:5]
    want = _reference(folder, x)
    status, body = server.call(
        "POST",
        "/v2/models/digits-cnn/infer",
        {
            "id": "r1",
            "inputs": [
                {"name": "x", "shape": [5, 1, 8, 8], "datatype": "FP32", "data": x.ravel().tolist()}
            ],
        },
        headers=AUTH,
    )
    assert status == 200 and body["id"] == "r1"
    out = body["outputs"][0]
    got = np.asarray(out["data"], np.float32).reshape(out["shape"])
    assert out["shape"] == [5, 10] and out["datatype"] == "FP32"
    assert np.abs(got - want).max() <= 1e-5

    status, body = server.call(
        "POST", "/v1/models/digits-cnn:predict", {"instances": x.tolist()}, headers=AUTH
    )
    assert status == 200
    assert np.abs(np.asarray(body["predictions"], np.float32) - want).max() <= 1e-5

    status, text = server.call("GET", "/metrics", headers=AUTH)
    assert status == 200
    assert 'dockyard_requests_total{endpoint="/v2/models/{name}/infer",status="200"}' in text
    assert "dockyard_inference_seconds_count" in text

    sample = json.loads((folder / "sample_request.json").read_text())
    expected = json.loads((folder / "sample_response.json").read_text())
    status, body = server.call("POST", "/v2/models/digits-cnn/infer", sample, headers=AUTH)
    assert status == 200
    assert (
        np.abs(
            np.asarray(body["outputs"][0]["data"]) - np.asarray(expected["outputs"][0]["data"])
        ).max()
        <= 1e-5
    )


# Client mistakes and malformed requests: tests/corpus/requests.yaml (run by tests/test_corpus.py).


def test_other_bad_requests(server):
    assert server.call("POST", "/v2/models/nope/infer", {"inputs": []}, headers=AUTH)[0] == 404
    status, answer = server.call(
        "POST", "/v2/models/digits-cnn/infer", raw=b"{not json", headers=AUTH
    )
    assert status == 400 and "not valid JSON" in answer["error"]
    big = b'{"inputs": [' + b"0," * 40_000 + b"0]}"
    status, answer = server.call("POST", "/v2/models/digits-cnn/infer", raw=big, headers=AUTH)
    assert status == 413 and "limit" in answer["error"]
    status, answer = server.call("POST", "/v2/models/digits-cnn/infer", {"inputs": []})
    assert status == 401 and "API key" in answer["error"]
    assert server.call("GET", "/v2/models/digits-cnn", headers={"X-API-Key": "wrong"})[0] == 401
    assert server.call("GET", "/v2/models/digits-cnn", headers={"X-API-Key": API_KEY})[0] == 200
    assert (
        server.call("POST", "/v1/models/digits-cnn:classify", {"instances": [1]}, headers=AUTH)[0]
        == 404
    )


def test_burst_of_50_concurrent_clients(server, sample_dir):
    x = np.load(sample_dir / "digits_test.npz")["x"]

    def one(i: int) -> int:
        body = {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 1, 8, 8],
                    "datatype": "FP32",
                    "data": x[i].ravel().tolist(),
                }
            ]
        }
        return server.call("POST", "/v2/models/digits-cnn/infer", body, headers=AUTH)[0]

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one, range(200)))
    assert statuses.count(200) == 200, statuses


def test_graceful_shutdown_finishes_in_flight_requests(exported):
    s = Server(exported[0], MAX_BATCH="4000")  # one slow request: a batch over the default limit
    body = {"instances": np.zeros((4000, 1, 8, 8)).tolist()}
    results = {}

    def slow_call():
        results["status"] = s.call("POST", "/v1/models/digits-cnn:predict", body)[0]

    caller = threading.Thread(target=slow_call)
    caller.start()
    # Stop only once the server counts the slow request in flight (this metrics call is the other).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = s.call("GET", "/metrics")[1]
        line = next(ln for ln in text.splitlines() if ln.startswith("dockyard_requests_in_flight"))
        if float(line.split()[-1]) >= 2:
            break
    code = s.stop()
    caller.join(30)
    assert results.get("status") == 200
    assert code in (0, -signal.SIGTERM)


def test_failed_smoke_test_leaves_nothing(tmp_path, sample_dir, monkeypatch):
    import workflows.exporters.docker as docker_mod

    def broken(*args, **kwargs):
        raise ExportError("simulated: the server answered 500")

    out = tmp_path / "ctx"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier good export")
    (out / OWNER_MARK).write_text("")  # an earlier export of Dockyard's, which it may replace
    monkeypatch.setattr(docker_mod, "smoke_test", broken)
    with pytest.raises(ExportError, match="simulated"):
        export_docker(
            DockerExportOptions(model={"path": str(sample_dir / "digits_cnn.pt2")}, output=str(out))
        )
    assert (out / "keep.txt").read_text() == "an earlier good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctx"]


def test_safe_defaults_outside_docker_and_a_stop_within_docker_stop(exported):
    """`python -m server` on a laptop listens on loopback only; the image listens everywhere;
    the graceful shutdown ends before `docker stop` (10 s) would kill the server."""
    folder = exported[0]
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "GRACEFUL_TIMEOUT")}
    code = "from server.settings import Settings; s = Settings.from_env(); print(s.host, s.graceful_timeout)"
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        env={**env, "PYTHONPATH": str(folder)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    host, grace = r.stdout.split()
    assert host == "127.0.0.1" and int(grace) < 10, r.stderr
    dockerfile = (folder / "Dockerfile").read_text()
    assert "HOST=0.0.0.0" in dockerfile and "GRACEFUL_TIMEOUT=8" in dockerfile


def _closed_after(sock, drip: bytes, every: float, limit: float) -> tuple[float, bytes]:
    """Send `drip` a byte every `every` s until the server closes; (seconds, what it answered)."""
    import socket

    started = time.monotonic()
    answer = b""
    sock.settimeout(every)
    i = 0
    while time.monotonic() - started < limit:
        if i < len(drip):
            try:
                sock.send(drip[i : i + 1])
            except OSError:
                break
            i += 1
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        answer += chunk
    del socket
    return time.monotonic() - started, answer


def test_slow_and_idle_connections_are_closed(exported):
    """#12 item 5: a connection that sends nothing, or its head or body a byte at a time, is
    closed (HEADER_TIMEOUT / BODY_TIMEOUT; 408 for a late body); a normal kept-alive client is not;
    health answers meanwhile; shutdown does not wait on them."""
    import http.client
    import socket

    s = Server(exported[0], HEADER_TIMEOUT="1", BODY_TIMEOUT="2", KEEPALIVE_TIMEOUT="2")
    try:
        head = (
            b"POST /v2/models/digits-cnn/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n"
        )
        results: dict[str, tuple[float, bytes]] = {}

        def run(name: str, drip: bytes, every: float, first: bytes = b"") -> None:
            with socket.create_connection(("127.0.0.1", s.port)) as sock:
                sock.sendall(first)
                results[name] = _closed_after(sock, drip, every, limit=15)

        cases = {
            "idle": (b"", 0.2, b""),
            "head drip": (head, 0.25, b""),
            "body drip": (b"0" * 300, 0.25, head),
        }
        threads = [threading.Thread(target=run, args=(n, *c)) for n, c in cases.items()]
        for t in threads:
            t.start()
        worst_health = 0.0
        while any(t.is_alive() for t in threads):
            started = time.monotonic()
            assert s.call("GET", "/v2/health/live", timeout=5)[0] == 200
            worst_health = max(worst_health, time.monotonic() - started)
            time.sleep(0.1)
        assert worst_health < 0.5
        assert 0.9 < results["idle"][0] < 3 and results["idle"][1] == b""
        assert 0.9 < results["head drip"][0] < 3 and results["head drip"][1] == b""
        took, answer = results["body drip"]
        assert 1.9 < took < 4 and answer.startswith(b"HTTP/1.1 408"), answer
        assert b"BODY_TIMEOUT" in answer

        # A well-behaved client keeping its connection alive between calls is not cut off.
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        for _ in range(3):
            conn.request("GET", "/v2/health/ready")
            assert conn.getresponse().read() and True
            time.sleep(1.2)  # over HEADER_TIMEOUT, under KEEPALIVE_TIMEOUT
        conn.close()
        metrics = s.call("GET", "/metrics")[1]
        assert 'status="499"' in metrics and 'status="500"' not in metrics

        # Shutdown is not held up by connections dripping their headers.
        socks = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(5)]
        for sock in socks:
            sock.sendall(head[:10])
        started = time.monotonic()
        s.stop()
        assert time.monotonic() - started < 5
        for sock in socks:
            sock.close()
    finally:
        if s.proc.poll() is None:
            s.stop()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_the_decoding_process_ends_with_the_server(exported, how):
    """Large bodies are decoded in a separate process (off the server's GIL); it must not
    outlive the server, whether stopped or killed (no orphan holding memory and the port's
    stdout)."""
    import psutil

    s = Server(exported[0], DECODE_PROCESS_ABOVE="1024")
    try:
        children = psutil.Process(s.proc.pid).children(recursive=True)
        assert children, "no decoding process started"
        big = {"instances": np.zeros((64, 1, 8, 8)).tolist()}  # over 1 KiB: decoded there
        status, answer = s.call("POST", "/v1/models/digits-cnn:predict", big)
        assert status == 200 and np.asarray(answer["predictions"]).shape == (64, 10)
        too_big = {"instances": np.zeros((65, 1, 8, 8)).tolist()}  # its 413 crosses processes
        assert s.call("POST", "/v1/models/digits-cnn:predict", too_big)[0] == 413
    finally:
        s.proc.send_signal(how)
        s.proc.wait(timeout=30)
    gone_by = time.monotonic() + 3
    alive = children
    while alive and time.monotonic() < gone_by:
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    assert not alive, f"left behind: {[c.cmdline()[:3] for c in alive]}"
    if s.proc.stdout:
        s.proc.stdout.close()


def test_a_killed_decoding_process_is_replaced(exported):
    """The OOM killer takes the decoding process: the next large request is told to retry (503)
    and the one after is served, instead of every large request failing from then on."""
    import psutil

    s = Server(exported[0], DECODE_PROCESS_ABOVE="1024")
    try:
        decoder = next(
            c
            for c in psutil.Process(s.proc.pid).children(recursive=True)
            if "resource_tracker" not in " ".join(c.cmdline())
        )
        decoder.kill()
        decoder.wait(5)
        big = {"instances": np.zeros((8, 1, 8, 8)).tolist()}
        status, answer = s.call("POST", "/v1/models/digits-cnn:predict", big)
        assert status == 503 and "retry" in answer["error"]
        status, answer = s.call("POST", "/v1/models/digits-cnn:predict", big)
        assert status == 200 and np.asarray(answer["predictions"]).shape == (8, 10)
    finally:
        s.stop()


def _conv_with_dynamic_size(path: Path) -> Path:
    """A 9x9 convolution over an image of dynamic height and width: the synthetic sample
    request's guess (8x8) is smaller than its kernel, as a detector's multiple-of-32 rule is."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 1, 9, 9), np.float32) / 81, "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_dynamic_sizes_the_model_refuses_are_named_with_the_fix(tmp_path):
    model = _conv_with_dynamic_size(tmp_path / "dyn.onnx")
    opts = {"model": {"path": str(model)}, "build": False}
    with pytest.raises(ExportError) as info:
        export_docker(DockerExportOptions(output=str(tmp_path / "a"), **opts))
    message = str(info.value)
    assert "refused the synthetic sample request" in message
    assert "height, width were guessed as 8" in message
    assert "--dim-values height=N,width=N" in message and "--sample-inputs" in message
    assert not (tmp_path / "a").exists()
    # Either fix works: sizes for the named dimensions, or a real sample.
    result = export_docker(
        DockerExportOptions(
            output=str(tmp_path / "b"), dim_values={"height": 32, "width": 20}, **opts
        )
    )
    assert result["smoke_test"]["passed"]
    request = json.loads((tmp_path / "b" / "sample_request.json").read_text())
    assert request["inputs"][0]["shape"] == [1, 1, 32, 20]
    # The server warms up on that sample; without it (an older context), zeros with unknown
    # sizes as 1 are refused: it still starts, says why, and serves.
    assert (model_folder(tmp_path / "b") / "1" / "warmup.npz").exists()
    (model_folder(tmp_path / "b") / "1" / "warmup.npz").unlink()
    server = Server(tmp_path / "b")
    try:
        status, answer = server.call("POST", "/v2/models/dyn/infer", request)
        assert status == 200 and answer["outputs"][0]["shape"] == [1, 2, 24, 12]
    finally:
        server.stop()
    assert "warm-up skipped" in server.proc.stdout.read()
    np.save(tmp_path / "one.npy", np.full((1, 1, 12, 12), 2.0, np.float32))
    result = export_docker(
        DockerExportOptions(
            output=str(tmp_path / "c"), sample_inputs=str(tmp_path / "one.npy"), **opts
        )
    )
    response = json.loads((tmp_path / "c" / "sample_response.json").read_text())
    assert response["outputs"][0]["shape"] == [1, 2, 4, 4]
    assert np.allclose(response["outputs"][0]["data"], 2.0, atol=1e-5)  # the mean of 2s


def test_cli_takes_dim_values(tmp_path):
    from workflows.cli.flags import int_dict

    assert int_dict("height=320, width=160") == {"height": 320, "width": 160}
    import argparse

    for bad in ("height", "height=x", "=3", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            int_dict(bad)


def _metric(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[-1])


def test_dynamic_batching_gives_64_concurrent_clients_exactly_their_rows(exported, sample_dir):
    """The sample has a dynamic batch, so the server batches by default. 64 clients at once,
    each with 1-4 rows of its own: every answer equals ONNX Runtime's for those rows alone, and
    the server ran fewer model calls than it got requests."""
    folder = exported[0]
    x = np.load(sample_dir / "digits_test.npz")["x"]
    rng = np.random.default_rng(0)
    sizes = [int(rng.integers(1, 5)) for _ in range(64)]
    starts = np.cumsum([0, *sizes[:-1]]) % (len(x) - 4)
    s = Server(folder, BATCH_MAX_DELAY_MS="5")
    try:
        status, text = s.call("GET", "/metrics")
        assert _metric(text, "dockyard_dynamic_batching") == 1.0

        def one(i: int) -> tuple[int, np.ndarray, np.ndarray]:
            rows = x[starts[i] : starts[i] + sizes[i]]
            body = {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP32",
                                "data": rows.ravel().tolist()}]}  # fmt: skip
            status, answer = s.call("POST", "/v2/models/digits-cnn/infer", body)
            out = answer["outputs"][0] if status == 200 else {"data": [], "shape": [0]}
            return status, rows, np.asarray(out["data"], np.float32).reshape(out["shape"])

        with ThreadPoolExecutor(max_workers=64) as pool:
            answers = list(pool.map(one, range(64)))
        for status, rows, got in answers:
            assert status == 200
            np.testing.assert_allclose(got, _reference(folder, rows), atol=1e-5)
        _, text = s.call("GET", "/metrics")
        runs = _metric(text, "dockyard_batch_requests_count")
        requests = _metric(text, "dockyard_batch_requests_sum")
        assert requests >= 64 and runs < requests, (runs, requests)  # requests were joined
        assert _metric(text, "dockyard_batch_rows_sum") >= sum(sizes)
    finally:
        s.stop()
    off = Server(folder, BATCHING="0")  # switched off at run time
    try:
        _, text = off.call("GET", "/metrics")
        assert _metric(text, "dockyard_dynamic_batching") == 0.0
    finally:
        off.stop()


def test_an_export_without_batching_serves_without_it(exported, tmp_path):
    out = tmp_path / "unbatched"
    export_docker(DockerExportOptions(model={"path": str(model_folder(exported[0]) / "1" / "model.onnx")},
                                      output=str(out), batching=False, build=False))  # fmt: skip
    assert json.loads((model_folder(out) / "1" / "config.json").read_text())["batching"] is False
    s = Server(out)
    try:
        _, text = s.call("GET", "/metrics")
        assert _metric(text, "dockyard_dynamic_batching") == 0.0
    finally:
        s.stop()


def _binary_call(server: Server, header: dict, tail: bytes, length: int | None = None):
    head = json.dumps(header).encode()
    req = urllib.request.Request(
        server.base + "/v2/models/digits-cnn/infer",
        data=head + tail,
        method="POST",
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(head) if length is None else length),
            **AUTH,
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_binary_tensors_give_the_json_answer(server, exported, sample_dir):
    """Triton's binary tensor data extension, both ways: raw FP32 in, raw FP32 out, the same
    numbers as the JSON request; mistakes in the framing are 400s that say what is wrong."""
    x = np.load(sample_dir / "digits_test.npz")["x"][:3]
    json_body = {"inputs": [{"name": "x", "shape": [3, 1, 8, 8], "datatype": "FP32",
                             "data": x.ravel().tolist()}]}  # fmt: skip
    status, answer = server.call("POST", "/v2/models/digits-cnn/infer", json_body, headers=AUTH)
    assert status == 200
    want = np.asarray(answer["outputs"][0]["data"], np.float32).reshape(3, 10)
    raw = x.astype("<f4").tobytes()
    header = {
        "inputs": [{"name": "x", "shape": [3, 1, 8, 8], "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": answer["outputs"][0]["name"], "parameters": {"binary_data": True}}],
    }  # fmt: skip
    status, headers, body = _binary_call(server, header, raw)
    assert status == 200, body[:300]
    length = int(headers["Inference-Header-Content-Length"])
    meta = json.loads(body[:length])
    out = meta["outputs"][0]
    assert out["parameters"]["binary_data_size"] == 3 * 10 * 4 and "data" not in out
    got = np.frombuffer(body[length:], "<f4").reshape(out["shape"])
    np.testing.assert_array_equal(got, want)  # the very same floats as the JSON answer
    np.testing.assert_allclose(got, _reference(exported[0], x), atol=1e-5)

    header.pop("outputs")  # binary in, JSON out
    status, headers, body = _binary_call(server, header, raw)
    assert status == 200 and "Inference-Header-Content-Length" not in headers
    np.testing.assert_array_equal(
        np.float32(json.loads(body)["outputs"][0]["data"]), want.ravel()
    )  # the same float32 values (orjson writes each as its shortest float32 text)

    short = json.loads(json.dumps(header))
    short["inputs"][0]["parameters"]["binary_data_size"] = len(raw) - 4
    for head, tail, length, message in (
        (header, raw[:-4], None, "does not fit the 764 bytes of binary data left"),
        (short, raw[:-4], None, "needs 768 bytes but binary_data_size is 764"),
        (header, raw + b"\0" * 8, None, "8 bytes of binary data are not claimed"),
        (header, raw, 10**6, "Inference-Header-Content-Length is 1000000"),
    ):
        status, _, body = _binary_call(server, head, tail, length)
        assert status == 400 and message in json.loads(body)["error"], body[:300]


def test_image_requests_give_the_answer_of_dockyards_preprocessing(tmp_path, sample_dir, server):
    """`Content-Type: image/*` bodies, preprocessed with the recipe saved at export: the same
    outputs as the tensor Dockyard's own preprocessing makes of that image (asserted)."""
    from PIL import Image

    from workflows.data import Preprocess, decode_image

    recipe = {"channels": "L", "size": [8, 8], "scale": 1 / 16, "mean": [0.0], "std": [1.0]}
    out = tmp_path / "images"
    result = export_docker(
        DockerExportOptions(
            model={"path": str(sample_dir / "digits_cnn.pt2")},
            output=str(out),
            preprocess=recipe,
        )
    )
    assert result["smoke_test"]["protocols"][-1] == "image"
    assert "pillow==" in (out / "requirements.txt").read_text()
    assert json.loads((model_folder(out) / "1" / "config.json").read_text())["preprocess"][
        "size"
    ] == [8, 8]
    photo = tmp_path / "digit.jpg"  # another size and format: resized by the server
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)).save(photo, quality=90)

    images = Server(out, MAX_IMAGE_PIXELS=str(40 * 40))
    try:
        for path, kind in ((out / "sample_image.png", "image/png"), (photo, "image/jpeg")):
            pre = Preprocess.coerce(recipe)
            want = _reference(out, pre.apply(decode_image(path, pre)[None]))
            status, body = images.call(
                "POST", "/v2/models/digits-cnn/infer", raw=path.read_bytes(),
                headers={"Content-Type": kind},
            )  # fmt: skip
            assert status == 200, body
            got = np.float32(body["outputs"][0]["data"]).reshape(body["outputs"][0]["shape"])
            assert got.shape == (1, 10)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
            tensor = pre.apply(decode_image(path, pre)[None])  # the same input as JSON
            status, as_json = images.call(
                "POST",
                "/v2/models/digits-cnn/infer",
                {"inputs": [{"name": "x", "shape": list(tensor.shape), "datatype": "FP32",
                             "data": tensor.ravel().tolist()}]},
            )  # fmt: skip
            assert status == 200
            np.testing.assert_array_equal(np.float32(as_json["outputs"][0]["data"]), got.ravel())
        big = tmp_path / "big.png"
        Image.fromarray(np.zeros((41, 41), np.uint8)).save(big)
        status, body = images.call(
            "POST", "/v2/models/digits-cnn/infer", raw=big.read_bytes(),
            headers={"Content-Type": "image/png"},
        )  # fmt: skip
        assert status == 413 and "41x41" in body["error"] and "MAX_IMAGE_PIXELS" in body["error"]
        status, body = images.call(
            "POST", "/v2/models/digits-cnn/infer", raw=b"not an image at all",
            headers={"Content-Type": "image/png"},
        )  # fmt: skip
        assert status == 400 and "not an image" in body["error"]
    finally:
        images.stop()
    # An export without a recipe takes tensors only, and says so.
    status, body = server.call(
        "POST", "/v2/models/digits-cnn/infer", raw=photo.read_bytes(),
        headers={"Content-Type": "image/jpeg", **AUTH},
    )  # fmt: skip
    assert status == 415 and "--images" in body["error"]
