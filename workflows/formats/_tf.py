"""Helpers shared by the TensorFlow/Keras formats. TensorFlow is imported inside each function."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

from workflows.model import Dim, TensorSpec


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (must run before the first import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@contextlib.contextmanager
def v1_quiet():
    """Silence TensorFlow's deprecation warnings for the tf.compat.v1 calls that TF1-style
    SavedModels need (they are logged through the "tensorflow" logger)."""
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def shape_dims(shape: Any, dynamic_name: str = "batch") -> tuple[Dim, ...] | None:
    """A TF/Keras shape as dims: None (unknown) becomes `batch` on axis 0, else None."""
    if shape is None:
        return None
    dims = list(shape)
    return tuple(
        (dynamic_name if i == 0 else None) if d is None else int(d) for i, d in enumerate(dims)
    )


def spec(name: str, shape: Any, dtype: Any) -> TensorSpec:
    """A TensorSpec from a TF/Keras name, shape and dtype."""
    import numpy as np

    dtype_name = getattr(dtype, "name", None) or str(dtype)
    with contextlib.suppress(TypeError):
        dtype_name = np.dtype(getattr(dtype, "as_numpy_dtype", dtype_name)).name
    return TensorSpec(name, shape_dims(shape), dtype_name)


def as_list(outputs: Any, order: Sequence[str] | None = None) -> list[Any]:
    """Model outputs (tensor, list or dict) as a list of numpy arrays (dicts in `order`)."""
    import numpy as np

    if isinstance(outputs, dict):
        keys = order or sorted(outputs)
        return [np.asarray(outputs[k]) for k in keys]
    if isinstance(outputs, list | tuple):
        return [np.asarray(o) for o in outputs]
    return [np.asarray(outputs)]
