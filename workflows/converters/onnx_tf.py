"""ONNX -> TensorFlow SavedModel with onnx2tf, run from its own isolated environment.

onnx2tf transposes image inputs from NCHW to NHWC (TFLite's native layout); the bundle records the
layout and its validation feeds the original data transposed accordingly.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from workflows import toolenv
from workflows.errors import ConversionError
from workflows.progress import Progress, null_progress


def onnx_to_savedmodel(onnx_path: Path, out_dir: Path, progress: Progress | None = None) -> Path:
    """Convert `onnx_path` into a SavedModel at `out_dir` (signature serving_default)."""
    progress = progress or null_progress()
    bin_dir = toolenv.ensure(toolenv.ONNX2TF, progress=progress.scaled(0.0, 0.6))
    progress.update(0.65, "Converting ONNX to a TensorFlow SavedModel (onnx2tf)")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONNOUSERSITE": "1",
    }
    env.pop("PYTHONPATH", None)
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    # -osd: write signature defs, so TFLiteConverter.from_saved_model finds serving_default.
    cmd = [str(python), "-m", "onnx2tf", "-i", str(onnx_path), "-o", str(out_dir), "-osd", "-n"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0 or not (out_dir / "saved_model.pb").exists():
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-12:])
        raise ConversionError(f"{onnx_path}: onnx2tf could not convert the model:\n{tail}")
    progress.update(1.0, "SavedModel ready")
    return out_dir
