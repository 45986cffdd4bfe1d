"""Keras and SavedModel -> ONNX with tf2onnx, TFLite -> ONNX with tf2onnx's tflite reader."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from workflows.errors import ConversionError
from workflows.formats import _tf, savedmodel
from workflows.model import Model
from workflows.progress import Progress


def _tensor_specs(model: Model) -> list[Any]:
    import tensorflow as tf

    return [
        tf.TensorSpec(
            [d if isinstance(d, int) else None for d in (s.shape or ())], s.dtype, name=s.name
        )
        for s in model.inputs
    ]


@contextlib.contextmanager
def _converter_errors(model: Model, tool: str):
    try:
        # tf2onnx prints its progress to stdout; keep that off our stdout (it may carry --json).
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    except ConversionError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(
            f"{model.path}: {tool} could not convert the model: {first}. Try another --opset; "
            "unsupported TensorFlow ops are named above."
        ) from exc


def to_onnx(model: Model, out: Path, opset: int, progress: Progress) -> None:
    """Convert a Keras, SavedModel or TFLite model to ONNX at `out`."""
    _tf.quiet_tensorflow()
    import tf2onnx

    progress.update(0.1, f"Converting {model.format} with tf2onnx")
    if model.format == "tflite":
        with _converter_errors(model, "tf2onnx (tflite)"):
            tf2onnx.convert.from_tflite(str(model.path), opset=opset, output_path=str(out))
        return
    import tensorflow as tf

    with _converter_errors(model, "tf2onnx"):
        if model.format == "keras":
            keras_model = model.native

            @tf.function(input_signature=_tensor_specs(model))
            def serve(*args):
                return keras_model(list(args) if len(args) > 1 else args[0], training=False)

            tf2onnx.convert.from_function(
                serve, input_signature=_tensor_specs(model), opset=opset, output_path=str(out)
            )
        else:
            fn = savedmodel.signature(model.native, model.path, model.metadata.get("signature"))
            specs = _tensor_specs(model)
            order = [s.name for s in model.outputs]

            @tf.function(input_signature=specs)
            def serve(*args):
                result = fn(**{s.name: a for s, a in zip(specs, args, strict=True)})
                return [result[k] for k in order]

            tf2onnx.convert.from_function(
                serve, input_signature=specs, opset=opset, output_path=str(out)
            )
    progress.update(0.9, "Converted")
