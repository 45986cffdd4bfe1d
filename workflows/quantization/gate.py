"""The accuracy gate: is a variant as good as the float model, with what confidence?

Every figure comes with its sample count and a confidence interval, paired where both models saw
the same samples (they always do here). The decision follows the interval, not the point estimate:

- **pass** when the whole interval of the loss is within the allowed loss;
- **fail** when the whole interval is beyond it;
- **inconclusive** otherwise, with roughly how many samples would decide. Inconclusive is not a
  pass, and it does not by itself send the variant to the fallback;
- **not judged** on synthetic inputs: noise says nothing about the task, so the figures are
  reported (marked synthetic) and no pass/fail is claimed.

Metrics, by what the data allows:

- labelled class scores: the **top-1 drop** in points, float minus variant (paired: Newcombe's
  hybrid score interval for a difference of paired proportions);
- unlabelled class scores: **disagreement** with the float model's top-1, in points (Wilson);
- other outputs (detection, segmentation, embeddings, audio): per output, the mean over samples of
  the **SQNR** in dB (normal interval); it must stay at or above `min_sqnr_db` (default 20 dB: the
  noise at most 1 % of the signal's power, where most dense-prediction tasks are unaffected).
  Cosine similarity is reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import numpy as np

from workflows.metrics import looks_like_class_scores

CONFIDENCE = 0.95
MIN_SQNR_DB = 20.0
SQNR_CAP_DB = 100.0  # an exact output has infinite SQNR; capped so that means stay finite


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927; what scipy's binomtest gives, as a
    formula so that counts may be fractional when projecting to more samples)."""
    z = _z(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def _newcombe(
    a: float, b: float, c: float, d: float, confidence: float
) -> tuple[float, float, float]:
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, confidence)
    l2, u2 = wilson(a + c, n, confidence)
    denominator = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    phi = (a * d - b * c) / denominator if denominator else 0.0
    theta = p1 - p2
    lower = theta - math.sqrt(
        max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0)
    )
    upper = theta + math.sqrt(
        max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0)
    )
    return theta, max(lower, -1.0), min(upper, 1.0)


def paired_difference(
    first: np.ndarray, second: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """mean(first) - mean(second) of two paired 0/1 outcomes, and its interval.

    Newcombe's method 10 (Statistics in Medicine 1998, 17:2635): Wilson intervals of each
    proportion combined through the pairs' phi correlation. Written here because scipy has no
    interval for paired proportions and statsmodels would be a dependency for one formula; it keeps
    its coverage with few discordant pairs, where the Wald interval collapses to zero width.
    """
    return _newcombe(*_table(first, second), confidence)


def _table(first: np.ndarray, second: np.ndarray) -> tuple[int, int, int, int]:
    """The 2x2 counts of paired outcomes: both, first only, second only, neither."""
    first, second = np.asarray(first, bool), np.asarray(second, bool)
    a = int(np.sum(first & second))
    b = int(np.sum(first & ~second))
    c = int(np.sum(~first & second))
    return a, b, c, len(first) - a - b - c


def _decide(lower: float, upper: float, allowed: float) -> str:
    if upper <= allowed:
        return "pass"
    if lower > allowed:
        return "fail"
    return "inconclusive"


def _samples_needed(
    interval: Callable[[float], tuple[float, float]], n: int, allowed: float
) -> int | None:
    """The fewest samples at which `interval(samples)` (the same rates, more samples) is decisive
    on `allowed`; None when it never is (the estimate sits on the limit) within 10 million."""

    def decisive(m: float) -> bool:
        return _decide(*interval(m), allowed) != "inconclusive"

    high = n
    while not decisive(high):
        high *= 2
        if high > 10_000_000:
            return None
    low = high // 2 if high > n else n
    while high - low > max(1, low // 100):  # to 1 %: it is an estimate
        mid = (low + high) // 2
        low, high = (low, mid) if decisive(mid) else (mid, high)
    return high


def _loss_gate(
    metric: str, n: int, estimate: float, interval: Callable[[float], tuple[float, float]],
    allowed: float, confidence: float,
) -> dict[str, Any]:  # fmt: skip
    """A gate on a loss in points (top-1 drop or disagreement): lower is better. `interval(m)`
    gives the loss's interval (fractions) at the observed rates over m samples."""
    lower, upper = interval(n)
    decision = _decide(100 * lower, 100 * upper, allowed)
    needed = None
    if decision == "inconclusive":
        needed = _samples_needed(lambda m: tuple(100 * v for v in interval(m)), n, allowed)
    return {
        "metric": metric,
        "samples": n,
        "drop_points": round(100 * estimate, 3),
        "ci_points": [round(100 * lower, 3), round(100 * upper, 3)],
        "confidence": confidence,
        "allowed_points": allowed,
        "decision": decision,
        "passed": {"pass": True, "fail": False}.get(decision),
        "samples_needed": needed,
    }


def per_sample_sqnr(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """SQNR (dB) of each sample (axis 0), capped at SQNR_CAP_DB."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    err = np.asarray(candidate, np.float64).reshape(len(candidate), -1) - ref
    signal, noise = np.sum(ref**2, axis=1), np.sum(err**2, axis=1)
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(np.where(noise > 0, signal, 1.0) / np.where(noise > 0, noise, 1.0))
    db = np.where(noise == 0, SQNR_CAP_DB, db)
    db = np.where((signal == 0) & (noise > 0), -SQNR_CAP_DB, db)
    return np.clip(db, -SQNR_CAP_DB, SQNR_CAP_DB)


def _sqnr_gate(
    reference: list[np.ndarray], candidate: list[np.ndarray], min_db: float, confidence: float
) -> dict[str, Any]:
    z = _z(confidence)
    outputs = []
    for i, (ref, cand) in enumerate(zip(reference, candidate, strict=True)):
        if ref.shape != cand.shape or ref.dtype.kind not in "fc":
            continue
        db = per_sample_sqnr(ref, cand)
        n = len(db)
        mean = float(np.mean(db))
        sd = float(np.std(db, ddof=1)) if n > 1 else math.inf

        def loss(m: float, mean: float = mean, sd: float = sd) -> tuple[float, float]:
            """The interval of -SQNR over m samples: a loss, so that _decide applies."""
            half = z * sd / math.sqrt(m)
            return -(mean + half), -(mean - half)

        flat_r = ref.reshape(n, -1).astype(np.float64)
        flat_c = cand.reshape(n, -1).astype(np.float64)
        norms = np.linalg.norm(flat_r, axis=1) * np.linalg.norm(flat_c, axis=1)
        safe = np.where(norms > 0, norms, 1.0)
        cosine = np.where(norms > 0, np.sum(flat_r * flat_c, axis=1) / safe, 1.0)
        low_loss, high_loss = loss(n)
        lower, upper = -high_loss, -low_loss
        decision = _decide(low_loss, high_loss, -min_db) if n > 1 else "inconclusive"
        needed = None
        if decision == "inconclusive" and n > 1:
            needed = _samples_needed(loss, n, -min_db)
        outputs.append(
            {
                "output": i,
                "sqnr_db": round(mean, 2),
                "ci_db": [round(lower, 2), round(upper, 2)],
                "cosine_similarity": round(float(np.mean(cosine)), 6),
                "decision": decision,
                "samples_needed": needed,
            }
        )
    if not outputs:
        return {"metric": None, "decision": "not judged", "passed": None,
                "note": "no floating-point output to compare"}  # fmt: skip
    decisions = {o["decision"] for o in outputs}
    decision = (
        "fail" if "fail" in decisions else "inconclusive" if "inconclusive" in decisions else "pass"
    )
    worst = min(outputs, key=lambda o: o["ci_db"][0])
    needed = [o["samples_needed"] for o in outputs if o["samples_needed"]]
    return {
        "metric": "sqnr_db",
        "samples": len(reference[0]),
        "sqnr_db": worst["sqnr_db"],
        "ci_db": worst["ci_db"],
        "min_sqnr_db": min_db,
        "confidence": confidence,
        "outputs": outputs,
        "decision": decision,
        "passed": {"pass": True, "fail": False}.get(decision),
        "samples_needed": max(needed) if needed else None,
    }


def judge(
    reference: list[np.ndarray],
    candidate: list[np.ndarray],
    labels: np.ndarray | None,
    synthetic: bool,
    max_drop: float,
    confidence: float = CONFIDENCE,
    min_sqnr_db: float = MIN_SQNR_DB,
) -> dict[str, Any]:
    """The gate of a variant whose outputs are `candidate`, the float model's `reference`, on the
    same samples; `labels` when the data has them; `max_drop` in points."""
    if synthetic:
        return {
            "metric": None,
            "decision": "not judged",
            "passed": None,
            "synthetic": True,
            "note": "synthetic inputs: the deviation figures are shown, but noise says nothing "
            "about the task; give calibration or evaluation data for a verdict",
        }
    ref, cand = reference[0], candidate[0]
    # Class scores: the only output, or the first when labels say the task is classification.
    # A first output of a multi-output model may be [batch, 4] boxes (MTCNN's ONet): arg-max
    # agreement of coordinates means nothing, so such models get the SQNR gate over every output.
    classifier = labels is not None or len(reference) == 1
    if classifier and looks_like_class_scores(ref) and ref.shape == cand.shape:
        if labels is not None:
            counts = _table(ref.argmax(1) == labels, cand.argmax(1) == labels)
            n = len(labels)
            drop = (counts[1] - counts[2]) / n

            def paired(m: float) -> tuple[float, float]:
                return _newcombe(*(k * m / n for k in counts), confidence)[1:]

            return _loss_gate("top1", n, drop, paired, max_drop, confidence)
        disagree = int(np.sum(ref.argmax(1) != cand.argmax(1)))
        n = len(ref)

        def one_sample(m: float) -> tuple[float, float]:
            return wilson(disagree * m / n, m, confidence)

        return _loss_gate("top1_agreement", n, disagree / n, one_sample, max_drop, confidence)
    return _sqnr_gate(reference, candidate, min_sqnr_db, confidence)
