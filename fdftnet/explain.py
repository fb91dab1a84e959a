"""Where a detector looked, and what its output means: FTT attention or Grad-CAM maps, overlays, verdicts.

FDFtNet with an FTT shows the attention its first FTT stage pays to each 2x2 patch of the image it reads
(a 32x32 map for the paper's 64-px FTT input).
Other models (baselines, the no-FTT ablation) get Grad-CAM (Selvaraju et al., ICCV 2017,
https://arxiv.org/abs/1610.02391) on the backbone's last feature map, for the fake-vs-real logit margin.
Gradients are taken with `torch.autograd.grad` w.r.t. the feature map only, so no parameter `.grad`
is touched and a shared read-only model can explain images from several threads at once.

    heat, method = heatmap(model, arrays)          # (B, S, S) float in [0, 1] for S x S crops, "FTT attention"
    shown = overlay(arrays[0], heat[0])            # (S, S, 3) uint8
    verdict, confidence = decide(0.93, threshold=0.41)
    bar = colour_scale()                           # the overlays' colour legend, low (left) -> high (right)
    shown = draw_boxes(photo, [(10, 20, 90, 120)], ["1"], [(220, 40, 40)])   # numbered boxes, for display
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .data import to_tensor

__all__ = ["heatmap", "grad_cam", "overlay", "enlarge", "decide", "colour_scale", "draw_boxes", "tag_places"]


def _normalise(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(B, h, w) -> (B, H, W) float32 in [0, 1], per-map min-max (a flat map becomes 0)."""
    maps = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    lo = maps.amin((1, 2), keepdim=True)
    hi = maps.amax((1, 2), keepdim=True)
    return ((maps - lo) / (hi - lo).clamp_min(1e-12)).numpy().astype(np.float32)


def grad_cam(model, x: torch.Tensor) -> torch.Tensor:
    """(B, h, w) Grad-CAM of the fake-minus-real logit on the backbone's feature map, for x (B, 3, H, W) float."""
    model.eval()
    with torch.inference_mode(False), torch.enable_grad():
        prep = getattr(model, "preprocess", None)  # the backbone reads the resized, normalised image
        feats = model.backbone.forward_features(prep(x) if prep is not None else x)
        feats = feats.detach().requires_grad_(True)  # (B, C, h, w)
        if hasattr(model, "head"):  # FDFtNet: MBblockV3 head (+ FTT) then fc
            z = model.head(feats)
            if getattr(model, "ftt", None) is not None:
                z = z + model.ftt(model.ftt_input(x))
            logits = model.fc(z)
        else:  # BaselineDetector: the backbone's own classifier head
            logits = model.backbone.forward_head(feats)
        margin = (logits[:, 1] - logits[:, 0]).sum()
        (grads,) = torch.autograd.grad(margin, feats)  # (B, C, h, w)
    weights = grads.mean((2, 3), keepdim=True)  # (B, C, 1, 1): channel importance
    return F.relu((weights * feats.detach()).sum(1))  # (B, h, w)


def heatmap(model, arrays: np.ndarray) -> tuple[np.ndarray, str]:
    """(B, H, W) float maps in [0, 1] for uint8 images (B, H, W, 3), and the method's name."""
    x = to_tensor(np.asarray(arrays)).to(next(model.parameters()).device)  # (B, 3, H, W) in [0, 1]
    size = tuple(x.shape[-2:])
    attn = model.attention_heatmap(x) if hasattr(model, "attention_heatmap") else None
    if attn is not None:
        return _normalise(attn.detach().cpu(), size), "FTT attention"
    return _normalise(grad_cam(model, x).detach().cpu(), size), "Grad-CAM"


def _jet(t: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> (..., 3) float RGB in [0, 1] (blue -> cyan -> yellow -> red)."""
    return np.clip(1.5 - np.abs(4 * t[..., None] - np.array([3.0, 2.0, 1.0])), 0, 1)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour-mapped (H, W) map in [0, 1] onto an (H, W, 3) uint8 image -> uint8."""
    colour = _jet(np.clip(heat, 0, 1)) * 255
    out = (1 - alpha) * image.astype(np.float32) + alpha * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def colour_scale(width: int = 256, height: int = 12) -> np.ndarray:
    """(height, width, 3) uint8 ramp of the overlay colours: 0 (left, dark blue) -> 1 (right, dark red)."""
    ramp = _jet(np.linspace(0.0, 1.0, width))  # (width, 3)
    return np.repeat(np.rint(ramp * 255).astype(np.uint8)[None], height, axis=0)


def draw_boxes(image: np.ndarray, boxes, labels, colours, max_side: int = 1024) -> np.ndarray:
    """A display copy of an (H, W, 3) uint8 photo, at most `max_side` px, with labelled boxes.

    boxes: (x0, y0, x1, y1) in photo pixels; labels: short texts (face numbers) drawn in a filled tag; colours: an
    RGB tuple per box. Lines and text scale with the shown size. Every box is drawn before any tag, and each tag
    takes the first of its box's corners (above, then inside) where it overlaps no tag already placed, so the
    numbers of overlapping faces in a group photo stay readable (`tag_places`).
    """
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    img = Image.fromarray(image)
    if s < 1.0:
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR, reducing_gap=2.0)
    draw = ImageDraw.Draw(img)
    side = max(img.size)
    line = max(2, round(side / 200))
    font = ImageFont.load_default(size=max(14, round(side / 28)))
    pad = line + 1
    shown = [tuple(float(v) * s for v in box) for box in boxes]
    for box, colour in zip(shown, colours):
        draw.rectangle(box, outline=tuple(colour), width=line)
    sizes = []
    for text in labels:
        l, t, r, b = draw.textbbox((0, 0), str(text), font=font)
        sizes.append((r - l + 2 * pad, b - t + 2 * pad, l, t))
    for (tx, ty), (tw, th, l, t), text, colour in zip(tag_places(shown, [sz[:2] for sz in sizes], img.size),
                                                     sizes, labels, colours):
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=tuple(colour))
        draw.text((tx + pad - l, ty + pad - t), str(text), fill=(255, 255, 255), font=font)
    return np.asarray(img)


def tag_places(boxes, sizes, image_size) -> list[tuple[float, float]]:
    """Top-left corners of one (w, h) tag per box: the first candidate (above the box at its left, then right
    corner; below it; inside its top corners) that stays in the image and overlaps no earlier tag; the least
    overlapping one when every candidate does."""
    W, H = image_size
    placed: list[tuple[float, float, float, float]] = []
    out = []

    def overlap(a, b) -> float:
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    for (x0, y0, x1, y1), (tw, th) in zip(boxes, sizes):
        cands = [(x0, y0 - th), (x1 - tw, y0 - th), (x0, y1), (x1 - tw, y1), (x0, y0), (x1 - tw, y0),
                 (x0, y1 - th), (x1 - tw, y1 - th)]
        cands = [(min(max(0.0, x), max(0.0, W - tw)), min(max(0.0, y), max(0.0, H - th))) for x, y in cands]
        rects = [(x, y, x + tw, y + th) for x, y in cands]
        costs = [sum(overlap(r, p) for p in placed) for r in rects]
        best = next((i for i, c in enumerate(costs) if c == 0), int(np.argmin(costs)))
        placed.append(rects[best])
        out.append(cands[best])
    return out


def enlarge(image: np.ndarray, scale: int = 4) -> np.ndarray:
    """Nearest-neighbour upscaling, so a 64x64 input is seen pixel for pixel on a screen."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def decide(p_fake: float, threshold: float = 0.5) -> tuple[str, float]:
    """("fake" | "real", confidence in [0, 1]): the verdict at `threshold` and how far p is from it.

    Confidence is the distance to the threshold relative to the room on that side, so p = 1 (or 0)
    is 100% and p = threshold is 0%, whatever the calibrated threshold is.
    """
    t = min(max(float(threshold), 1e-6), 1 - 1e-6)
    p = float(p_fake)
    if p >= t:
        return "fake", min(1.0, (p - t) / (1 - t))
    return "real", min(1.0, (t - p) / t)
