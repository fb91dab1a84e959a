"""Robustness sweep: AUROC of detectors on a split under JPEG, blur, down-scaling and noise of rising strength.

Each corruption maps a uint8 batch (N, 3, H, W) to a uint8 batch of the same shape, so a corrupted
image is exactly what a re-encoded or re-scaled upload would decode to. `sweep` scores every model on
the clean set once and on each (kind, level), with the same seeded corruption for every model.

    res = sweep({"baseline": base, "fdftnet": ft}, load_image_folder(ROOT, "test", limit=100))
    res["kinds"]["jpeg"]["levels"]          # [None, 90, 70, 50, 30, 10]   (None = clean)
    res["kinds"]["jpeg"]["auroc"]["fdftnet"]
"""
from __future__ import annotations

import io
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data import ImageSet
from .inference import predict_tensor
from .metrics import compute_metrics, jsonable
from .models import crop_size_of

__all__ = ["CORRUPTIONS", "LEVELS", "LABELS", "corrupt", "jpeg", "blur", "downscale", "noise", "sweep"]


def jpeg(x: torch.Tensor, quality: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Re-encode each image as JPEG at `quality` (1-95) and decode it again."""
    out = torch.empty_like(x)
    for i, img in enumerate(x.permute(0, 2, 3, 1).numpy()):  # (H, W, 3) each
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=int(quality))
        out[i] = torch.from_numpy(np.array(Image.open(buf).convert("RGB"))).permute(2, 0, 1)
    return out


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return k / k.sum()  # (2r+1,)


def blur(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Separable Gaussian blur with standard deviation `sigma` px (reflect padding)."""
    if sigma <= 0:
        return x.clone()
    B, C, H, W = x.shape
    k = _gaussian_kernel(sigma)
    r = len(k) // 2
    y = x.float().reshape(B * C, 1, H, W)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate" if r >= W else "reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate" if r >= H else "reflect"), k.view(1, 1, -1, 1))
    return y.reshape(B, C, H, W).round().clamp(0, 255).to(torch.uint8)


def downscale(x: torch.Tensor, factor: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shrink by `factor` (antialiased bilinear), then scale back up to the original size."""
    if factor <= 1:
        return x.clone()
    B, C, H, W = x.shape
    small = F.interpolate(x.float(), size=(max(1, round(H / factor)), max(1, round(W / factor))),
                          mode="bilinear", antialias=True, align_corners=False)
    y = F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


def noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add Gaussian noise of `std` (in 0-255 pixel units), drawn from `generator`."""
    n = torch.randn(x.shape, generator=generator) * std
    return (x.float() + n).round().clamp(0, 255).to(torch.uint8)


CORRUPTIONS: dict[str, Callable] = {"jpeg": jpeg, "blur": blur, "downscale": downscale, "noise": noise}
LEVELS = {  # rising strength; the clean set is always scored too
    "jpeg": [90, 70, 50, 30, 10],  # JPEG quality
    "blur": [0.5, 1.0, 1.5, 2.0, 3.0],  # Gaussian sigma, px
    "downscale": [1.5, 2.0, 3.0, 4.0],  # shrink factor
    "noise": [2.0, 5.0, 10.0, 20.0, 40.0],  # Gaussian std, 0-255 units
}
LABELS = {"jpeg": "JPEG quality", "blur": "Gaussian blur sigma (px)", "downscale": "down-scaling factor",
          "noise": "Gaussian noise std (0-255)"}


def corrupt(x: torch.Tensor, kind: str, level: float, seed: int = 0) -> torch.Tensor:
    """Apply CORRUPTIONS[kind] at `level` to a uint8 (N, 3, H, W) batch, reproducibly for `seed`."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; choose from {', '.join(CORRUPTIONS)}")
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"expected a uint8 (N, 3, H, W) batch, got {x.dtype} {tuple(x.shape)}")
    return CORRUPTIONS[kind](x.cpu(), level, torch.Generator().manual_seed(seed))


def at_crop_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> (N, 3, size, size) uint8 (antialiased bilinear; unchanged when already that size): a
    model scores the images at its own crop size, as it would crop them from a photo."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = [F.interpolate(images[i:i + 256].float(), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < images.shape[-1]).round_().clamp_(0, 255).to(torch.uint8)
           for i in range(0, len(images), 256)]
    return torch.cat(out)


def _score(model, images: torch.Tensor, labels: np.ndarray, batch_size: int) -> tuple[float, float]:
    p = predict_tensor(model, at_crop_size(images, crop_size_of(model)), batch_size=batch_size)
    m = compute_metrics(labels, p, threshold=float(getattr(model, "threshold", torch.tensor(0.5))))
    return m["auroc"], m["acc"]


def sweep(models: dict, data: ImageSet, kinds: list[str] | None = None, levels: dict | None = None,
          seed: int = 0, batch_size: int = 256, callback: Callable[[int, int], None] | None = None) -> dict:
    """AUROC and ACC (at each model's threshold) of every model, clean and under each corruption level.

    Args:
        models: name -> model with a `threshold` buffer (FDFtNet, BaselineDetector).
        data: a labelled ImageSet with both classes, at least as large as the largest model's crop size: the
            corruptions act on these images, then each model scores them resized to its own crop size.
        kinds: corruption names (default: all of CORRUPTIONS).
        levels: kind -> list of strengths (default: LEVELS).
        callback: called as callback(done, total) after each scored (kind, level).
    Returns:
        {"n": N, "counts": {...}, "kinds": {kind: {"label", "levels": [None, *levels],
        "auroc": {name: [...]}, "acc": {name: [...]}}}} with None for NaN; levels[0] None = clean.
    """
    if not models:
        raise ValueError("sweep needs at least one model")
    counts = data.counts()
    if min(counts.values()) == 0:
        raise ValueError(f"sweep needs real and fake images, got {counts}")
    kinds = list(kinds or CORRUPTIONS)
    unknown = [k for k in kinds if k not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption {unknown[0]!r}; choose from {', '.join(CORRUPTIONS)}")
    levels = {k: list((levels or {}).get(k, LEVELS.get(k, []))) for k in kinds}
    y = data.labels.numpy()
    total = 1 + sum(len(v) for v in levels.values())
    clean = {name: _score(m, data.images, y, batch_size) for name, m in models.items()}
    if callback:
        callback(1, total)
    done = 1
    out = {"n": len(data), "counts": counts, "kinds": {}}
    for kind in kinds:
        auroc = {name: [clean[name][0]] for name in models}
        acc = {name: [clean[name][1]] for name in models}
        for level in levels[kind]:
            x = corrupt(data.images, kind, level, seed)
            for name, m in models.items():
                a, c = _score(m, x, y, batch_size)
                auroc[name].append(a)
                acc[name].append(c)
            done += 1
            if callback:
                callback(done, total)
        out["kinds"][kind] = {"label": LABELS.get(kind, kind), "levels": [None, *levels[kind]],
                              "auroc": auroc, "acc": acc}
    return jsonable(out)
