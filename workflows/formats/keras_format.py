"""Keras models: the native .keras zip and the legacy HDF5 .h5 format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows.errors import FormatError, UnsafeModelError
from workflows.formats import _tf
from workflows.formats._sniff import HDF5_MAGIC, head, zip_names
from workflows.model import Model, path_size

NAME = "keras"
FRAMEWORK = "tensorflow"


def match(path: Path) -> bool:
    names = zip_names(path)
    if names is not None:
        return "config.json" in names and any(n.startswith("model.weights") for n in names)
    return path.is_file() and head(path, 8) == HDF5_MAGIC


def why_not(path: Path) -> str:
    return "not a .keras zip (config.json + model.weights.h5) or an HDF5 file"


def load(path: Path, allow_unsafe: bool = False, **_: Any) -> Model:
    """keras.models.load_model with safe_mode (Lambda layers' code is not run unless allowed)."""
    _tf.quiet_tensorflow()
    import keras

    try:
        model = keras.models.load_model(str(path), compile=False, safe_mode=not allow_unsafe)
    except ValueError as exc:
        text = str(exc)
        if "unsafe" in text.lower() or "safe_mode" in text:
            raise UnsafeModelError(
                f"{path}: the model contains Python code (a Lambda layer or custom object) that Keras "
                "would have to run to load it; refused in safe mode. If you trust its source, load "
                "it with --allow-unsafe."
            ) from exc
        raise FormatError(f"{path}: Keras cannot load this file: {text.splitlines()[0]}") from exc
    except (OSError, TypeError, KeyError) as exc:
        raise FormatError(f"{path}: Keras cannot load this file: {exc}") from exc
    inputs = [_tf.spec(t.name, t.shape, t.dtype) for t in model.inputs]
    names = getattr(model, "output_names", None) or [t.name for t in model.outputs]
    outputs = [_tf.spec(n, t.shape, t.dtype) for n, t in zip(names, model.outputs, strict=False)]
    return Model(
        format=NAME,
        framework=FRAMEWORK,
        path=path,
        inputs=inputs,
        outputs=outputs,
        size_bytes=path_size(path),
        parameters=int(model.count_params()),
        producer=f"keras {keras.__version__}",
        metadata={"legacy_h5": head(path, 8) == HDF5_MAGIC, "layers": len(model.layers)},
        native=model,
    )


def session(model: Model, threads: int | None = None):
    """Run the Keras model (inference mode) on numpy feeds."""
    import numpy as np

    keras_model = model.native
    names = [s.name for s in model.inputs]

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = [feeds[n] for n in names]
        out = keras_model(args if len(args) > 1 else args[0], training=False)
        return _tf.as_list(out)

    return run
