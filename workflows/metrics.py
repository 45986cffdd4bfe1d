"""Deviation metrics between a reference output and a candidate output."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def looks_like_class_scores(arr: np.ndarray) -> bool:
    """A [batch, classes] float output with more than one class."""
    return arr.ndim == 2 and arr.shape[1] > 1 and arr.dtype.kind == "f"


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """max/mean abs error, cosine similarity, SQNR (dB) and, for class scores, top-1 agreement."""
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    result: dict[str, Any] = {
        "reference_shape": list(reference.shape),
        "candidate_shape": list(candidate.shape),
        "shape_match": reference.shape == candidate.shape,
    }
    if not result["shape_match"]:
        return result
    err = cand - ref
    noise = float(np.sum(err**2))
    signal = float(np.sum(ref**2))
    norms = float(np.linalg.norm(ref) * np.linalg.norm(cand))
    result.update(
        max_abs_error=float(np.max(np.abs(err))) if err.size else 0.0,
        mean_abs_error=float(np.mean(np.abs(err))) if err.size else 0.0,
        cosine_similarity=float(np.sum(ref * cand) / norms)
        if norms > 0
        else (1.0 if noise == 0 else 0.0),
        sqnr_db=math.inf
        if noise == 0
        else (10 * math.log10(signal / noise) if signal > 0 else -math.inf),
    )
    if looks_like_class_scores(reference):
        result["top1_agreement"] = float(np.mean(ref.argmax(1) == cand.argmax(1)))
    return result


def within_tolerance(
    reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float
) -> bool:
    """np.allclose semantics: |cand - ref| <= atol + rtol * |ref| everywhere."""
    if reference.shape != candidate.shape:
        return False
    return bool(
        np.allclose(
            candidate.astype(np.float64), reference.astype(np.float64), atol=atol, rtol=rtol
        )
    )
