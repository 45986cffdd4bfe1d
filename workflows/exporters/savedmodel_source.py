"""The source model as a TensorFlow SavedModel, for the targets that need one (TFLite bundle,
TF Serving): a SavedModel as it is, a Keras model exported, an ONNX model (or a PyTorch one, via
ONNX) converted by onnx2tf in its own environment — started early when it can be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows import formats
from workflows.exporters.base import Exporter
from workflows.progress import Progress

ONNX2TF_STEP = {"step": "onnx2tf", "version": "1.29.24", "format": "savedmodel"}


def start_onnx2tf(opts: Any, work: Path, variants: tuple[str, ...] = ()) -> Any:
    """onnx2tf (then the TFLite `variants`), when the ONNX to convert is on disk already (an ONNX
    source, or the workflow's convert output) and its environment is built: it then runs beside
    the original model's loading instead of after. None: not started."""
    from workflows import toolenv
    from workflows.converters.onnx_tf import Onnx2TF

    onnx_path = None
    if opts.converted and Path(opts.converted).is_file():
        onnx_path = Path(opts.converted)
    else:
        try:
            if formats.detect(Path(opts.model.path)).NAME == "onnx":
                onnx_path = Path(opts.model.path)
        except Exception:  # the load reports a bad file, with its reason
            return None
    bin_dir = toolenv.ready(toolenv.ONNX2TF)
    if onnx_path is None or bin_dir is None:
        return None
    return Onnx2TF(bin_dir, onnx_path, work / "onnx2tf_savedmodel", variants)


def source_savedmodel(exporter: Exporter, progress: Progress) -> Path:
    """`exporter`'s source as a SavedModel (in its scratch folder unless it is one); the steps
    taken are added to `exporter.steps`."""
    model = exporter.model
    if model.format == "savedmodel":
        return model.path
    if model.format == "keras":
        out = exporter.work / "keras_savedmodel"
        model.native.export(str(out), verbose=False)
        exporter.steps.append({"step": "keras.Model.export", "format": "savedmodel"})
        return out
    from workflows.converters.onnx_tf import onnx_to_savedmodel

    onnx_path = exporter.onnx(progress.scaled(0.0, 0.2))
    early = exporter.early
    if early is not None and early.onnx_path.resolve() == Path(onnx_path).resolve():
        out = early.finish(progress.scaled(0.2, 1.0))
    else:
        out = onnx_to_savedmodel(
            onnx_path, exporter.work / "onnx2tf_savedmodel", progress.scaled(0.2, 1.0)
        )
    exporter.steps.append(dict(ONNX2TF_STEP))
    return out
