"""Calibration of a detector's P(fake) (issue #32): Platt scaling and isotonic maps of the logit margin, their choice
on held-out data, the expected calibration error and reliability bins, and the uncertain band. Pure numpy / torch on
arrays of margins and labels; fdftnet.trust fits them on a checkpoint's validation images.

    a, b = fit_platt(margins, labels); p = calibrated(margins, a, b); ece(p, labels)
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["fit_platt", "fit_isotonic", "choose_method", "calibrated", "ece", "reliability", "choose_band"]


def fit_platt(m: np.ndarray, y: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """(a, b) minimising the log loss of sigmoid(a * m + b) against labels y (1 = fake), with a tiny L2 on (a - 1, b)
    so that a degenerate set (one class, perfectly separated) stays finite."""
    mt, yt = torch.as_tensor(m, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    ab = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ab], lr=0.5, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(ab[0] * mt + ab[1], yt) + 1e-4 * ((ab[0] - 1) ** 2 + ab[1] ** 2)
        loss.backward()
        return loss

    opt.step(closure)
    a, b = (float(v) for v in ab.detach())
    if not (math.isfinite(a) and math.isfinite(b)):
        return 1.0, 0.0
    return a, b


def fit_isotonic(m: np.ndarray, y: np.ndarray, points: int = 200) -> tuple[list, list]:
    """A monotone map of the margin to P(fake) (scikit-learn's IsotonicRegression), kept as at most `points`
    (margin, P) breakpoints for np.interp, clipped to [0.001, 0.999] so no verdict reads as certain."""
    from sklearn.isotonic import IsotonicRegression
    iso = IsotonicRegression(y_min=0.001, y_max=0.999, out_of_bounds="clip").fit(m, y)
    x, p = np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64)
    if len(x) > points:
        keep = np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))
        x, p = x[keep], p[keep]
    return x.tolist(), p.tolist()


def choose_method(m: np.ndarray, y: np.ndarray, seed: int = 0) -> str:
    """"platt" or "isotonic": the one with the lower ECE on half of the held-out data when fitted on the other half
    (both ways, averaged): chosen on validation data only, never on a test split."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(m))
    halves = (idx[: len(m) // 2], idx[len(m) // 2:])
    scores = {"platt": 0.0, "isotonic": 0.0}
    for fit_i, eval_i in (halves, halves[::-1]):
        a, b = fit_platt(m[fit_i], y[fit_i])
        scores["platt"] += ece(calibrated(m[eval_i], a, b), y[eval_i])
        xs, ps = fit_isotonic(m[fit_i], y[fit_i])
        scores["isotonic"] += ece(np.interp(m[eval_i], xs, ps), y[eval_i])
    return min(scores, key=scores.get)


def calibrated(m, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(a * np.asarray(m, dtype=np.float64) + b)))


def ece(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of P(fake) p against labels y: the bin-weighted |mean p - fake rate| (equal-width
    bins of P(fake), the reliability diagram's)."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for k in range(bins):
        sel = idx == k
        if sel.any():
            total += sel.sum() / len(p) * abs(p[sel].mean() - y[sel].mean())
    return float(total)


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """[{"lo", "hi", "n", "mean_p", "fake_rate"}] per equal-width bin of P(fake): the reliability diagram."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for k in range(bins):
        sel = idx == k
        out.append({"lo": k / bins, "hi": (k + 1) / bins, "n": int(sel.sum()),
                    "mean_p": float(p[sel].mean()) if sel.any() else None,
                    "fake_rate": float(y[sel].mean()) if sel.any() else None})
    return out


def choose_band(p: np.ndarray, y: np.ndarray, threshold: float, target: float = 0.9) -> tuple[float, float]:
    """(lo, hi) with lo <= threshold <= hi: hi the lowest P(fake) above which validation faces are fake at least
    `target` of the time, lo the highest below which they are real that often (1.0 / 0.0 when none is)."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.int64)
    hi, lo = 1.0, 0.0
    for t in np.unique(p[p >= threshold]):
        sel = p >= t
        if y[sel].mean() >= target:
            hi = float(t)
            break
    for t in np.unique(p[p <= threshold])[::-1]:
        sel = p <= t
        if (1 - y[sel]).mean() >= target:
            lo = float(t)
            break
    return lo, max(hi, lo)
