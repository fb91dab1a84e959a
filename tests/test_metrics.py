"""Metrics against cases checkable by hand and against scikit-learn."""
import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

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
