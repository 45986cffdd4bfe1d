"""Test inference: one input through the original and its variants, shown side by side
(top-k with label names for classifiers, a tensor summary otherwise)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workflows import formats
from workflows.data import Preprocess, load_dataset, read_labels
from workflows.metrics import looks_like_class_scores
from workflows.options import Options, from_dict, option
from workflows.progress import Progress, null_progress


@dataclass
class PredictOptions(Options):
    """Options of the test-inference step."""

    models: list[str] = option([], "Model files (any format) or a quantize output folder")
    input: str = option("", "An image, a .npy (one sample) or a .npz")
    labels: str | None = option(None, "Label names file, one per line")
    preprocess: Preprocess = option(Preprocess(), "How an image becomes the input tensor")
    top_k: int = option(5, "How many classes to show")


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def looks_like_probabilities(row: np.ndarray) -> bool:
    return bool(row.min() >= 0 and abs(row.sum() - 1) < 1e-3)


def describe_output(arr: np.ndarray, labels: list[str] | None, top_k: int) -> dict[str, Any]:
    """Top-k classes (with probabilities) for class scores, else a tensor summary."""
    summary: dict[str, Any] = {
        "shape": list(arr.shape),
        "dtype": arr.dtype.name,
        "min": float(arr.min()),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "head": [float(v) for v in arr.reshape(-1)[:8]],
    }
    if looks_like_class_scores(arr):
        row = arr[0].astype(np.float64)
        probs = row if looks_like_probabilities(row) else softmax(row)
        order = np.argsort(-probs, kind="stable")[:top_k]
        summary["top_k"] = [
            {
                "index": int(i),
                "label": labels[i] if labels and i < len(labels) else str(int(i)),
                "probability": float(probs[i]),
                "score": float(row[i]),
            }
            for i in order
        ]
    return summary


def predict(opts: PredictOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run opts.input through every model; results in model order, first is the reference."""
    from workflows.steps.benchmark import expand_models

    progress = progress or null_progress()
    paths: list[Path] = []
    for m in opts.models:
        paths += expand_models([m]) if Path(m).is_dir() else [Path(m)]
    labels = read_labels(Path(opts.labels)) if opts.labels else None
    results = []
    reference: np.ndarray | None = None
    for i, path in enumerate(paths):
        progress.update(i / len(paths), f"Running {path.name}")
        model = formats.load_model(path)
        data = load_dataset(opts.input, model.inputs, opts.preprocess).take(1)
        run = formats.by_name(model.format).session(model)
        out = run(next(data.batches(1)))[0]
        entry = {
            "model": str(path),
            "format": model.format,
            "output": describe_output(out, labels, opts.top_k),
        }
        if reference is None:
            reference = out
        elif reference.shape == out.shape:
            entry["max_abs_diff_vs_first"] = float(np.abs(out.astype(np.float64) - reference).max())
        results.append(entry)
    progress.update(1.0, "Done")
    return {"step": "predict", "input": opts.input, "results": results}


def run(options: PredictOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return predict(from_dict(PredictOptions, options), progress)
