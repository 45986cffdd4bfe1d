"""Keras and SavedModel -> ONNX with tf2onnx, TFLite -> ONNX with tf2onnx's tflite reader."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from workflows.errors import ConversionError, first_line
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
        raise ConversionError(
            f"{model.path}: {tool} could not convert the model: {first_line(exc)}. Try another --opset; "
            "unsupported TensorFlow ops are named above."
        ) from exc


def _v1_to_onnx(model: Model, out: Path, opset: int) -> None:
    """A v1-loaded SavedModel: freeze its session's graph to the signature's outputs (variables
    become constants) and convert that graph; ONNX inputs and outputs take the signature's keys."""
    import tensorflow as tf
    import tf2onnx

    v1: savedmodel.V1Graph = model.native
    sig = v1.signature
    inputs = [sig.inputs[s.name].name for s in model.inputs]
    outputs = [sig.outputs[s.name].name for s in model.outputs]
    rename = {sig.inputs[s.name].name: s.name for s in model.inputs}
    rename.update({sig.outputs[s.name].name: s.name for s in model.outputs})
    with v1.graph.as_default(), _tf.v1_quiet():
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            v1.session, v1.graph.as_graph_def(), [name.split(":")[0] for name in outputs]
        )
    tf2onnx.convert.from_graph_def(
        frozen,
        input_names=inputs,
        output_names=outputs,
        opset=opset,
        tensors_to_rename=rename,
        output_path=str(out),
    )


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
        elif isinstance(model.native, savedmodel.V1Graph):
            _v1_to_onnx(model, out, opset)
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
