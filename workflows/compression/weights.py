"""Unstructured compression of an ONNX model's weights, for size: magnitude pruning (the smallest
weights set to zero) and weight clustering (every weight replaced by one of k shared values).

The tensors keep their shape and dtype, so every runtime loads the result unchanged; what shrinks
is the file once compressed (zip, an app store's download, a container layer), because zeros and
repeated values compress. Runtimes run these weights dense: any speed-up must be measured.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WEIGHT_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}  # op -> weight input index
MIN_WEIGHTS = 256  # smaller tensors (biases, tiny layers) are left alone: nothing to gain
SPARSITY_LEVELS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)  # gentlest first
CLUSTER_LEVELS = (0, 256, 64, 32, 16, 8, 4)  # 0: kept as it is; then fewer shared values


@dataclass(frozen=True)
class Layer:
    """A weight tensor that compression may change: the initializer and the node using it."""

    name: str
    node: str
    op: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def weight_layers(proto: Any, min_weights: int = MIN_WEIGHTS) -> list[Layer]:
    """Float32 weight initializers of Conv/ConvTranspose/Gemm/MatMul with at least `min_weights`
    values, each listed once (in graph order)."""
    from onnx import TensorProto

    inits = {t.name: t for t in proto.graph.initializer}
    found: dict[str, Layer] = {}
    for node in proto.graph.node:
        index = WEIGHT_OPS.get(node.op_type)
        if index is None or len(node.input) <= index:
            continue
        t = inits.get(node.input[index])
        if t is None or t.data_type != TensorProto.FLOAT or t.name in found:
            continue
        shape = tuple(int(d) for d in t.dims)
        if len(shape) >= 2 and int(np.prod(shape)) >= min_weights:
            found[t.name] = Layer(t.name, node.name or node.output[0], node.op_type, shape)
    return list(found.values())


def magnitude_prune(w: np.ndarray, sparsity: float) -> np.ndarray:
    """`w` with its round(sparsity * size) smallest-magnitude values set to zero."""
    k = round(sparsity * w.size)
    if k <= 0:
        return w
    flat = w.ravel().copy()
    flat[np.argpartition(np.abs(flat), k - 1)[:k]] = 0.0
    return flat.reshape(w.shape)


def cluster(w: np.ndarray, k: int, seed: int = 0, fit_on: int = 20_000) -> np.ndarray:
    """`w` with every value replaced by the nearest of `k` shared values (1-D k-means,
    scikit-learn's KMeans fitted on up to `fit_on` sampled values)."""
    if k <= 0 or np.unique(w).size <= k:
        return w
    from sklearn.cluster import KMeans

    flat = w.ravel().astype(np.float64)
    rng = np.random.default_rng(seed)
    sample = flat if flat.size <= fit_on else rng.choice(flat, fit_on, replace=False)
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(sample[:, None])
    centres = np.sort(km.cluster_centers_.ravel())
    # Nearest centre for every value: the midpoints between sorted centres split the line.
    index = np.searchsorted((centres[1:] + centres[:-1]) / 2, flat)
    return centres[index].astype(w.dtype).reshape(w.shape)


def weights(proto: Any, layers: list[Layer]) -> dict[str, np.ndarray]:
    """The layers' weight arrays, by initializer name."""
    from onnx import numpy_helper

    wanted = {layer.name for layer in layers}
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer if t.name in wanted}


def replaced(proto: Any, changes: dict[str, np.ndarray]) -> Any:
    """A copy of `proto` whose initializers named in `changes` hold the new arrays."""
    from onnx import ModelProto, numpy_helper

    out = ModelProto()
    out.CopyFrom(proto)
    for i, t in enumerate(out.graph.initializer):
        if t.name in changes:
            out.graph.initializer[i].CopyFrom(numpy_helper.from_array(changes[t.name], t.name))
    return out


def apply(
    proto: Any, originals: dict[str, np.ndarray], method: str, levels: dict[str, float],
    seed: int = 0,
) -> Any:  # fmt: skip
    """`proto` with each named layer compressed at its level (sparsity share or cluster count)."""
    changes = {}
    for name, level in levels.items():
        if not level:
            continue
        w = originals[name]
        changes[name] = (
            magnitude_prune(w, float(level))
            if method == "sparsity"
            else cluster(w, int(level), seed)
        )
    return replaced(proto, changes)


def zip_size(paths: list[Path]) -> int:
    """Bytes of the files compressed as a zip archive would (deflate, level 9)."""
    return sum(len(zlib.compress(p.read_bytes(), 9)) for p in paths)


def sparsity_of(proto: Any, layers: list[Layer]) -> float:
    """Share of zeros among the layers' weights."""
    arrays = weights(proto, layers)
    total = sum(a.size for a in arrays.values())
    return float(sum(int(np.sum(a == 0)) for a in arrays.values()) / max(total, 1))
