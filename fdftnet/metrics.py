"""Detection metrics: ACC, AUROC, AP, EER, best-threshold ACC, per-class accuracy and ROC points.

    m = compute_metrics(labels, p_fake, threshold=0.5)   # labels: 0 real, 1 fake
    m["acc"], m["auroc"], m["ap"], m["eer"], m["roc"]["fpr"]

scikit-learn does the curve work; everything returned is a plain JSON-able value.
"""
import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

__all__ = ["compute_metrics", "best_threshold", "confusion", "jsonable"]


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).ravel()
    p = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} scores")
    return y, p


def best_threshold(labels, scores) -> tuple[float, float]:
    """(threshold, balanced accuracy) maximising balanced accuracy; predict fake when p >= threshold."""
    y, p = _as_arrays(labels, scores)
    if len(np.unique(y)) < 2:
        return 0.5, float("nan")
    fpr, tpr, thr = roc_curve(y, p)
    bal = (tpr + 1 - fpr) / 2
    i = int(np.argmax(bal))
    t = float(min(thr[i], 1.0))  # roc_curve's first threshold is +inf
    return t, float(bal[i])


def confusion(labels, scores, threshold: float = 0.5) -> list[list[int]]:
    """2x2 confusion matrix [[real->real, real->fake], [fake->real, fake->fake]]."""
    y, p = _as_arrays(labels, scores)
    pred = (p >= threshold).astype(np.int64)
    return [[int(((y == t) & (pred == q)).sum()) for q in (0, 1)] for t in (0, 1)]


def compute_metrics(labels, scores, threshold: float = 0.5, roc_points: int = 200) -> dict:
    """All metrics for P(fake) `scores` against 0/1 `labels`.

    Args:
        labels: 0 = real, 1 = fake.
        scores: P(fake) per image.
        threshold: decision threshold for `acc` (the model's calibrated one, or 0.5).
        roc_points: the ROC curve is thinned to at most this many points (for plots and JSON).
    Returns:
        dict with n, n_real, n_fake, acc, auroc, ap, eer, eer_threshold, acc_best, best_threshold,
        acc_real, acc_fake, threshold, confusion, roc {fpr, tpr}. AUROC/AP/EER are NaN with one class.
    """
    y, p = _as_arrays(labels, scores)
    pred = (p >= threshold).astype(np.int64)
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    out = {
        "n": int(y.size), "n_real": n_real, "n_fake": n_fake,
        "threshold": float(threshold),
        "acc": float((pred == y).mean()) if y.size else float("nan"),
        "acc_real": float((pred[y == 0] == 0).mean()) if n_real else float("nan"),
        "acc_fake": float((pred[y == 1] == 1).mean()) if n_fake else float("nan"),
        "confusion": confusion(y, p, threshold),
    }
    if n_real and n_fake:
        fpr, tpr, thr = roc_curve(y, p)
        fnr = 1 - tpr
        i = int(np.nanargmin(np.abs(fnr - fpr)))
        t_best, _ = best_threshold(y, p)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), roc_points)).round().astype(int))
        out.update(
            auroc=float(roc_auc_score(y, p)),
            ap=float(average_precision_score(y, p)),
            eer=float((fpr[i] + fnr[i]) / 2),
            eer_threshold=float(min(thr[i], 1.0)),
            best_threshold=t_best,
            acc_best=float(((p >= t_best).astype(np.int64) == y).mean()),
            roc={"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()},
        )
    else:
        nan = float("nan")
        out.update(auroc=nan, ap=nan, eer=nan, eer_threshold=nan, best_threshold=nan, acc_best=nan,
                   roc={"fpr": [], "tpr": []})
    return out


def jsonable(metrics: dict) -> dict:
    """Replace NaN by None so the dict is strict JSON."""
    def fix(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    return fix(metrics)
