"""ONNX -> TensorFlow SavedModel with onnx2tf, run from its own isolated environment.

onnx2tf transposes image inputs from NCHW to NHWC (TFLite's native layout); the bundle records the
layout and its validation feeds the original data transposed accordingly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from workflows import toolenv
from workflows.errors import ConversionError
from workflows.formats.onnx_format import copy_onnx
from workflows.progress import Progress, null_progress


class Onnx2TF:
    """onnx2tf running in its own environment's Python, started now and awaited by `finish`
    (the TFLite bundle starts it before loading the original model, which then loads beside it
    on the other core)."""

    def __init__(self, bin_dir: Path, onnx_path: Path, out_dir: Path) -> None:
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONNOUSERSITE": "1",
        }
        env.pop("PYTHONPATH", None)
        python = bin_dir / ("python.exe" if os.name == "nt" else "python")
        # onnx2tf simplifies its input with onnxsim and writes the result back over it: it gets a
        # copy, so the model it was given (a workflow's convert output, read by the other
        # exports, maybe beside this one) stays as it was.
        self._scratch = Path(tempfile.mkdtemp(prefix="dockyard-onnx2tf-"))
        # -osd: write signature defs, so TFLiteConverter.from_saved_model finds serving_default.
        cmd = [str(python), "-m", "onnx2tf", "-i", str(self._scratch / onnx_path.name),
               "-o", str(out_dir), "-osd", "-n"]  # fmt: skip
        self.onnx_path, self.out_dir = onnx_path, out_dir
        try:
            copy_onnx(onnx_path, self._scratch, onnx_path.name)
            # In this step's process group: a cancel's group kill ends it too.
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
            )
        except BaseException:  # no copy left behind when it cannot start
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise

    def finish(self, progress: Progress | None = None) -> Path:
        """Wait for the SavedModel; ConversionError with onnx2tf's last lines when it failed."""
        progress = progress or null_progress()
        progress.update(0.65, "Converting ONNX to a TensorFlow SavedModel (onnx2tf)")
        try:
            output, _ = self.proc.communicate(timeout=1800)
        except subprocess.TimeoutExpired:
            self.close()
            raise ConversionError(f"{self.onnx_path}: onnx2tf took more than 30 minutes") from None
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)
        if self.proc.returncode != 0 or not (self.out_dir / "saved_model.pb").exists():
            tail = "\n".join(output.strip().splitlines()[-12:])
            raise ConversionError(f"{self.onnx_path}: onnx2tf could not convert the model:\n{tail}")
        progress.update(1.0, "SavedModel ready")
        return self.out_dir

    def close(self) -> None:
        """Kill it if it still runs (the export failed or finished without it)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        shutil.rmtree(self._scratch, ignore_errors=True)


def onnx_to_savedmodel(onnx_path: Path, out_dir: Path, progress: Progress | None = None) -> Path:
    """Convert `onnx_path` into a SavedModel at `out_dir` (signature serving_default)."""
    progress = progress or null_progress()
    bin_dir = toolenv.ensure(toolenv.ONNX2TF, progress=progress.scaled(0.0, 0.6))
    return Onnx2TF(bin_dir, onnx_path, out_dir).finish(progress)
