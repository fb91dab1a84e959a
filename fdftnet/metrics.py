"""Detection metrics: ACC, AUROC, AP, EER, best-threshold ACC, per-class accuracy and ROC points.

    m = compute_metrics(labels, p_fake, threshold=0.5)   # labels: 0 real, 1 fake
    m["acc"], m["auroc"], m["ap"], m["eer"], m["roc"]["fpr"]

scikit-learn does the curve work; everything returned is a plain JSON-able value.
"""
import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

__all__ = ["compute_metrics", "best_threshold", "confusion", "jsonable", "THRESHOLD_RULE"]

THRESHOLD_RULE = "balanced-acc-midgap"  # best_threshold's rule; training records name it beside their threshold


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).ravel()
    p = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} scores")
    return y, p


def best_threshold(labels, scores) -> tuple[float, float]:
    """(threshold, balanced accuracy) maximising balanced accuracy; predict fake when p >= threshold.

    Every threshold between two neighbouring scores classifies the data the same way, so the best balanced
    accuracy is reached on whole intervals of thresholds. We return the middle of the widest such interval, the
    midpoint taken on the logit scale (the model's own margin), not its top end, the lowest fake score that is
    still called fake: on a small validation set that separates perfectly (a few-shot hold-out), a threshold at
    that edge calls every test fake scored a little lower "real".
    """
    y, p = _as_arrays(labels, scores)
    if len(np.unique(y)) < 2:
        return 0.5, float("nan")
    # thr descends from +inf through every distinct score; thr[i] classifies exactly like any t in (thr[i+1], thr[i]]
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    bal = (tpr + 1 - fpr) / 2
    best = np.flatnonzero(bal >= bal.max() - 1e-12)
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)  # consecutive indices: one interval of thresholds
    z = _logit(np.r_[thr, 0.0])  # the bottom of the last interval: below every score
    i, j = max(((r[0], r[-1]) for r in runs), key=lambda ij: z[ij[0]] - z[ij[1] + 1])
    t = float(1 / (1 + np.exp(-(z[i] + z[j + 1]) / 2)))
    below = thr[j + 1] if j + 1 < len(thr) else -np.inf
    if not below < t <= thr[i]:  # scores within rounding of 0 or 1: keep the interval's top end
        t = float(min(thr[i], 1.0))
    return t, float(bal[i])


def _logit(p: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    p = np.clip(p.astype(np.float64), eps, 1 - eps)  # +inf (roc_curve's first threshold) becomes 1 - eps
    return np.log(p) - np.log1p(-p)


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
