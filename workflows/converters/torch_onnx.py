"""PyTorch -> ONNX: the dynamo exporter for eager modules and torch.export programs, the legacy
TorchScript exporter for ScriptModules (dynamo refuses them)."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

from workflows.errors import ConversionError
from workflows.formats import _torch
from workflows.inputs import concrete_shape
from workflows.model import Model
from workflows.progress import Progress

# An example batch of 2: batch 1 would make the exporter specialise the dimension (docs/dependencies.md).
EXAMPLE_BATCH = 2


def _example_args(model: Model) -> tuple:
    import torch

    _torch.require_shapes(model.inputs, model.path, model.format)
    return tuple(
        torch.zeros(concrete_shape(s, EXAMPLE_BATCH), dtype=getattr(torch, s.dtype))
        for s in model.inputs
    )


def _explain(exc: Exception) -> str:
    """The actionable part of a torch.onnx failure: the unsupported op and where it came from."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    op = re.search(r"(aten::\w+|aten\.\w+(?:\.\w+)?|prim::\w+)", text)
    where = next((ln for ln in lines if re.search(r'File ".*", line \d+', ln)), "")
    parts = [lines[0] if lines else type(exc).__name__]
    if op:
        parts.append(f"operator: {op.group(1)}")
    if where:
        parts.append(f"at {where}")
    parts.append(
        "Try another --opset, rewrite that construct (data-dependent control flow is a common cause), "
        "or export the model with torch.export yourself and load the .pt2."
    )
    return " | ".join(parts)


def to_onnx(model: Model, out: Path, opset: int, progress: Progress) -> None:
    """Export `model` (TorchScript, torch.export or eager) to a single ONNX file at `out`."""
    import torch

    # The exporter logs a warning per missing torchvision op; they mean nothing for our models.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    dynamic = model.metadata.get("dynamic_batch", True)
    progress.update(0.1, "Tracing the model")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if model.format == "torchscript":
                names = [s.name for s in model.inputs]
                sample_out = _torch.flatten_outputs(model.native(*_example_args(model)))
                out_names = (
                    ["output"]
                    if len(sample_out) == 1
                    else [f"output_{i}" for i in range(len(sample_out))]
                )
                axes = {n: {0: "batch"} for n in names + out_names} if dynamic else None
                torch.onnx.export(
                    model.native,
                    _example_args(model),
                    str(out),
                    dynamo=False,
                    opset_version=opset,
                    input_names=names,
                    output_names=out_names,
                    dynamic_axes=axes,
                )
            elif model.format == "exported_program":
                torch.onnx.export(
                    model.native,
                    (),
                    str(out),
                    dynamo=True,
                    opset_version=opset,
                    external_data=False,
                    verbose=False,
                )
            else:
                dims = None
                if dynamic:
                    batch = torch.export.Dim("batch")
                    dims = {s.name: {0: batch} for s in model.inputs}
                torch.onnx.export(
                    model.native,
                    _example_args(model),
                    str(out),
                    dynamo=True,
                    opset_version=opset,
                    input_names=[s.name for s in model.inputs],
                    dynamic_shapes=dims,
                    external_data=False,
                    verbose=False,
                )
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(
            f"{model.path}: PyTorch could not export to ONNX: {_explain(exc)}"
        ) from exc
    progress.update(0.9, "Exported")
