"""Test inputs for a model: synthesised from its input spec with a fixed seed, or the user's files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workflows.errors import MissingInputError
from workflows.model import TensorSpec

DEFAULT_DIM = 8
"""Size used for a symbolic dimension other than the batch when the user gives none."""


def parse_shape(text: str) -> tuple[int, ...]:
    """`1x3x224x224` or `1,3,224,224` -> (1, 3, 224, 224)."""
    parts = [p for p in re.split(r"[x,\s]+", text.strip()) if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise MissingInputError(f"cannot read {text!r} as a shape; write it like 1x3x224x224")
    return tuple(int(p) for p in parts)


def parse_input_shapes(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """`["x=1x3x8x8", "mask=1x8"]` (or a bare `1x3x8x8` for a single input) -> {name: shape}."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, _, shape = item.rpartition("=") if "=" in item else ("", "", item)
        shapes[name or "*"] = parse_shape(shape)
    return shapes


def concrete_shape(
    spec: TensorSpec, batch: int, dim_values: dict[str, int] | None = None
) -> tuple[int, ...]:
    """The spec's shape with the batch (axis 0, when symbolic) and other symbolic dims filled in."""
    if spec.shape is None:
        raise MissingInputError(
            f"input {spec.name!r} has no known shape; give one with --input-shape {spec.name}=1x..."
        )
    dim_values = dim_values or {}
    dims = []
    for axis, d in enumerate(spec.shape):
        if isinstance(d, int):
            dims.append(d)
        elif axis == 0:
            dims.append(batch)
        else:
            dims.append(dim_values.get(str(d), DEFAULT_DIM))
    return tuple(dims)


def synthesize(
    specs: Sequence[TensorSpec],
    batch: int = 1,
    seed: int = 0,
    dim_values: dict[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Random feeds for `specs`: standard normal floats, small non-negative ints, random bools."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = concrete_shape(spec, batch, dim_values)
        dtype = np.dtype(spec.dtype if spec.dtype != "unknown" else "float32")
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.random(shape) > 0.5
        else:
            raise MissingInputError(
                f"input {spec.name!r} has dtype {dtype}; give real data with --inputs"
            )
    return feeds


def load_feeds(path: Path, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Feeds from a .npy (single-input models) or .npz (arrays named like the inputs, or `x`)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: input file not found")
    if path.suffix == ".npy":
        if len(specs) != 1:
            raise MissingInputError(
                f"{path}: a .npy holds one array but the model has {len(specs)} inputs; use a .npz "
                f"with arrays named {', '.join(s.name for s in specs)}"
            )
        return {specs[0].name: np.load(path, allow_pickle=False)}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = dict(data)
        names = [s.name for s in specs]
        if all(n in arrays for n in names):
            return {n: arrays[n] for n in names}
        if len(specs) == 1 and "x" in arrays:
            return {names[0]: arrays["x"]}
        raise MissingInputError(
            f"{path}: arrays {sorted(arrays)} do not name the model's inputs {names}"
        )
    raise MissingInputError(f"{path}: inputs must be .npy or .npz files")


def rename_feeds(
    feeds: dict[str, np.ndarray], source: Sequence[TensorSpec], target: Sequence[TensorSpec]
) -> dict[str, np.ndarray]:
    """Map feeds keyed by `source` input names onto `target` names (by name, else by position)."""
    if {s.name for s in target} <= set(feeds):
        pairs = [(t.name, t) for t in target]
    else:
        if len(source) != len(target):
            raise MissingInputError(
                f"the models have different numbers of inputs ({len(source)} vs {len(target)})"
            )
        pairs = list(zip([s.name for s in source], target, strict=True))
    out = {}
    for src_name, spec in pairs:
        arr = feeds[src_name]
        if spec.dtype not in ("unknown", arr.dtype.name):
            arr = arr.astype(spec.dtype)
        out[spec.name] = arr
    return out
