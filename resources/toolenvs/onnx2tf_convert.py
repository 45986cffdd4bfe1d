"""ONNX -> TensorFlow SavedModel (onnx2tf) -> TFLite variants (TFLiteConverter), in one process of
onnx2tf's own environment, so TensorFlow is imported once and the Dockyard step that asked needs
no TensorFlow of its own.

Run by Dockyard with that environment's Python (this file imports nothing of Dockyard's):

    python onnx2tf_convert.py MODEL.onnx SAVEDMODEL_DIR [--tflite DIR --variants fp32,int8,...]

onnx2tf writes its simplified model back over MODEL.onnx: give it a copy. The TFLite variants are
made in the order given; each is written to DIR/VARIANT.tflite (complete before it is announced).

Dockyard reads lines `@@dockyard {json}` from stdout (onnx2tf's own lines are around them):
{"event": "savedmodel"}, {"event": "variant", "variant": V, "file": PATH},
{"event": "error", "variant": V, "message": ...} (then exit status 3).
For int8 it sends the representative data on stdin: a JSON line {"input": signature input name},
then per sample a JSON line {"shape": [...]} and its float32 bytes; a line {"end": true} closes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MARK = "@@dockyard "


def emit(**event: Any) -> None:
    """One event line for Dockyard (a single write: TensorFlow's own lines share the pipe)."""
    sys.stdout.write(MARK + json.dumps(event) + "\n")
    sys.stdout.flush()


class _SavedModelWritten(BaseException):
    """Raised where onnx2tf starts its own TFLite conversion (not an Exception: onnx2tf catches
    those and falls back to another converter)."""


def to_savedmodel(onnx: str, out: str) -> None:
    """onnx2tf as its command line runs it (-osd: signature defs, which TFLiteConverter's
    from_saved_model needs; -n: quiet), stopped once the SavedModel is written."""
    import tensorflow as tf
    from onnx2tf import onnx2tf as tool

    # onnx2tf 1.29 always converts to TFLite after writing the SavedModel (with SELECT_TF_OPS,
    # which Dockyard does not ship) and has no option to skip it: the variants below are made
    # from the SavedModel instead, so its conversion (~2 s of CPU on the 300 KB sample) is cut
    # short where it asks for its converter. Pinned version: the lock file fixes onnx2tf.
    def stop(*args: Any, **kwargs: Any) -> Any:
        raise _SavedModelWritten

    converter = tf.lite.TFLiteConverter
    saved = converter.__dict__["from_keras_model"], converter.__dict__["from_concrete_functions"]
    converter.from_keras_model = converter.from_concrete_functions = staticmethod(stop)
    sys.argv = ["onnx2tf", "-i", onnx, "-o", out, "-osd", "-n"]
    try:
        tool.main()
    except _SavedModelWritten:
        pass
    finally:
        converter.from_keras_model, converter.from_concrete_functions = saved
    if not (Path(out) / "saved_model.pb").exists():
        raise SystemExit(f"onnx2tf wrote no SavedModel to {out}")
    emit(event="savedmodel")


def representative() -> Iterator[dict[str, Any]]:
    """The INT8 representative samples Dockyard streams on stdin, one at a time (memory stays
    flat however many it sends)."""
    import numpy as np

    stdin = sys.stdin.buffer
    name = json.loads(stdin.readline())["input"]
    while True:
        header = json.loads(stdin.readline() or '{"end": true}')
        if header.get("end"):
            return
        shape = [int(d) for d in header["shape"]]
        size = int(np.prod(shape)) * 4
        data = stdin.read(size)
        if len(data) != size:
            raise SystemExit("the representative data ended inside a sample")
        yield {name: np.frombuffer(data, np.float32).reshape(shape)}


def convert(saved_model: str, variant: str, samples: Any = None) -> bytes:
    """One variant's flatbuffer from the SavedModel (the settings Dockyard ships)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if variant == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = samples
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx")
    parser.add_argument("saved_model")
    parser.add_argument("--tflite")
    parser.add_argument("--variants", default="")
    args = parser.parse_args()
    to_savedmodel(args.onnx, args.saved_model)
    for variant in filter(None, args.variants.split(",")):
        try:
            flat = convert(args.saved_model, variant, representative)
        except Exception as exc:  # the converter raises ConverterError and friends
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            emit(event="error", variant=variant, message=lines[0])
            return 3
        final = Path(args.tflite) / f"{variant}.tflite"
        partial = final.with_suffix(".partial")
        partial.write_bytes(flat)
        partial.replace(final)
        emit(event="variant", variant=variant, file=str(final))
    return 0


if __name__ == "__main__":
    sys.exit(main())
