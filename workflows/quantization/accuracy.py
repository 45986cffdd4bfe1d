"""Accuracy of a model on a dataset: top-1/top-5 with labels, otherwise deviation from a reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from workflows.data import Dataset
from workflows.errors import DataError
from workflows.metrics import compare, looks_like_class_scores

RunFn = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def predict(run: RunFn, data: Dataset, batch_size: int = 64) -> list[np.ndarray]:
    """Every output of `run` over the whole dataset, concatenated along the batch."""
    chunks: list[list[np.ndarray]] = []
    for feeds in data.batches(batch_size):
        chunks.append(run(feeds))
    # [:len(data)]: a fixed-batch model's last batch is padded
    return [np.concatenate([c[i] for c in chunks])[: len(data)] for i in range(len(chunks[0]))]


def topk_accuracy(
    scores: np.ndarray, labels: np.ndarray, label_names: list[str] | None = None, source: str = ""
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (as fractions) of class scores [N, classes] against labels [N]."""
    if not looks_like_class_scores(scores):
        raise DataError(
            f"{source}: labels were given but the model's first output is {scores.shape}, not "
            "[batch, classes] scores"
        )
    classes = scores.shape[1]
    # Label names must name every class; bare labels need only be classes the model has (a
    # real evaluation set seldom holds the highest class index).
    if (label_names and len(label_names) != classes) or labels.min() < 0 or labels.max() >= classes:
        named = len(label_names) if label_names else int(labels.max()) + 1
        raise DataError(
            f"{source}: the labels name {named} classes but the model outputs {classes} scores; "
            "check the label file or the class folders"
        )
    # Stable, so that among tied scores (common in INT8 outputs) the first wins, as argmax picks
    # it: the top-1 figure and the gate (argmax) then count the same predictions.
    order = np.argsort(-scores, axis=1, kind="stable")
    k = min(5, classes)
    return {
        "top1": float(np.mean(order[:, 0] == labels)),
        f"top{k}": float(np.mean((order[:, :k] == labels[:, None]).any(axis=1))),
    }


def evaluate(
    run: RunFn, data: Dataset, reference: list[np.ndarray] | None = None
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Accuracy figures for one model (top-k when labelled, deviation from `reference` when given)
    and its outputs."""
    outputs = predict(run, data)
    result: dict[str, Any] = {
        "samples": len(data),
        "synthetic": data.synthetic,
        "source": data.source,
    }
    if data.y is not None:
        result.update(topk_accuracy(outputs[0], data.y, data.label_names, data.source))
    if reference is not None:
        result["deviation"] = compare(reference[0], outputs[0])
    return result, outputs
