"""The accuracy gate's statistics: intervals that keep their coverage, decisions that follow the
interval (pass / fail / inconclusive with the samples that would decide), synthetic data never
judged, and SQNR for outputs that are not class scores."""

from __future__ import annotations

import numpy as np
import pytest

from workflows import present
from workflows.quantization.gate import judge, paired_difference, per_sample_sqnr, wilson


def _pairs(rng, n: int, only_first: float, only_second: float) -> tuple[np.ndarray, np.ndarray]:
    """Paired 0/1 outcomes: 90 % both right, 5 % both wrong, the given discordant rates."""
    u = rng.random(n)
    first, second = np.ones(n, bool), np.ones(n, bool)
    first[u < only_second] = False
    second[(u >= only_second) & (u < only_second + only_first)] = False
    both_wrong = (u > 0.90) & (u < 0.95)
    first[both_wrong] = second[both_wrong] = False
    return first, second


@pytest.mark.parametrize(
    ("n", "only_first", "only_second"),
    [(200, 0.02, 0.01), (500, 0.01, 0.005), (100, 0.05, 0.05)],
)
def test_paired_interval_keeps_its_coverage(n, only_first, only_second):
    # 600 simulated evaluations: a 95 % interval must hold the true difference in about 95 % of
    # them (Newcombe's is a little conservative with few discordant pairs; measured 0.953-0.977
    # over 2,000 runs). Binomial noise of 600 runs at 95 %: sd 0.9 points.
    rng = np.random.default_rng(1)
    truth = only_first - only_second
    hits = 0
    for _ in range(600):
        first, second = _pairs(rng, n, only_first, only_second)
        _, lower, upper = paired_difference(first, second)
        hits += lower <= truth <= upper
    assert 0.925 <= hits / 600 <= 0.995


def test_wilson_and_paired_figures():
    low, high = wilson(0, 64)
    assert low == 0 and high == pytest.approx(0.0566, abs=1e-4)  # 0 of 64: up to 5.7 %
    first = np.ones(450, bool)
    second = first.copy()
    second[:3] = False  # the variant loses 3 samples the float model had right
    drop, lower, upper = paired_difference(first, second)
    assert drop == pytest.approx(3 / 450)
    assert lower < drop < upper and lower > -0.01 and upper < 0.025
    same = paired_difference(first, first)
    assert same[0] == 0 and same[1] < 0 < same[2]  # no discordant pair is not certainty


def _scores(labels: np.ndarray, classes: int = 10) -> np.ndarray:
    out = np.zeros((len(labels), classes), np.float32)
    out[np.arange(len(labels)), labels] = 1
    return out


def test_decisions_follow_the_interval():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    ref = _scores(y)
    flip = y.copy()
    flip[:4] = (flip[:4] + 1) % 10  # 4 of 2000 flipped: 0.2 points
    g = judge([ref], [_scores(flip)], y, False, 1.0)
    assert g["decision"] == "pass" and g["passed"] is True
    assert g["metric"] == "top1" and g["samples"] == 2000
    assert g["drop_points"] == pytest.approx(0.2) and g["ci_points"][1] <= 1.0

    broken = y.copy()
    broken[:400] = (broken[:400] + 1) % 10  # 20 points
    g = judge([ref], [_scores(broken)], y, False, 1.0)
    assert g["decision"] == "fail" and g["passed"] is False and g["ci_points"][0] > 1.0

    # 1 of 60 flipped, unlabelled: too few samples to tell a 1-point drop either way.
    one = y[:60].copy()
    one[0] = (one[0] + 1) % 10
    g = judge([ref[:60]], [_scores(one)], None, False, 1.0)
    assert g["metric"] == "top1_agreement" and g["decision"] == "inconclusive"
    assert g["passed"] is None and g["samples_needed"] > 60
    # ... and with the samples it asked for (same disagreement rate), it decides.
    n = g["samples_needed"] * 2
    y2 = rng.integers(0, 10, n)
    cand = y2.copy()
    cand[: round(n * g["drop_points"] / 100)] += 1
    g2 = judge([_scores(y2)], [_scores(cand % 10)], None, False, 1.0)
    assert g2["decision"] != "inconclusive"
    assert present.gate(g).startswith("inconclusive (+1.67 pt, CI")
    assert f"~{g['samples_needed']:,} samples to decide" in present.gate(g)


def test_synthetic_data_is_never_judged():
    y = np.arange(100) % 10
    g = judge([_scores(y)], [_scores((y + 1) % 10)], None, True, 1.0)  # every answer differs
    assert g["decision"] == "not judged" and g["passed"] is None and g["synthetic"]
    assert present.gate(g) == "not judged (synthetic)"


def test_outputs_that_are_not_class_scores_use_sqnr():
    rng = np.random.default_rng(0)
    boxes = rng.normal(size=(300, 100, 4)).astype(np.float32)
    close = boxes + rng.normal(scale=0.01, size=boxes.shape).astype(np.float32)  # 40 dB
    noisy = boxes + rng.normal(scale=0.5, size=boxes.shape).astype(np.float32)  # 6 dB
    g = judge([boxes], [close], None, False, 1.0)
    assert g["metric"] == "sqnr_db" and g["decision"] == "pass"
    assert g["sqnr_db"] == pytest.approx(40, abs=0.5)
    assert g["outputs"][0]["cosine_similarity"] > 0.9999
    g = judge([boxes, boxes], [close, noisy], None, False, 1.0)
    assert g["decision"] == "fail" and [o["decision"] for o in g["outputs"]] == ["pass", "fail"]
    assert g["sqnr_db"] == pytest.approx(6, abs=0.5)  # the worst output is reported
    assert present.gate(g).startswith("FAIL (SQNR 6.0 dB")
    exact = per_sample_sqnr(boxes, boxes)
    assert np.all(exact == 100)  # capped, so that means stay finite


def test_a_multi_output_model_whose_first_output_is_boxes_is_not_a_classifier():
    # MTCNN's ONet answers [N, 4] boxes, [N, 10] landmarks and [N, 2] face scores: the boxes
    # look like 4-class scores, but arg-max agreement of coordinates means nothing.
    rng = np.random.default_rng(1)
    outs = [rng.normal(size=(200, k)).astype(np.float32) for k in (4, 10, 2)]
    noisy = [o + rng.normal(scale=0.03, size=o.shape).astype(np.float32) for o in outs]
    g = judge(outs, noisy, None, False, 1.0)
    assert g["metric"] == "sqnr_db" and len(g["outputs"]) == 3
    assert g["sqnr_db"] == pytest.approx(30.5, abs=1.0) and g["decision"] == "pass"
    # A single [N, C] output is class scores; so is the first output when labels are given.
    assert judge(outs[:1], noisy[:1], None, False, 1.0)["metric"] == "top1_agreement"
    labels = outs[0].argmax(1)
    assert judge(outs, noisy, labels, False, 1.0)["metric"] == "top1"


def test_culprit_ranking_leaves_out_infinite_float_activations():
    from workflows.quantization.fallback import median_channel_sqnr

    x = np.ones((4, 3, 5))
    x[0, 0, 0] = -np.inf  # the log of a zero spectrum bin
    y = x + 0.01
    y[0, 0, 0] = -np.inf
    with np.errstate(all="raise"):
        assert median_channel_sqnr([x], [y]) == pytest.approx(40.0, abs=0.01)
        y[1, 1, 1] = np.nan  # a NaN where the float model had a number is the worst error
        assert median_channel_sqnr([x], [y]) == pytest.approx(40.0, abs=0.01)  # median
        y[1, :, 1] = np.nan
        assert median_channel_sqnr([x], [y]) < -200
