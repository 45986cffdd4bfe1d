"""TorchServe target: a .mar built with torch-model-archiver (TorchScript, eager module + state_dict,
torch.export program, or ONNX), a generated handler, config.properties and a README. The exporter
serves the archive with a real TorchServe on loopback and compares its answer with the original."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from workflows import __version__, formats
from workflows.data import Preprocess, read_labels
from workflows.errors import ExportError
from workflows.exporters.base import Exporter
from workflows.exporters.common import (
    CONVERTED_HELP,
    DIM_VALUES_HELP,
    SAMPLE_INPUTS_HELP,
    SOURCE_HELP,
    free_port,
    run_sample,
    tool_versions,
)
from workflows.formats.onnx_format import copy_onnx
from workflows.frozen import is_frozen, python_command, python_shim
from workflows.model import Model
from workflows.options import LoadOptions, Options, from_dict, option, to_dict
from workflows.progress import Progress
from workflows.resources import resource

TOLERANCE = 1e-4
KINDS = {
    "torchscript": "torchscript",
    "pytorch_eager": "eager",
    "exported_program": "exported_program",
    "onnx": "onnx",
}


@dataclass
class TorchServeExportOptions(Options):
    """Options of the TorchServe target."""

    model: LoadOptions = option(None, "The model to archive (non-PyTorch formats go in as ONNX)")
    output: str = option("", "The folder to write (model-store/, config.properties, README)")
    name: str | None = option(None, "Model name in TorchServe's URLs (default: the file name)")
    version: str = option("1.0", "Model version in the archive")
    labels: str | None = option(None, "Label names file, one per line (adds index_to_name.json)")
    preprocess: Preprocess | None = option(
        None, "Image preprocessing: lets the model take raw images"
    )
    top_k: int = option(5, "Classes in each answer when labels are given")
    opset: int = option(18, "ONNX opset when the model must be converted")
    converted: str | None = option(None, CONVERTED_HELP)
    source: str = option("original", SOURCE_HELP)
    sample_inputs: str | None = option(None, SAMPLE_INPUTS_HELP)
    dim_values: dict[str, int] = option({}, DIM_VALUES_HELP)
    smoke_test: bool = option(True, "Serve the archive with TorchServe and check its answer")


def _bin(name: str) -> str | None:
    return shutil.which(
        name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )


def _java() -> str | None:
    """The java TorchServe's launcher will start: JAVA_HOME's, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        found = shutil.which("java", path=str(Path(home) / "bin"))
        if found:
            return found
    return shutil.which("java")


def _torchserve_command(folder: Path) -> tuple[list[str], dict[str, str]]:
    """How TorchServe is started here, and what its environment needs.

    A developer install has its `torchserve` script. The installed app has no console scripts
    and no PyTorch of its own: TorchServe's launcher runs in the bundle's Python mode with the
    prepared PyTorch framework (which carries torchserve) on PYTHONPATH, and the launcher tells
    the frontend to start each worker with `sys.executable`, set here to a shim in `folder`
    that re-enters the Python mode (workflows.frozen.python_shim)."""
    java = _java()
    if java is None:
        raise ExportError(
            "The TorchServe export's smoke test serves the archive with TorchServe, which needs "
            "Java 17 or later: install a JDK (e.g. Eclipse Temurin 17) and put `java` on PATH "
            "or set JAVA_HOME, or export without the smoke test (--no-smoke-test)."
        )
    # TorchServe's launcher starts JAVA_HOME's java when JAVA_HOME is set: make it the one found
    # (a stale JAVA_HOME beside a working java on PATH would otherwise fail at start-up).
    java_home = {"JAVA_HOME": str(Path(java).resolve().parents[1])}
    if not is_frozen():
        exe = _bin("torchserve")
        if exe is None:
            raise ExportError(
                "The TorchServe smoke test needs `torchserve` (pip install torchserve)"
            )
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        return [exe], {"PATH": path, **java_home}
    from workflows import frameworks

    if not frameworks.available("torch"):
        raise frameworks.framework_missing("torch")
    found = [*frameworks.configured_paths(), frameworks.prepared("torch")]
    shim = python_shim(folder)
    launcher = (
        f"import sys; sys.executable = {str(shim)!r}; "
        "from ts.model_server import start; sys.argv[0] = 'torchserve'; start()"
    )
    return [*python_command(), "-c", launcher], {
        "PYTHONPATH": os.pathsep.join(str(p) for p in found if p),
        **java_home,
    }


def _stage_pytorch(model: Model, stage: Path) -> dict[str, Any] | None:
    """Put a PyTorch model into `stage` as TorchServe takes it; None for other formats."""
    if model.format == "torchscript":
        shutil.copyfile(model.path, stage / "model.pt")
        return {"kind": "torchscript", "serialized_file": "model.pt"}
    if model.format == "exported_program":
        shutil.copyfile(model.path, stage / "model.pt2")
        return {"kind": "exported_program", "serialized_file": "model.pt2"}
    if model.format == "pytorch_eager":
        import torch

        # TorchServe's convention: --model-file + a torch.save'd state_dict (safetensors re-saved).
        torch.save(model.native.state_dict(), stage / "model.pt")
        shutil.copyfile(model.metadata["model_file"], stage / "model.py")
        return {
            "kind": "eager",
            "serialized_file": "model.pt",
            "model_file": "model.py",
            "model_class": model.metadata["model_class"],
        }
    return None


def _post(url: str, body: bytes, content_type: str, timeout: float = 30) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


class TorchServe:
    """A real TorchServe on loopback ports, in its own folder and process group."""

    def __init__(self, model_store: Path, models: dict[str, str], workdir: Path) -> None:
        # TorchServe keeps its PID file in the temp folder and refuses to start while it names a
        # live process, so each instance gets a private TMPDIR. It must be short: the workers'
        # Unix sockets live there and socket paths are limited to 108 bytes, which a deep output
        # folder exceeds (the worker then never starts).
        tmp = Path(tempfile.mkdtemp(prefix="dy-ts-"))
        self.tmp = tmp
        try:
            command, env = _torchserve_command(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.port = free_port()
        ports = [self.port, *(free_port() for _ in range(4))]
        config = workdir / "smoke.properties"
        # Every port its own, gRPC's too: TorchServe's default gRPC ports (7070, 7071) are taken
        # whenever another TorchServe runs on the machine, and it then exits at start-up.
        config.write_text(
            f"inference_address=http://127.0.0.1:{ports[0]}\n"
            f"management_address=http://127.0.0.1:{ports[1]}\n"
            f"metrics_address=http://127.0.0.1:{ports[2]}\n"
            f"grpc_inference_address=127.0.0.1\ngrpc_management_address=127.0.0.1\n"
            f"grpc_inference_port={ports[3]}\ngrpc_management_port={ports[4]}\n"
            "default_workers_per_model=1\ndisable_token_authorization=true\n"
        )
        args = [
            *command,
            "--start",
            "--ncs",
            "--foreground",
            "--model-store",
            str(model_store),
            "--ts-config",
            str(config),
            "--models",
            *[f"{k}={v}" for k, v in models.items()],
        ]
        env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp), **env}
        self.log = open(workdir / "torchserve.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args,
            cwd=workdir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # Not a session of its own: TorchServe stays in the step's process group, so the
            # group kill that ends a cancelled or orphaned step (or one whose process died)
            # takes its JVM and workers along. stop() ends it by its process tree instead.
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir

    def wait_ready(self, name: str, body: bytes, timeout: float = 120) -> tuple[int, Any]:
        """Send `body` until the model answers (workers start lazily); the first real answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ExportError(
                    "TorchServe exited: " + (self.workdir / "torchserve.log").read_text()[-2000:]
                )
            try:
                status, answer = _post(
                    f"{self.base}/predictions/{name}", body, "application/json", 10
                )
                if status != 503 and status != 404:
                    return status, answer
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        raise ExportError(f"TorchServe did not serve {name} within {timeout:.0f} s")

    def stop(self) -> None:
        """End TorchServe: its launcher, the JVM and the JVM's model workers, killed at once.

        This instance only answered one smoke request and keeps nothing worth a clean
        shutdown (its logs and PID file are in folders removed next); a polite SIGTERM made
        the JVM take 4.3 s to go, half the export's time for the sample."""
        import psutil

        try:
            tree = [psutil.Process(self.proc.pid)]
            tree += tree[0].children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        # SIGKILL cannot be refused; the kernel's teardown of the JVM (~2 s) need not be waited
        # for. Our own child is reaped below (no zombie).
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _as_answer(outputs: list[np.ndarray]) -> Any:
    """The handler's "outputs": the one output's rows, or a list with one entry per output."""
    return outputs[0].tolist() if len(outputs) == 1 else [o.tolist() for o in outputs]


class TorchServeExporter(Exporter):
    """A .mar built by torch-model-archiver with a generated handler, config.properties, README."""

    target = "torchserve"

    def stage(self) -> None:
        opts, out, work = self.opts, self.out, self.work
        stage = work / "stage"
        stage.mkdir()
        self.labels = read_labels(Path(opts.labels)) if opts.labels else None
        self.handler = _stage_pytorch(self.model, stage)
        extra: list[Path] = []
        if self.handler is None:  # everything else goes in as ONNX, with its external data
            files = copy_onnx(self.onnx(self.progress.scaled(0.05, 0.3)), stage)
            extra += files[1:]
            self.handler = {"kind": "onnx", "serialized_file": "model.onnx"}
        from workflows.inputs import concrete_shape

        for s in self.model.inputs:
            concrete_shape(s, 1)  # a clear error now if a shape is unknown
        extra += self._handler_files(stage)
        self.progress.update(0.35, "Archiving with torch-model-archiver")
        (out / "model-store").mkdir()
        self.mar = _archive(
            self.name, opts.version, stage, self.handler, extra, out / "model-store"
        )
        templates = resource("templates", "torchserve")
        shutil.copyfile(templates / "handler.py", out / "handler.py")
        opts = self.opts
        self.feeds, self.expected = run_sample(
            self.model.inputs,
            opts.sample_inputs,
            opts.dim_values,
            self.model.path,
            formats.by_name(self.model.format).session(self.model),
        )
        feeds = self.feeds
        self.request = (
            {"inputs": next(iter(feeds.values())).tolist()}
            if len(feeds) == 1
            else {"inputs": {k: v.tolist() for k, v in feeds.items()}}
        )
        (out / "sample_request.json").write_text(json.dumps(self.request))
        (out / "sample_response.json").write_text(
            json.dumps({"outputs": _as_answer(self.expected)})
        )
        values = self._template_values()
        for fname in ("README.md", "config.properties"):
            (out / fname).write_text(
                string.Template((templates / fname).read_text()).substitute(values)
            )

    def _handler_files(self, stage: Path) -> list[Path]:
        """The handler, its config (inputs, recipe, top-k) and labels, staged for the archive."""
        opts = self.opts
        config = {
            **self.handler,
            "inputs": [
                {
                    "name": s.name,
                    "dtype": s.dtype,
                    "shape": [d if isinstance(d, int) else None for d in s.shape],
                }
                for s in self.model.inputs
            ],
            "preprocess": to_dict(opts.preprocess) if opts.preprocess else None,
            "top_k": opts.top_k,
        }
        (stage / "dockyard_config.json").write_text(json.dumps(config, indent=2))
        files = [stage / "dockyard_config.json"]
        if self.labels:
            (stage / "index_to_name.json").write_text(
                json.dumps({str(i): n for i, n in enumerate(self.labels)})
            )
            files.append(stage / "index_to_name.json")
        if "model_file" in self.handler:
            files.append(stage / "model.py")
        if opts.preprocess:  # image bodies: the Docker export's decoder, one copy for both
            images = resource("templates", "docker") / "server" / "images.py"
            shutil.copyfile(images, stage / "dockyard_images.py")
            files.append(stage / "dockyard_images.py")
        shutil.copyfile(resource("templates", "torchserve") / "handler.py", stage / "handler.py")
        return files

    def _template_values(self) -> dict[str, Any]:
        opts, name = self.opts, self.name
        versions = tool_versions()
        recipe = json.dumps(to_dict(opts.preprocess)) if opts.preprocess else ""
        return {
            "model_name": name,
            "mar_name": self.mar.name,
            "kind": self.handler["kind"],
            "dockyard_version": __version__,
            "created": datetime.now(UTC).strftime("%Y-%m-%d"),
            "archiver_version": versions.get("torch-model-archiver", "?"),
            "torchserve_version": versions.get("torchserve", "?"),
            "inputs_doc": "; ".join(f"`{s.describe()}`" for s in self.model.inputs),
            "image_example": (
                f'curl -s -H "Authorization: Bearer $$KEY" localhost:8080/predictions/{name} '
                "-T picture.png"
            )
            if opts.preprocess
            else "",
            "image_note": (
                " Raw images (`-T picture.png`) are preprocessed as the model was validated: "
                f"{recipe}."
            )
            if opts.preprocess
            else "",
            "top_k_note": (
                f", plus `top_k` (the {opts.top_k} most likely labels with probabilities)."
                if self.labels
                else "."
            ),
        }

    def validate(self) -> dict[str, Any]:
        if not self.opts.smoke_test:
            return {"smoke_test": {"ran": False}}
        self.progress.update(0.5, "Smoke test: serving the archive with TorchServe")
        started = time.perf_counter()
        server = TorchServe(self.out / "model-store", {self.name: self.mar.name}, self.work)
        try:
            status, answer = server.wait_ready(self.name, json.dumps(self.request).encode())
        finally:
            server.stop()
        if status != 200:
            raise ExportError(f"TorchServe answered {status}: {str(answer)[:1000]}")
        expected = self.expected
        answered = answer["outputs"] if len(expected) > 1 else [answer["outputs"]]
        if len(answered) != len(expected):
            raise ExportError(
                f"TorchServe answered {len(answered)} outputs, expected {len(expected)}"
            )
        worst = 0.0
        for i, (rows, want) in enumerate(zip(answered, expected, strict=True)):
            got = np.asarray(rows, dtype=np.float64)
            if got.shape != want.shape:
                raise ExportError(
                    f"TorchServe's output {i} has shape {got.shape}, expected {want.shape}"
                )
            worst = max(worst, float(np.abs(got - want).max()) if got.size else 0.0)
        if worst > TOLERANCE:
            raise ExportError(f"TorchServe's output differs from the original by {worst:.3g}")
        smoke = {
            "ran": True,
            "passed": True,
            "max_abs_error": worst,
            "tolerance": TOLERANCE,
            "seconds": round(time.perf_counter() - started, 1),
        }
        return {"smoke_test": smoke}

    def describe(self, validation: dict[str, Any]) -> tuple[dict | None, dict, dict]:
        sample = {"request": "sample_request.json", "response": "sample_response.json"}
        kind = self.handler["kind"]
        extra = {"archive": f"model-store/{self.mar.name}", "kind": kind}
        result = {
            "archive": str(Path(self.opts.output) / "model-store" / self.mar.name),
            "kind": kind,
            "smoke_test": validation["smoke_test"],
        }
        return sample, extra, result


def _archive(
    name: str, version: str, stage: Path, handler: dict, extra: list[Path], store: Path
) -> Path:
    """Run torch-model-archiver on the staged files; the .mar's path. Its module, run by this
    Python (the installed app has it in the bundle, and no console scripts)."""
    import importlib.util

    if importlib.util.find_spec("model_archiver") is None:
        raise ExportError(
            "torch-model-archiver is not installed (pip install torch-model-archiver)"
        )
    cmd = [
        *python_command(),
        "-m",
        "model_archiver.model_packaging",
        "--model-name",
        name,
        "--version",
        version,
        "--serialized-file",
        str(stage / handler["serialized_file"]),
        "--handler",
        str(stage / "handler.py"),
        "--extra-files",
        ",".join(map(str, extra)),
        "--export-path",
        str(store),
        "--force",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise ExportError(f"torch-model-archiver failed: {r.stderr.strip()[-1500:]}")
    return store / f"{name}.mar"


def export_torchserve(
    opts: TorchServeExportOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Write the archive folder to opts.output; returns what was made and measured."""
    return TorchServeExporter.export(opts, progress)


def run(options: TorchServeExportOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return export_torchserve(from_dict(TorchServeExportOptions, options), progress)
