"""The one number a compression search plots and ranks by: top-1 % with labels, top-1 agreement
with the original for unlabelled class scores, mean SQNR (dB) against the original otherwise."""

from __future__ import annotations

import numpy as np

from workflows.metrics import compare, looks_like_class_scores

SQNR_CAP = 200.0  # dB: identical outputs give infinity, which JSON and plots cannot hold


def figure_name(reference: list[np.ndarray], labelled: bool) -> str:
    """Which figure fits a model whose outputs are `reference` on data with or without labels."""
    if labelled and looks_like_class_scores(reference[0]):
        return "top-1 %"
    if looks_like_class_scores(reference[0]) and len(reference) == 1:
        return "top-1 agreement %"
    return "mean SQNR dB"


def figure(
    name: str, reference: list[np.ndarray], outputs: list[np.ndarray], labels: np.ndarray | None
) -> float:
    """The figure `name` of `outputs` (higher is better)."""
    if name == "top-1 %":
        assert labels is not None
        return float(100 * np.mean(outputs[0].argmax(1) == labels))
    if name == "top-1 agreement %":
        return float(100 * np.mean(outputs[0].argmax(1) == reference[0].argmax(1)))
    sqnr = [
        min(compare(r, c)["sqnr_db"], SQNR_CAP) for r, c in zip(reference, outputs, strict=True)
    ]
    return float(np.mean(sqnr))
