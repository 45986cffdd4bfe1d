"""A SavedModel whose `serving_default` signature is the original model's: its input and output
names, its input layout, its dtypes and dimensions — wrapped around a SavedModel that computes
the same thing under other names or in another layout (onnx2tf's NHWC with `output_0`, Keras
export's `output_0`).

TF Serving clients address a signature's inputs and outputs by their keys, so the keys are the
model's own (`x`, `linear_1`), and a client that sends the original's NCHW tensor gets the
original's answer: the wrapper transposes to the converted model's layout and back inside the
graph. TensorFlow is imported by the functions that need it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workflows.errors import ExportError

SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
# TensorFlow's rule for a node name, which a signature input's TensorSpec name must follow.
TF_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/]*")


def channels_last(rank: int) -> list[int]:
    """The permutation NC... -> N...C (NCHW -> NHWC for rank 4)."""
    return [0, *range(2, rank), 1]


def channels_first(rank: int) -> list[int]:
    """The permutation N...C -> NC... (NHWC -> NCHW for rank 4)."""
    return [0, rank - 1, *range(1, rank - 1)]


def _fits(shape: Sequence[int], spec: Sequence[int | None]) -> bool:
    return len(shape) == len(spec) and all(
        s is None or s == d for d, s in zip(shape, spec, strict=True)
    )


@dataclass
class Plan:
    """How the wrapper maps the original's tensors onto the converted signature and back."""

    # name, key, dtype, shape, perm (the wrapper's transpose), client_perm (a client's)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)  # name, key, perm, client_perm

    def client_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The original's data as a client sends it to the signature."""
        return {
            t["name"]: np.ascontiguousarray(feeds[t["name"]].transpose(t["client_perm"]))
            if t["client_perm"]
            else feeds[t["name"]]
            for t in self.inputs
        }

    def client_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The original's outputs as the signature gives them (NCHW -> NHWC when NHWC is
        kept)."""
        return {
            t["name"]: outputs[t["name"]].transpose(t["client_perm"])
            if t["client_perm"]
            else outputs[t["name"]]
            for t in self.outputs
        }


def _signature(saved_model: Path) -> Any:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model))
    if SIGNATURE not in loaded.signatures:
        raise ExportError(
            f"{saved_model}: no {SIGNATURE!r} signature (it has "
            f"{', '.join(loaded.signatures) or 'none'}); TF Serving calls {SIGNATURE!r} by default"
        )
    return loaded, loaded.signatures[SIGNATURE]


def _match_keys(names: list[str], keys: list[str], kind: str, where: Path) -> list[str]:
    """The converted signature's key for each of the original's names: the same name, the
    name with the characters TensorFlow refuses made '_', or (outputs) `output_N` by position."""
    if sorted(keys) == sorted(names):
        return names
    safe = {re.sub(r"[^A-Za-z0-9_]", "_", n): n for n in names}
    if sorted(keys) == sorted(safe):
        by_safe = {v: k for k, v in safe.items()}
        return [by_safe[n] for n in names]
    numbered = {f"output_{i}": n for i, n in enumerate(names)}
    if kind == "output" and sorted(keys) == sorted(numbered):
        return list(numbered)
    if len(names) == len(keys) == 1:
        return keys
    raise ExportError(
        f"{where}: cannot tell which of its signature's {kind}s ({', '.join(sorted(keys))}) is "
        f"which of the model's ({', '.join(names)})"
    )


def plan(
    saved_model: Path,
    inputs: list[Any],
    outputs: list[str],
    feeds: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    keep_layout: bool,
    channels_last_source: bool = False,
) -> Plan:
    """The wrapper for `saved_model` that takes the original's `inputs` (TensorSpecs) and gives
    its `outputs` (names): names matched, layouts found from the shapes of one sample (`feeds`
    and the original's answer `expected`). `keep_layout`: the converted model's layout is kept
    (NHWC for an ONNX source, inputs and outputs) instead of the original's.
    `channels_last_source`: the SavedModel is onnx2tf's, which makes every image input
    channels-last, so a sample that fits either way (3 channels of 3x3) is transposed."""
    import tensorflow as tf

    _, fn = _signature(saved_model)
    specs = fn.structured_input_signature[1]
    names = [s.name for s in inputs]
    keys = _match_keys(names, list(specs), "input", saved_model)
    result = Plan()
    converted_feeds = {}
    for spec, key in zip(inputs, keys, strict=True):
        target = specs[key]
        sample = feeds[spec.name]
        dims = [None if d is None else int(d) for d in target.shape]
        moved = sample.ndim >= 3 and _fits(sample.transpose(channels_last(sample.ndim)).shape, dims)
        if moved and (channels_last_source or not _fits(sample.shape, dims)):
            perm = channels_last(sample.ndim)
        elif _fits(sample.shape, dims):
            perm = None
        else:
            raise ExportError(
                f"{saved_model}: input {key!r} has shape {dims}; the model's sample "
                f"{list(sample.shape)} fits it neither as it is nor channels-last"
            )
        if not TF_NAME.fullmatch(spec.name):
            raise ExportError(
                f"input name {spec.name!r} is not one TensorFlow allows in a signature (letters, "
                "digits, '_', '.', '-', '/'): rename the input (ONNX: onnx.compose or the "
                "exporter's input_names) and export again"
            )
        # The converted model's dimensions (its dynamic ones stay dynamic), in the original's
        # layout unless the converted one is kept.
        keep = keep_layout or perm is None
        shape = dims if keep else [dims[i] for i in channels_first(len(dims))]
        result.inputs.append(
            {
                "name": spec.name,
                "key": key,
                "dtype": target.dtype.name,
                "shape": shape,
                "perm": None if keep else perm,  # the wrapper's, inside the graph
                # A client's, on the original's data (NCHW -> NHWC when NHWC is kept).
                "client_perm": perm if keep else None,
            }
        )
        converted_feeds[key] = sample if perm is None else sample.transpose(perm)
    answer = fn(**{k: tf.constant(v) for k, v in converted_feeds.items()})
    out_keys = _match_keys(outputs, list(answer), "output", saved_model)
    for name, key in zip(outputs, out_keys, strict=True):
        got, want = answer[key].numpy(), expected[name]
        if got.shape == want.shape:
            perm = None
        elif got.ndim >= 3 and got.transpose(channels_first(got.ndim)).shape == want.shape:
            perm = channels_first(got.ndim)
        else:
            raise ExportError(
                f"{saved_model}: output {key!r} has shape {list(got.shape)} for the sample; the "
                f"model's {name!r} has {list(want.shape)}"
            )
        result.outputs.append(
            {
                "name": name,
                "key": key,
                "perm": None if keep_layout else perm,
                "client_perm": channels_last(got.ndim) if keep_layout and perm else None,
            }
        )
    return result


def write(saved_model: Path, layout: Plan, target: Path) -> None:
    """The wrapping SavedModel at `target` (a version folder): `serving_default` takes and
    gives the original's names, transposing where `layout` says."""
    import tensorflow as tf

    loaded, _ = _signature(saved_model)
    specs = [
        tf.TensorSpec(t["shape"], tf.as_dtype(t["dtype"]), name=t["name"]) for t in layout.inputs
    ]

    class Serving(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.converted = loaded  # tracked: its variables are saved with the wrapper

        @tf.function(input_signature=specs, autograph=False)
        def serve(self, *args: Any) -> dict[str, Any]:
            feeds = {}
            for t, value in zip(layout.inputs, args, strict=True):
                feeds[t["key"]] = tf.transpose(value, t["perm"]) if t["perm"] else value
            answer = self.converted.signatures[SIGNATURE](**feeds)
            return {
                t["name"]: tf.transpose(answer[t["key"]], t["perm"])
                if t["perm"]
                else tf.identity(answer[t["key"]])
                for t in layout.outputs
            }

    module = Serving()
    tf.saved_model.save(
        module, str(target), signatures={SIGNATURE: module.serve.get_concrete_function()}
    )


def signature_def(saved_model: Path) -> dict[str, Any]:
    """`serving_default` as saved_model.pb declares it (what TF Serving reads): method, input
    and output keys with dtypes and shapes."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((saved_model / "saved_model.pb").read_bytes())
    if len(proto.meta_graphs) != 1:
        raise ExportError(f"{saved_model}: {len(proto.meta_graphs)} meta graphs; expected one")
    sig = proto.meta_graphs[0].signature_def[SIGNATURE]

    def tensors(entries: Any) -> dict[str, Any]:
        import tensorflow as tf

        return {
            key: {
                "dtype": tf.as_dtype(info.dtype).name,
                "shape": None
                if info.tensor_shape.unknown_rank
                else [d.size if d.size >= 0 else None for d in info.tensor_shape.dim],
            }
            for key, info in entries.items()
        }

    return {
        "method_name": sig.method_name,
        "inputs": tensors(sig.inputs),
        "outputs": tensors(sig.outputs),
    }


def run(saved_model: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`serving_default` of the SavedModel at `saved_model`, loaded afresh, on `feeds`."""
    import tensorflow as tf

    _, fn = _signature(saved_model)
    answer = fn(**{k: tf.constant(v) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in answer.items()}
