"""TensorFlow SavedModel folders (saved_model.pb + variables/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows.errors import FormatError
from workflows.formats import _tf
from workflows.model import Model, path_size

NAME = "savedmodel"
FRAMEWORK = "tensorflow"
DEFAULT_SIGNATURE = "serving_default"


def _root(path: Path) -> Path:
    return path.parent if path.is_file() and path.name.startswith("saved_model.pb") else path


def match(path: Path) -> bool:
    root = _root(path)
    return root.is_dir() and (
        (root / "saved_model.pb").is_file() or (root / "saved_model.pbtxt").is_file()
    )


def why_not(path: Path) -> str:
    if not path.is_dir():
        return "not a folder"
    present = sorted(p.name for p in path.iterdir())[:8]
    return f"folder has no saved_model.pb (it holds: {', '.join(present) or 'nothing'})"


def signature(loaded: Any, path: Path, name: str = DEFAULT_SIGNATURE) -> Any:
    """The named serving signature of a loaded SavedModel."""
    sigs = dict(getattr(loaded, "signatures", {}) or {})
    if name not in sigs:
        raise FormatError(
            f"{path}: SavedModel has no signature {name!r} (it has: {', '.join(sigs) or 'none'}); "
            "re-export with a serving signature or pick one with --signature."
        )
    return sigs[name]


def load(path: Path, signature_name: str = DEFAULT_SIGNATURE, **_: Any) -> Model:
    """tf.saved_model.load and describe the serving signature's inputs and outputs."""
    root = _root(path)
    if not match(root):
        raise FormatError(f"{path}: not a SavedModel folder: {why_not(root)}")
    _tf.quiet_tensorflow()
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(root))
    except Exception as exc:  # TF raises many types for damaged or Keras-2-era SavedModels
        raise FormatError(f"{root}: TensorFlow cannot load this SavedModel: {exc}") from exc
    fn = signature(loaded, root, signature_name)
    _, kwargs = fn.structured_input_signature
    inputs = [_tf.spec(k, v.shape, v.dtype) for k, v in sorted(kwargs.items())]
    outputs = [_tf.spec(k, v.shape, v.dtype) for k, v in sorted(fn.structured_outputs.items())]
    # The loaded object's variables are unique; the checkpoint lists some under several paths.
    variables = {id(v): v for v in getattr(loaded, "variables", [])}.values()
    params = sum(int(v.shape.num_elements() or 0) for v in variables)
    return Model(
        format=NAME,
        framework=FRAMEWORK,
        path=root,
        inputs=inputs,
        outputs=outputs,
        size_bytes=path_size(root),
        parameters=params,
        producer=f"tensorflow {tf.__version__}",
        metadata={"signature": signature_name},
        native=loaded,
    )


def session(model: Model, threads: int | None = None):
    """Run the serving signature on numpy feeds; outputs in sorted-name order."""
    import numpy as np

    fn = signature(model.native, model.path, model.metadata.get("signature", DEFAULT_SIGNATURE))
    order = [s.name for s in model.outputs]

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return _tf.as_list(fn(**feeds), order)

    return run
