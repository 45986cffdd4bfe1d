"""Convert a model to ONNX, check it and write it atomically."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.atomic import atomic_file, scratch_dir
from workflows.errors import ConversionError, MissingInputError
from workflows.model import Model
from workflows.options import LoadOptions, Options, from_dict, option
from workflows.progress import Progress, null_progress

DEFAULT_OPSET = 18


@dataclass
class ConvertOptions(Options):
    """Options of the convert step."""

    model: LoadOptions = option(None, "The model to convert")
    output: str = option("", "Where to write the .onnx file")
    target: str = option("onnx", "Target format (onnx)")
    opset: int = option(DEFAULT_OPSET, "ONNX opset to export to")
    simplify: bool = option(True, "Simplify the graph with onnxslim (constant folding, fusion)")


def _converter(model: Model):
    if model.framework == "pytorch":
        from workflows.converters import torch_onnx

        return torch_onnx.to_onnx
    if model.format in ("keras", "savedmodel", "tflite"):
        from workflows.converters import tf_onnx

        return tf_onnx.to_onnx
    if model.format == "sklearn":
        from workflows.converters import sklearn_onnx

        return sklearn_onnx.to_onnx
    raise ConversionError(f"{model.path}: no converter from {model.format} to ONNX")


def convert_model(
    model: Model,
    output: Path,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Convert a loaded model to ONNX at `output` (atomically); returns figures for the report."""
    progress = progress or null_progress()
    output = Path(output)
    if model.format == "onnx":
        raise ConversionError(f"{model.path}: already ONNX; nothing to convert")
    started = time.perf_counter()
    with scratch_dir(output) as workdir:
        raw = workdir / "raw.onnx"
        _converter(model)(model, raw, opset, progress.scaled(0.0, 0.7))
        if not raw.exists():
            raise ConversionError(f"{model.path}: the converter wrote no model")
        from workflows.converters.onnx_finalize import finalize

        with atomic_file(output) as tmp:
            dynamic = all(s.is_dynamic(0) for s in model.inputs)
            facts = finalize(raw, tmp, simplify, progress.scaled(0.7, 1.0), dynamic)
    progress.update(1.0, f"Wrote {output}")
    return {
        "source": model.summary(),
        "output": str(output),
        "size_bytes": output.stat().st_size,
        "seconds": round(time.perf_counter() - started, 3),
        **facts,
    }


def run(options: ConvertOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point: load the model the options name, then convert it."""
    opts = from_dict(ConvertOptions, options)
    if opts.target != "onnx":
        raise MissingInputError(f"convert: target {opts.target!r} is not supported yet (use onnx)")
    if not opts.output:
        raise MissingInputError("convert: give an output path (-o model.onnx)")
    progress.update(0.02, f"Loading {opts.model.path}")
    model = opts.model.load()
    return convert_model(
        model, Path(opts.output), opts.opset, opts.simplify, progress.scaled(0.05, 1.0)
    )
