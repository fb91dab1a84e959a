"""Self-blended pseudo-fakes: train a fake-face detector from real faces only.

Self-Blended Images (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022,
https://arxiv.org/abs/2204.08376) blend a face with a slightly altered copy of itself through a soft face
mask. The result has no identity change, only what a face swap leaves behind: a blending boundary, a colour
and sharpness mismatch between the inner face and its surroundings, a small misalignment. A classifier
trained on reals vs such self-blends learns those traces, and the paper reports it carries over to real
face swaps it never saw. This is our own implementation from the paper's description (their code is
research-only licensed; none of it is used), written as batched torch ops for 64x64 face crops:

1. source-target generator: one copy of the face (the source or the target, with p = 0.5 each) gets a
   colour change (hue, saturation, per-channel shift, brightness, contrast) and a quality change (Gaussian
   blur, unsharp-mask sharpening, or a down- and up-sampling); the source is then resized (per axis) and
   translated by a few per cent;
2. mask generator: an ellipse fitted to the aligned crop (our crops are face-centred and tight, see
   fdftnet/faces.py FRAMING) or to 5 landmarks when given, jittered, elastically deformed by a smooth
   random displacement field, its edge blurred by a Gaussian of random width, scaled by a blend ratio r
   drawn from {0.25, 0.5, 0.75, 1, 1, 1} (the paper's);
3. blend: fake = source * mask + target * (1 - mask).

Every random draw comes from one CPU torch.Generator (as in augment.py), so a seed fixes the output; the
pixels are computed on the input's device.

    g = torch.Generator().manual_seed(0)
    fakes = self_blend(reals_uint8, SelfBlendConfig(), g)            # (B, 3, 64, 64) float in [0, 1]
    fakes, masks = self_blend(reals, generator=g, return_mask=True)  # masks (B, 1, 64, 64) in [0, 1]
    shown = self_blend_arrays([crop1, crop2], n=8, seed=0)           # 8 uint8 (64, 64, 3) arrays
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .images import to_float
from .loader import FAKE, REAL, ImageSet, epoch_seed

__all__ = [
    "SelfBlendConfig", "self_blend", "face_mask", "self_blend_arrays", "pseudo_fake_set",
    "PseudoFakeBatches", "PSEUDO_FAKE_KINDS",
]

PSEUDO_FAKE_KINDS = ("self-blend",)  # TrainConfig.pseudo_fakes values (None: none)


@dataclass
class SelfBlendConfig:
    """How pseudo-fakes are made. Fractions are of the image side; JSON-able (asdict / from_dict)."""

    # --- source-target generator: colour and quality change of one copy
    hue_deg: float = 8.0  # hue rotation about the grey axis, uniform in ±hue_deg degrees
    saturation: float = 0.2  # saturation scaled by U[1 - s, 1 + s]
    rgb_shift: float = 0.06  # each channel shifted by U[-v, v] (the paper's RGB shift of ±20/255 ≈ 0.08)
    brightness: float = 0.08  # added U[-v, v]
    contrast: float = 0.15  # about the image mean, scaled by U[1 - v, 1 + v]
    blur_sigma: tuple[float, float] = (0.4, 1.0)  # px, the "blur" quality change
    sharpen: tuple[float, float] = (0.3, 1.0)  # unsharp-mask amount, the "sharpen" quality change
    downscale: tuple[float, float] = (0.6, 0.9)  # side factor of the "down-up" quality change (one per batch);
    #   mild: a 64 px crop has little detail to lose, and an obvious blur is an easy, narrow cue
    # --- source geometry (then blended onto the untouched-geometry target)
    scale: float = 0.05  # source resized by U[1 - v, 1 + v] per axis, about the centre
    shift: float = 0.03  # and translated by U[-v, v] per axis
    # --- mask: an ellipse on the aligned crop
    centre: tuple[float, float] = (0.5, 0.54)  # (x, y): our crops are tight, the face a little below the middle
    radii: tuple[float, float] = (0.38, 0.44)  # (x, y) half-axes: cheek to cheek, brows to chin
    jitter: float = 0.03  # centre and half-axes moved by U[-v, v]
    angle_deg: float = 8.0  # ellipse rotated by U[-v, v]
    deform: float = 0.04  # elastic deformation: the boundary moved by up to this (smooth random field)
    deform_grid: int = 4  # control points per side of that field (4: a few bumps around the face)
    edge_sigma: tuple[float, float] = (1.0, 2.5)  # px, the Gaussian that softens the mask edge
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # r, the mask's peak (the paper's)
    # --- landmarks (MTCNN order: left eye, right eye, nose, left mouth corner, right mouth corner)
    landmark_radii: tuple[float, float] = (1.15, 1.7)  # half-axes in eye distances / eye-to-mouth distances

    def __post_init__(self):
        for name in ("blur_sigma", "sharpen", "downscale", "centre", "radii", "edge_sigma", "blend_ratios",
                     "landmark_radii"):
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))
        lo_hi = ("blur_sigma", "sharpen", "downscale", "edge_sigma")
        if any(len(getattr(self, n)) != 2 or getattr(self, n)[0] > getattr(self, n)[1] for n in lo_hi):
            raise ValueError(f"{', '.join(lo_hi)} must each be (low, high) with low <= high")
        if not 0 < self.downscale[0] <= self.downscale[1] <= 1:
            raise ValueError(f"downscale must lie in (0, 1], got {self.downscale}")
        if not self.blend_ratios or not all(0 < r <= 1 for r in self.blend_ratios):
            raise ValueError(f"blend_ratios must be in (0, 1], got {self.blend_ratios}")
        if min(self.radii) <= 0 or self.deform_grid < 2 or self.edge_sigma[0] < 0:
            raise ValueError("radii must be > 0, deform_grid >= 2, edge_sigma >= 0")
        for name in ("hue_deg", "saturation", "rgb_shift", "brightness", "contrast", "scale", "shift", "jitter",
                     "angle_deg", "deform"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "SelfBlendConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d or {}) - names
        if unknown:
            raise ValueError(f"unknown self-blend settings: {', '.join(sorted(unknown))}")
        return cls(**(d or {}))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# ----------------------------------------------------------------------------------------------
# random draws (all on the CPU generator, so a seed fixes everything whatever the device)


def _u(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    """(n,) float32 uniform in [lo, hi]."""
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _pm(g: torch.Generator, shape, v: float) -> torch.Tensor:
    """float32 uniform in [-v, v] of `shape`."""
    return (torch.rand(shape, generator=g) * 2 - 1) * v


# ----------------------------------------------------------------------------------------------
# source-target generator


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of x (B, C, H, W) with its own Gaussian sigma (B,) px, reflect-padded; sigma 0 = copy."""
    B, C, H, W = x.shape
    radius = max(1, int(math.ceil(3 * float(sigma.max())))) if len(sigma) else 1
    radius = min(radius, (min(H, W) - 1) // 2)  # reflect padding needs pad < side
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)  # (k,)
    s = sigma.to(x.device, x.dtype).clamp_min(1e-3)[:, None]  # (B, 1)
    k = torch.exp(-0.5 * (t[None] / s) ** 2)  # (B, k)
    k = k / k.sum(1, keepdim=True)
    k = k.repeat_interleave(C, 0)  # (B*C, k): one kernel per image, shared by its channels
    y = F.pad(x.reshape(1, B * C, H, W), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=B * C)  # rows: (1, B*C, H + 2r, W)
    y = F.conv2d(y, k[:, None, :, None], groups=B * C)  # columns: (1, B*C, H, W)
    return y.reshape(B, C, H, W)


def _colour(x: torch.Tensor, cfg: SelfBlendConfig, g: torch.Generator) -> torch.Tensor:
    """Hue rotation, saturation, per-channel shift, brightness and contrast, one draw per image."""
    B = x.shape[0]
    theta = _pm(g, B, cfg.hue_deg) * (math.pi / 180)  # (B,)
    sat = 1 + _pm(g, B, cfg.saturation)
    shift = _pm(g, (B, 3), cfg.rgb_shift)
    bright = _pm(g, B, cfg.brightness)
    contrast = 1 + _pm(g, B, cfg.contrast)
    # hue: rotation by theta about the grey axis n = (1, 1, 1)/√3 (Rodrigues), then saturation about grey:
    # M = grey + sat * (R - grey), grey = n nᵀ; both linear in RGB, so one (B, 3, 3) matrix per image
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]  # (B, 1, 1)
    grey = torch.full((3, 3), 1 / 3)
    cross = torch.tensor([[0.0, -1, 1], [1, 0, -1], [-1, 1, 0]]) / math.sqrt(3)  # [n]x
    rot = cos * torch.eye(3) + sin * cross + (1 - cos) * grey  # (B, 3, 3)
    m = grey + sat[:, None, None] * (rot - grey)
    m, shift = m.to(x.device, x.dtype), shift.to(x.device, x.dtype)
    y = torch.einsum("bij,bjhw->bihw", m, x) + shift[:, :, None, None]  # (B, 3, H, W)
    mean = y.mean((1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    c, b = contrast.to(x)[:, None, None, None], bright.to(x)[:, None, None, None]
    return ((y - mean) * c + mean + b).clamp(0, 1)


def _quality(x: torch.Tensor, cfg: SelfBlendConfig, g: torch.Generator) -> torch.Tensor:
    """Per image one of: Gaussian blur, unsharp-mask sharpening, down- and up-sampling (the factor is one per
    batch: F.interpolate takes one size)."""
    B, C, H, W = x.shape
    kind = torch.randint(0, 3, (B,), generator=g)  # 0 blur, 1 sharpen, 2 down-up
    sigma = _u(g, B, *cfg.blur_sigma)
    amount = _u(g, B, *cfg.sharpen).to(x)[:, None, None, None]
    factor = float(_u(g, 1, *cfg.downscale))
    blurred = _gaussian_blur(x, sigma)
    sharp = (x + amount * (x - _gaussian_blur(x, torch.ones(B)))).clamp(0, 1)
    small = (max(4, round(H * factor)), max(4, round(W * factor)))
    down_up = F.interpolate(F.interpolate(x, size=small, mode="bilinear", align_corners=False, antialias=True),
                            size=(H, W), mode="bilinear", align_corners=False)
    kind = kind.to(x.device)[:, None, None, None]  # (B, 1, 1, 1)
    return torch.where(kind == 0, blurred, torch.where(kind == 1, sharp, down_up))


def _resize_translate(x: torch.Tensor, cfg: SelfBlendConfig, g: torch.Generator) -> torch.Tensor:
    """Resize each image about its centre by its own per-axis factor and translate it; edges replicated."""
    B, C, H, W = x.shape
    s = 1 + _pm(g, (B, 2), cfg.scale)  # (B, 2): x, y zoom
    t = _pm(g, (B, 2), cfg.shift) * 2  # (B, 2): in affine_grid's [-1, 1] units (side = 2)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = 1 / s[:, 0], 1 / s[:, 1]  # output -> input coordinates
    theta[:, :, 2] = -t / s
    grid = F.affine_grid(theta.to(x.device, x.dtype), [B, C, H, W], align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ----------------------------------------------------------------------------------------------
# mask generator


def _ellipse_params(B: int, H: int, W: int, cfg: SelfBlendConfig, g: torch.Generator,
                    landmarks: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """(cx, cy, rx, ry, angle) per image, in fractions of the side (angle in radians), jittered."""
    if landmarks is None:
        cx, cy = torch.full((B,), cfg.centre[0]), torch.full((B,), cfg.centre[1])
        rx, ry = torch.full((B,), cfg.radii[0]), torch.full((B,), cfg.radii[1])
        angle = torch.zeros(B)
    else:
        p = torch.as_tensor(landmarks, dtype=torch.float32).cpu().reshape(B, 5, 2)
        p = p / torch.tensor([W, H], dtype=torch.float32)  # px -> fractions
        eyes, mouth = p[:, :2].mean(1), p[:, 3:].mean(1)  # (B, 2) each
        d_eye = (p[:, 1] - p[:, 0]).norm(dim=1).clamp_min(1e-3)  # (B,)
        d_em = (mouth - eyes).norm(dim=1).clamp_min(1e-3)
        cx, cy = ((eyes + mouth) / 2).unbind(1)
        rx, ry = cfg.landmark_radii[0] * d_eye, cfg.landmark_radii[1] * d_em
        angle = torch.atan2(p[:, 1, 1] - p[:, 0, 1], p[:, 1, 0] - p[:, 0, 0])  # the eye line's tilt
    cx, cy = cx + _pm(g, B, cfg.jitter), cy + _pm(g, B, cfg.jitter)
    rx, ry = rx + _pm(g, B, cfg.jitter), ry + _pm(g, B, cfg.jitter)
    angle = angle + _pm(g, B, cfg.angle_deg) * (math.pi / 180)
    return cx, cy, rx, ry, angle


def face_mask(B: int, H: int, W: int, cfg: SelfBlendConfig | None = None, generator: torch.Generator | None = None,
              landmarks: torch.Tensor | np.ndarray | None = None, device: str | torch.device = "cpu"
              ) -> torch.Tensor:
    """(B, 1, H, W) soft face masks in [0, 1]: a jittered, deformed ellipse with a blurred edge, times r.

    landmarks: optional (B, 5, 2) (x, y) px in MTCNN's order; else the ellipse fitted to the aligned crop.
    The ellipse is shrunk where needed to stay one blur sigma + 1 px inside the border (deformed, it may
    touch it); the corners stay 0.
    """
    cfg = cfg or SelfBlendConfig()
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    cx, cy, rx, ry, angle = _ellipse_params(B, H, W, cfg, g, landmarks)
    sigma = _u(g, B, *cfg.edge_sigma)  # (B,) px
    ratio = torch.tensor(cfg.blend_ratios)[torch.randint(0, len(cfg.blend_ratios), (B,), generator=g)]
    field = _pm(g, (B, 2, cfg.deform_grid, cfg.deform_grid), cfg.deform)  # (B, 2, k, k) boundary offsets
    # keep the ellipse inside the image: its extent along x/y is sqrt((r_a cos)^2 + (r_b sin)^2) per axis, kept
    # one blur sigma + 1 px from the border. Our crops are tight (the face fills them), so a stricter margin would
    # shrink the mask to the nose and eyes; the deformation may still push the boundary to the frame, where the
    # mask is cut off, as a swap's blend region is in a tight crop.
    margin_x = (sigma + 1) / W
    margin_y = (sigma + 1) / H
    cx, cy = cx.clamp(0.3, 0.7), cy.clamp(0.3, 0.7)
    room_x = (torch.minimum(cx, 1 - cx) - margin_x).clamp_min(0.05)
    room_y = (torch.minimum(cy, 1 - cy) - margin_y).clamp_min(0.05)
    ext_x = torch.sqrt((rx * torch.cos(angle)) ** 2 + (ry * torch.sin(angle)) ** 2)
    ext_y = torch.sqrt((rx * torch.sin(angle)) ** 2 + (ry * torch.cos(angle)) ** 2)
    shrink = torch.minimum(torch.ones(B), torch.minimum(room_x / ext_x, room_y / ext_y))  # (B,)
    rx, ry = (rx * shrink).clamp_min(0.05), (ry * shrink).clamp_min(0.05)
    dev = torch.device(device)
    ys = (torch.arange(H, device=dev, dtype=torch.float32) + 0.5) / H  # pixel centres, fractions
    xs = (torch.arange(W, device=dev, dtype=torch.float32) + 0.5) / W
    field = F.interpolate(field.to(dev), size=(H, W), mode="bicubic", align_corners=True)  # (B, 2, H, W)
    u = xs[None, None, :] + field[:, 0] - cx.to(dev)[:, None, None]  # (B, H, W)
    v = ys[None, :, None] + field[:, 1] - cy.to(dev)[:, None, None]
    cos, sin = torch.cos(angle).to(dev)[:, None, None], torch.sin(angle).to(dev)[:, None, None]
    a, b = cos * u + sin * v, -sin * u + cos * v  # into the ellipse's own axes
    inside = (a / rx.to(dev)[:, None, None]) ** 2 + (b / ry.to(dev)[:, None, None]) ** 2 <= 1  # (B, H, W)
    m = _gaussian_blur(inside[:, None].float(), sigma)  # (B, 1, H, W) soft edge
    return (m * ratio.to(dev)[:, None, None, None]).clamp(0, 1)


# ----------------------------------------------------------------------------------------------
# blend


def self_blend(x: torch.Tensor, cfg: SelfBlendConfig | None = None, generator: torch.Generator | None = None,
               landmarks: torch.Tensor | np.ndarray | None = None, return_mask: bool = False):
    """Pseudo-fakes of real face crops x (B, 3, H, W), uint8 or float in [0, 1], on any device.

    Returns float32 (B, 3, H, W) in [0, 1] on x's device (and the (B, 1, H, W) masks with return_mask).
    Pixels outside the mask are the target's: the image itself, or its colour/quality-changed copy when the
    source was not the one changed (p = 0.5), so a pseudo-fake is not "the real outside, altered inside" only.
    """
    cfg = cfg or SelfBlendConfig()
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    x = to_float(x)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"self_blend needs (B, 3, H, W) images, got {tuple(x.shape)}")
    B, C, H, W = x.shape
    changed = _quality(_colour(x, cfg, g), cfg, g)
    on_source = (torch.rand(B, generator=g) < 0.5).to(x.device)[:, None, None, None]  # (B, 1, 1, 1)
    source = torch.where(on_source, changed, x)
    target = torch.where(on_source, x, changed)
    source = _resize_translate(source, cfg, g)
    mask = face_mask(B, H, W, cfg, g, landmarks, x.device).to(x.dtype)  # (B, 1, H, W)
    out = (source * mask + target * (1 - mask)).clamp(0, 1)
    return (out, mask) if return_mask else out


def self_blend_arrays(images: Sequence[np.ndarray], n: int | None = None, seed: int = 0,
                      cfg: SelfBlendConfig | None = None) -> list[np.ndarray]:
    """`n` pseudo-fakes (uint8 (H, W, 3) arrays, e.g. for display) of a list of same-size real crops, taken
    in turn (n=None: one per image). Deterministic in `seed`."""
    if not len(images):
        raise ValueError("no real images to blend")
    arr = np.stack([np.asarray(a, dtype=np.uint8) for a in images])  # (N, H, W, 3)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) RGB crops of one size, got {arr.shape[1:]}")
    n = len(images) if n is None else n
    x = torch.from_numpy(arr).permute(0, 3, 1, 2)[torch.arange(n) % len(arr)]  # (n, 3, H, W) uint8
    fakes = self_blend(x, cfg, torch.Generator().manual_seed(seed))
    out = (fakes * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (n, H, W, 3)
    return list(out)


def pseudo_fake_set(reals: ImageSet, cfg: SelfBlendConfig | None = None, seed: int = 0) -> ImageSet:
    """`reals` plus one fixed pseudo-fake of each (uint8, as a saved image would be): a validation set for a run
    whose validation split has no fakes. Made once, deterministically, in chunks."""
    idx = torch.nonzero(reals.labels == REAL).flatten()
    if not len(idx):
        raise ValueError("no real images to make pseudo-fakes from")
    g = torch.Generator().manual_seed(seed)
    parts = [(self_blend(reals.images[c], cfg, g) * 255).round().to(torch.uint8) for c in idx.split(256)]
    fakes = torch.cat(parts)
    return ImageSet(torch.cat([reals.images[idx], fakes]),
                    torch.cat([torch.full((len(idx),), REAL), torch.full((len(idx),), FAKE)]),
                    [reals.paths[i] for i in idx.tolist()] + [f"self-blend:{reals.paths[i]}" for i in idx.tolist()])


# ----------------------------------------------------------------------------------------------
# training batches


def _as_saved(x: torch.Tensor) -> torch.Tensor:
    """A batch on the 1/255 grid of 8-bit images, as saved images are. Every image of a pseudo-fake batch goes
    through it (reals resampled by a zoom are off the grid, fresh blends too): were one class on the grid and the
    other off it, that alone would tell them apart, a cue no real fake carries."""
    return (x * 255).round() / 255


class PseudoFakeBatches:
    """Wraps a batch iterator (fdftnet.data.Batches or StreamBatches) and adds pseudo-fakes to its batches.

    reals_only: any real fakes are dropped and each batch of B reals becomes 2B images, the reals and one
    self-blend of each (the pairing the paper trains with); ratio is ignored.
    Otherwise: round(ratio * F) of a batch's F fakes (rounded at random, so the mean is exact) are replaced by
    self-blends of reals drawn from the same batch; the batch keeps its size.
    The blends are made from the batch as augmented (flips, shifts), and the whole batch is then rounded to the
    1/255 grid of 8-bit images (as validation's pseudo-fakes and every test image are). Draws come from a
    generator seeded by (seed, epoch, rank), so a run is reproducible and a resumed epoch is the same epoch.
    """

    def __init__(self, batches, cfg: SelfBlendConfig | None = None, reals_only: bool = True, ratio: float = 0.5,
                 seed: int = 0, rank: int = 0):
        if not 0 <= ratio <= 1:
            raise ValueError(f"pseudo ratio must be in [0, 1], got {ratio}")
        self.batches, self.cfg, self.reals_only, self.ratio = batches, cfg or SelfBlendConfig(), reals_only, ratio
        self.seed, self.rank, self.epoch = seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed + 7919, self.epoch) + 1_000_003 * self.rank)
        self.epoch += 1
        for x, y in self.batches:
            real = y == REAL  # (B,)
            if self.reals_only:
                xr = x[real]
                if not len(xr):
                    continue
                fakes = self_blend(xr, self.cfg, g).to(x.dtype)
                yield _as_saved(torch.cat([xr, fakes])), torch.cat([y[real], torch.full_like(y[real], FAKE)])
                continue
            fake_idx = torch.nonzero(~real).flatten()
            real_idx = torch.nonzero(real).flatten()
            want = self.ratio * len(fake_idx)
            k = int(want) + int(torch.rand(1, generator=g).item() < want - int(want))
            if k and len(real_idx):
                pick = torch.randperm(len(fake_idx), generator=g)[:k].to(fake_idx.device)
                donors = torch.randint(0, len(real_idx), (k,), generator=g).to(real_idx.device)
                x = x.clone()
                x[fake_idx[pick]] = self_blend(x[real_idx[donors]], self.cfg, g).to(x.dtype)
            yield _as_saved(x), y
