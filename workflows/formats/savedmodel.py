"""TensorFlow SavedModel folders (saved_model.pb + variables/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.errors import FormatError, first_line
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


@dataclass
class _Handle:
    """A resource variable's shape and dtype, read from its VarHandleOp."""

    shape: Any
    dtype: Any


@dataclass
class V1Graph:
    """A SavedModel loaded with TensorFlow's v1 loader: its graph, session and signature."""

    graph: Any
    session: Any
    signature: Any  # a SignatureDef
    tag: str

    @property
    def variables(self) -> list[Any]:
        """The graph's variables: its collection (TF1 graphs), else its VarHandleOps (a TF2
        SavedModel loaded as a graph keeps resource variables out of the collections)."""
        import tensorflow as tf

        found = self.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
        if found:
            return found
        handles = {}
        for op in self.graph.get_operations():
            if op.type == "VarHandleOp":
                handles.setdefault(op.get_attr("shared_name") or op.name, op)
        return [_Handle(tf.TensorShape(op.get_attr("shape")), op.get_attr("dtype"))
                for op in handles.values()]  # fmt: skip

    def run(self, feeds: dict[str, Any], order: list[str]) -> list[Any]:
        fetches = [self.signature.outputs[k].name for k in order]
        feed = {self.signature.inputs[k].name: v for k, v in feeds.items()}
        return list(self.session.run(fetches, feed))


def _serving_tag(root: Path) -> str:
    """The meta graph's tag set to load: "serve" when present, else the first one stored."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((root / "saved_model.pb").read_bytes())
    tags = [",".join(m.meta_info_def.tags) for m in proto.meta_graphs]
    return "serve" if any("serve" in t.split(",") for t in tags) else (tags[0] if tags else "serve")


def _load_v1(root: Path, signature_name: str) -> tuple[V1Graph, list, list, int]:
    """TensorFlow's v1 loader (a Graph and a Session): for TF1-style SavedModels (Estimator
    exports, tf.compat.v1 builders, Keras-2-era files) whose object graph the v2 loader cannot
    revive."""
    import tensorflow as tf

    tag = _serving_tag(root)
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default(), _tf.v1_quiet():
        meta = tf.compat.v1.saved_model.loader.load(session, tag.split(","), str(root))
    native = V1Graph(graph, session, None, tag)
    params = sum(int(v.shape.num_elements() or 0) for v in native.variables)
    sigs = meta.signature_def
    if signature_name not in sigs:
        session.close()
        raise FormatError(
            f"{root}: SavedModel has no signature {signature_name!r} (it has: "
            f"{', '.join(sigs) or 'none'}); re-export with a serving signature."
        )
    sig = sigs[signature_name]

    def specs(infos: Any) -> list:
        return [
            _tf.spec(k, tf.TensorShape(i.tensor_shape), tf.dtypes.as_dtype(i.dtype))
            for k, i in sorted(infos.items())
        ]

    native.signature = sig
    return native, specs(sig.inputs), specs(sig.outputs), params


def load(path: Path, signature_name: str = DEFAULT_SIGNATURE, **_: Any) -> Model:
    """tf.saved_model.load and describe the serving signature's inputs and outputs; TF1-style
    SavedModels that the v2 loader cannot read go through the v1 loader."""
    root = _root(path)
    if not match(root):
        raise FormatError(f"{path}: not a SavedModel folder: {why_not(root)}")
    _tf.quiet_tensorflow()
    import tensorflow as tf

    native: Any
    try:
        loaded = tf.saved_model.load(str(root))
    except Exception as v2_error:  # TF raises many types for damaged or Keras-2-era SavedModels
        try:
            native, inputs, outputs, params = _load_v1(root, signature_name)
        except FormatError:
            raise
        except Exception as v1_error:
            raise FormatError(
                f"{root}: TensorFlow cannot load this SavedModel: the v2 loader says "
                f"{first_line(v2_error)[:300]}; the v1 loader (TF1 graphs) says "
                f"{first_line(v1_error)[:300]}"
            ) from v1_error
        producer = f"tensorflow {tf.__version__} (v1 loader, tags {native.tag})"
        metadata = {"signature": signature_name, "loader": "v1", "tag": native.tag}
    else:
        fn = signature(loaded, root, signature_name)
        _, kwargs = fn.structured_input_signature
        inputs = [_tf.spec(k, v.shape, v.dtype) for k, v in sorted(kwargs.items())]
        outputs = [_tf.spec(k, v.shape, v.dtype) for k, v in sorted(fn.structured_outputs.items())]
        # The loaded object's variables are unique; the checkpoint lists some under several paths.
        variables = {id(v): v for v in getattr(loaded, "variables", [])}.values()
        params = sum(int(v.shape.num_elements() or 0) for v in variables)
        native, producer, metadata = (
            loaded,
            f"tensorflow {tf.__version__}",
            {"signature": signature_name},
        )
    return Model(
        format=NAME,
        framework=FRAMEWORK,
        path=root,
        inputs=inputs,
        outputs=outputs,
        size_bytes=path_size(root),
        parameters=params,
        producer=producer,
        metadata=metadata,
        native=native,
    )


def session(model: Model, threads: int | None = None):
    """Run the serving signature on numpy feeds; outputs in sorted-name order."""
    import numpy as np

    order = [s.name for s in model.outputs]
    if isinstance(model.native, V1Graph):
        v1 = model.native

        def run_v1(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            return [np.asarray(o) for o in v1.run(feeds, order)]

        return run_v1
    fn = signature(model.native, model.path, model.metadata.get("signature", DEFAULT_SIGNATURE))

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return _tf.as_list(fn(**feeds), order)

    return run
