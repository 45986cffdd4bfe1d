"""TorchServe target: a .mar built with torch-model-archiver (TorchScript, eager module + state_dict,
torch.export program, or ONNX), a generated handler, config.properties and a README. The exporter
serves the archive with a real TorchServe on loopback and compares its answer with the original."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
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
from workflows.atomic import atomic_dir, scratch_dir
from workflows.data import Preprocess, read_labels
from workflows.errors import ExportError
from workflows.exporters.common import export_step, free_port, tool_versions, write_manifest
from workflows.exporters.docker import safe_name
from workflows.inputs import synthesize
from workflows.model import Model
from workflows.options import LoadOptions, Options, from_dict, option, to_dict
from workflows.progress import Progress, null_progress
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
    smoke_test: bool = option(True, "Serve the archive with TorchServe and check its answer")


def _bin(name: str) -> str | None:
    return shutil.which(
        name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )


def _stage(
    model: Model, stage: Path, work: Path, opset: int, progress: Progress
) -> tuple[dict, list]:
    """Put the serialized model (and model file) into `stage`; returns the handler config part."""
    steps: list[dict[str, Any]] = []
    if model.format == "torchscript":
        shutil.copyfile(model.path, stage / "model.pt")
        return {"kind": "torchscript", "serialized_file": "model.pt"}, steps
    if model.format == "exported_program":
        shutil.copyfile(model.path, stage / "model.pt2")
        return {"kind": "exported_program", "serialized_file": "model.pt2"}, steps
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
        }, steps
    onnx_path = model.path
    if model.format != "onnx":
        from workflows.steps.convert import convert_model

        onnx_path = work / "model.onnx"
        facts = convert_model(model, onnx_path, opset=opset, progress=progress)
        steps.append(
            {"step": "convert", "target": "onnx", "opset": opset, "nodes": facts["nodes_after"]}
        )
    shutil.copyfile(onnx_path, stage / "model.onnx")
    return {"kind": "onnx", "serialized_file": "model.onnx"}, steps


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
        exe = _bin("torchserve")
        if exe is None or shutil.which("java") is None:
            raise ExportError("TorchServe smoke test needs `torchserve` and Java 17 on PATH")
        self.port = free_port()
        ports = [self.port, free_port(), free_port()]
        config = workdir / "smoke.properties"
        config.write_text(
            f"inference_address=http://127.0.0.1:{ports[0]}\n"
            f"management_address=http://127.0.0.1:{ports[1]}\n"
            f"metrics_address=http://127.0.0.1:{ports[2]}\n"
            "default_workers_per_model=1\ndisable_token_authorization=true\n"
        )
        args = [
            exe,
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
        # TorchServe keeps its PID file in the temp folder and refuses to start while it names a
        # live process, so each instance gets a private TMPDIR. It must be short: the workers'
        # Unix sockets live there and socket paths are limited to 108 bytes, which a deep output
        # folder exceeds (the worker then never starts).
        tmp = Path(tempfile.mkdtemp(prefix="dy-ts-"))
        self.tmp = tmp
        env = {
            **os.environ,
            "TMPDIR": str(tmp),
            "TEMP": str(tmp),
            "TMP": str(tmp),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        self.log = open(workdir / "torchserve.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args,
            cwd=workdir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _reference(model: Model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return formats.by_name(model.format).session(model)(feeds)[0]


def export_torchserve(
    opts: TorchServeExportOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Write the archive folder to opts.output; returns what was made and measured."""
    progress = progress or null_progress()
    if not opts.output:
        raise ExportError("export torchserve: give an output folder (-o DIR)")
    out_path = Path(opts.output)
    progress.update(0.02, f"Loading {opts.model.path}")
    model = opts.model.load()
    name = safe_name(opts.name or model.name)
    labels = read_labels(Path(opts.labels)) if opts.labels else None
    templates = resource("templates", "torchserve")
    with scratch_dir(out_path) as work, atomic_dir(out_path) as out:
        stage = work / "stage"
        stage.mkdir()
        handler_cfg, steps = _stage(model, stage, work, opts.opset, progress.scaled(0.05, 0.3))
        specs = model.inputs
        from workflows.inputs import concrete_shape

        for s in specs:
            concrete_shape(s, 1)  # a clear error now if a shape is unknown
        config = {
            **handler_cfg,
            "inputs": [
                {
                    "name": s.name,
                    "dtype": s.dtype,
                    "shape": [d if isinstance(d, int) else None for d in s.shape],
                }
                for s in specs
            ],
            "preprocess": to_dict(opts.preprocess) if opts.preprocess else None,
            "top_k": opts.top_k,
        }
        (stage / "dockyard_config.json").write_text(json.dumps(config, indent=2))
        extra = [stage / "dockyard_config.json"]
        if labels:
            (stage / "index_to_name.json").write_text(
                json.dumps({str(i): n for i, n in enumerate(labels)})
            )
            extra.append(stage / "index_to_name.json")
        if "model_file" in handler_cfg:
            extra.append(stage / "model.py")
        shutil.copyfile(templates / "handler.py", stage / "handler.py")
        progress.update(0.35, "Archiving with torch-model-archiver")
        store = out / "model-store"
        store.mkdir()
        archiver = _bin("torch-model-archiver")
        if archiver is None:
            raise ExportError(
                "torch-model-archiver is not installed (pip install torch-model-archiver)"
            )
        cmd = [
            archiver,
            "--model-name",
            name,
            "--version",
            opts.version,
            "--serialized-file",
            str(stage / handler_cfg["serialized_file"]),
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
        mar = store / f"{name}.mar"
        shutil.copyfile(templates / "handler.py", out / "handler.py")

        feeds = synthesize(specs, batch=1, seed=0)
        expected = _reference(model, feeds)
        request = (
            {"inputs": next(iter(feeds.values())).tolist()}
            if len(feeds) == 1
            else {"inputs": {k: v.tolist() for k, v in feeds.items()}}
        )
        (out / "sample_request.json").write_text(json.dumps(request))
        (out / "sample_response.json").write_text(json.dumps({"outputs": expected.tolist()}))

        versions = tool_versions()
        values = {
            "model_name": name,
            "mar_name": mar.name,
            "kind": config["kind"],
            "dockyard_version": __version__,
            "created": datetime.now(UTC).strftime("%Y-%m-%d"),
            "archiver_version": versions.get("torch-model-archiver", "?"),
            "torchserve_version": versions.get("torchserve", "?"),
            "inputs_doc": "; ".join(f"`{s.describe()}`" for s in specs),
            "image_example": (
                f'curl -s -H "Authorization: Bearer $$KEY" localhost:8080/predictions/{name} '
                "-T picture.png"
            )
            if opts.preprocess
            else "",
            "image_note": (
                " Raw images (`-T picture.png`) are preprocessed as the model was validated: "
                f"{json.dumps(to_dict(opts.preprocess))}."
            )
            if opts.preprocess
            else "",
            "top_k_note": (
                f", plus `top_k` (the {opts.top_k} most likely labels with probabilities)."
                if labels
                else "."
            ),
        }
        for fname in ("README.md", "config.properties"):
            (out / fname).write_text(
                string.Template((templates / fname).read_text()).substitute(values)
            )

        smoke: dict[str, Any] = {"ran": False}
        if opts.smoke_test:
            progress.update(0.5, "Smoke test: serving the archive with TorchServe")
            started = time.perf_counter()
            server = TorchServe(store, {name: mar.name}, work)
            try:
                status, answer = server.wait_ready(name, json.dumps(request).encode())
            finally:
                server.stop()
            if status != 200:
                raise ExportError(f"TorchServe answered {status}: {str(answer)[:1000]}")
            got = np.asarray(answer["outputs"], dtype=np.float64)
            if got.shape != expected.shape:
                raise ExportError(
                    f"TorchServe's output has shape {got.shape}, expected {expected.shape}"
                )
            worst = float(np.abs(got - expected).max())
            if worst > TOLERANCE:
                raise ExportError(f"TorchServe's output differs from the original by {worst:.3g}")
            smoke = {
                "ran": True,
                "passed": True,
                "max_abs_error": worst,
                "tolerance": TOLERANCE,
                "seconds": round(time.perf_counter() - started, 1),
            }
        manifest = write_manifest(
            out,
            target="torchserve",
            source=model.path,
            source_format=model.format,
            steps=[*steps, export_step("torchserve", opts)],
            sample={"request": "sample_request.json", "response": "sample_response.json"},
            validation={"smoke_test": smoke},
            extra={"archive": f"model-store/{mar.name}", "kind": config["kind"]},
        )
    progress.update(1.0, f"Wrote {out_path}")
    return {
        "step": "export",
        "target": "torchserve",
        "output": str(out_path),
        "model_name": name,
        "archive": str(out_path / "model-store" / mar.name),
        "kind": config["kind"],
        "smoke_test": smoke,
        "files": sorted(str(p.relative_to(out_path)) for p in out_path.rglob("*") if p.is_file()),
        "manifest": manifest,
    }


def run(options: TorchServeExportOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return export_torchserve(from_dict(TorchServeExportOptions, options), progress)
