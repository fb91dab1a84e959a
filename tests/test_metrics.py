"""Metrics against cases checkable by hand and against scikit-learn."""
import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from fdftnet.metrics import best_threshold, compute_metrics, jsonable


def test_perfect_and_inverted_scores():
    y = [0, 0, 1, 1]
    m = compute_metrics(y, [0.1, 0.2, 0.8, 0.9])
    assert m["acc"] == 1.0 and m["auroc"] == 1.0 and m["ap"] == 1.0 and m["eer"] == 0.0
    assert m["confusion"] == [[2, 0], [0, 2]] and m["acc_real"] == m["acc_fake"] == 1.0
    inv = compute_metrics(y, [0.9, 0.8, 0.2, 0.1])
    assert inv["acc"] == 0.0 and inv["auroc"] == 0.0


def test_hand_computed_case():
    y = [0, 0, 0, 1, 1, 1]
    p = [0.1, 0.6, 0.3, 0.7, 0.4, 0.9]
    m = compute_metrics(y, p, threshold=0.5)
    # predictions: 0,1,0,1,0,1 -> 4/6 correct; one real called fake, one fake called real
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[2, 1], [1, 2]]
    assert m["acc_real"] == pytest.approx(2 / 3) and m["acc_fake"] == pytest.approx(2 / 3)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p)) == pytest.approx(8 / 9)  # 8 of 9 fake>real pairs
    assert m["eer"] == pytest.approx(1 / 3)
    assert m["acc_best"] >= m["acc"]


def test_best_threshold_separates_shifted_scores():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(500), np.ones(500)]
    p = np.r_[rng.uniform(0.0, 0.7, 500), rng.uniform(0.6, 1.0, 500)]
    t, bal = best_threshold(y, p)
    assert 0.6 <= t <= 0.7 and bal > 0.9
    assert compute_metrics(y, p, threshold=t)["acc"] > compute_metrics(y, p, threshold=0.5)["acc"]


def test_one_class_gives_nan_ranking_metrics_and_strict_json():
    m = compute_metrics([1, 1, 1], [0.9, 0.2, 0.8])
    assert m["acc"] == pytest.approx(2 / 3) and math.isnan(m["auroc"])
    json.dumps(jsonable(m), allow_nan=False)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        compute_metrics([0, 1], [0.1, 0.2, 0.3])


def test_best_threshold_is_mid_gap_on_separable_scores():
    # a few-shot hold-out that separates perfectly: the threshold sits mid-gap (logit scale), not on the lowest fake
    y = np.r_[np.zeros(4), np.ones(4)]
    p = np.array([0.01, 0.05, 0.1, 0.2, 0.8, 0.9, 0.99, 0.999])
    t, bal = best_threshold(y, p)
    assert bal == 1.0
    assert 0.2 < t < 0.8 and t == pytest.approx(0.5)  # logit(0.2) = -logit(0.8)
    y2, p2 = np.r_[np.zeros(2), np.ones(2)], np.array([0.1, 0.3, 0.99, 0.9999])
    t2, _ = best_threshold(y2, p2)
    logit = lambda q: np.log(q / (1 - q))  # noqa: E731
    assert logit(t2) == pytest.approx((logit(0.3) + logit(0.99)) / 2)
    # a fake scored a little below every validation fake is still called fake
    assert compute_metrics([1], [0.75], threshold=t)["acc"] == 1.0


def test_best_threshold_keeps_the_best_balanced_accuracy_and_widest_interval():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(4, 40))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        p = rng.uniform(0, 1, n).round(2)  # ties between scores too
        t, bal = best_threshold(y, p)
        pred = p >= t
        got = (np.mean(pred[y == 1]) + np.mean(~pred[y == 0])) / 2
        assert got == pytest.approx(bal)
        fpr, tpr, _ = roc_curve(y, p)
        assert bal == pytest.approx(((tpr + 1 - fpr) / 2).max())
    # two equally good intervals: the wider one (in logit) wins
    y = np.array([0, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.99])
    t, bal = best_threshold(y, p)
    assert bal == 0.75 and 0.3 < t < 0.99


def test_best_threshold_with_saturated_scores_stays_inside_its_interval():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.0, 1.0 - 1e-13, 1.0, 1.0])
    t, bal = best_threshold(y, p)
    assert bal == 1.0 and 1.0 - 1e-13 < t <= 1.0
