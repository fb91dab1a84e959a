"""Batched fine-tuning augmentation and Cutout on (B, C, H, W) tensors, on any device.

FDFtNet (Jeon et al., IFIP SEC 2020) fine-tunes with Keras' ImageDataGenerator (shift ±2 px with
nearest fill, rotation 0.2, zoom 0.2, horizontal flip) plus Cutout (DeVries & Taylor 2017,
https://arxiv.org/abs/1708.04552) with a random number of holes. Here every random draw comes from
one CPU torch.Generator, so a seed fixes the whole augmentation; the pixels themselves are
computed on x's device in one `grid_sample` and one mask, with no per-image Python loop.

    g = torch.Generator().manual_seed(0)
    x = augment_batch(images_uint8, AugmentConfig(cutout_scale=5), g, cutout=True)  # float [0, 1]
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .images import to_float

__all__ = [
    "AugmentConfig", "random_affine", "degrade", "sample_cutout_boxes", "cutout_mask", "cutout",
    "augment_batch",
]


@dataclass
class AugmentConfig:
    """Fine-tune augmentation (the authors' Keras ImageDataGenerator settings) and Cutout."""

    shift_px: int = 2  # integer shifts in -2..2 px, edges replicated (Keras fill "nearest").
    #   Keras' int width/height_shift_range=2 draws from the OPEN interval (±1); paper: ±2.
    rotation_deg: float = 0.2  # Keras rotation_range is in DEGREES and the authors passed 0.2:
    #   uniform in [-0.2°, 0.2°], nearly a no-op. Kept as what ran.
    zoom: float = 0.2  # scale drawn in [0.8, 1.2], independently for x and y as Keras does
    hflip: bool = True  # horizontal flip with p = 0.5
    cutout_holes: int = 3  # α: holes per image drawn uniformly from 0..α (paper: α = 3)
    cutout_scale: int = 10  # β: hole side = unit·U{1..β} px (paper: 5 for PGGAN, 10 for FF++)
    cutout_unit: int = 4  # hole side granularity in px (paper: 4)
    # "strong" policy (issue #23): per image, each with its probability, after the affine and before Cutout:
    # a colour change (brightness, contrast, saturation factors in 1 ± the value), a Gaussian blur (sigma in
    # px), a JPEG re-encoding (quality). 0: off (the paper's and the flip policies), and no draws are made.
    colour_p: float = 0.0
    colour: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple = (0.3, 1.2)
    jpeg_p: float = 0.0
    jpeg_quality: tuple = (30, 95)
    # "degrade" policy (issue #30): also a down-up resize (shrunk to a side factor in resize_scale, antialiased,
    # then back), before the JPEG: what an upload's pipeline does to a photo
    resize_p: float = 0.0
    resize_scale: tuple = (0.35, 0.9)

    def __post_init__(self):
        if self.shift_px < 0 or not 0 <= self.zoom < 1 or self.rotation_deg < 0:
            raise ValueError(f"need shift_px >= 0, 0 <= zoom < 1, rotation_deg >= 0: {self}")
        if not all(0 <= q <= 1 for q in (self.colour_p, self.blur_p, self.jpeg_p, self.resize_p)) \
                or not 0 <= self.colour < 1:
            raise ValueError(f"need colour_p, blur_p, jpeg_p, resize_p in [0, 1] and 0 <= colour < 1: {self}")
        if not 0 < self.resize_scale[0] <= self.resize_scale[1] <= 1:
            raise ValueError(f"need 0 < resize_scale lo <= hi <= 1: {self}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1] or not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"need 0 < blur_sigma lo <= hi and 1 <= jpeg_quality lo <= hi <= 100: {self}")
        if self.cutout_holes < 0 or self.cutout_scale < 1 or self.cutout_unit < 1:
            raise ValueError(f"need cutout_holes >= 0, cutout_scale/unit >= 1: {self}")


def _uniform(n: int, bound: float, g: torch.Generator) -> torch.Tensor:
    """(n,) float64 uniform in [-bound, bound]."""
    return (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * bound


def random_affine(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """One random shift/rotation/zoom per sample, then a random horizontal flip (p = 0.5).

    x: (B, C, H, W) float, or uint8 (scaled to [0, 1] first). Keras' order is kept:
    input = R·(Z·out + t) about the image centre, flip applied last. Sampling is bilinear with
    padding_mode="border", i.e. edge replication, which is Keras' fill_mode="nearest". Pure
    integer shifts land on pixel centres and stay exact.
    The same number of draws is made whatever the config, so toggling one option does not
    reshuffle the others. `generator` is a CPU generator; parameters are moved to x.device.
    """
    x = to_float(x)  # uint8 -> [0, 1]; grid_sample needs floats
    B, C, H, W = x.shape
    g = generator
    angle = _uniform(B, cfg.rotation_deg, g) * (math.pi / 180)  # (B,) radians
    zx, zy = 1 + _uniform(B, cfg.zoom, g), 1 + _uniform(B, cfg.zoom, g)  # (B,) each
    k = 2 * cfg.shift_px + 1
    tx = torch.randint(0, k, (B,), generator=g).double() - cfg.shift_px  # (B,) px
    ty = torch.randint(0, k, (B,), generator=g).double() - cfg.shift_px
    flip = torch.rand(B, generator=g) < 0.5  # (B,) bool
    if cfg.shift_px or cfg.rotation_deg or cfg.zoom:
        cos, sin = torch.cos(angle), torch.sin(angle)
        # pixel-space matrix about the centre: [[cos, -sin], [sin, cos]] @ diag(zx, zy)
        m = torch.stack([torch.stack([cos * zx, -sin * zy], -1),
                         torch.stack([sin * zx, cos * zy], -1)], 1)  # (B, 2, 2)
        t = torch.stack([cos * tx - sin * ty, sin * tx + cos * ty], -1)  # (B, 2) = R·t, px
        # to affine_grid's normalised coords (align_corners=False): p_norm = D·p_px,
        # D = diag(2/W, 2/H), so theta = [D·M·D⁻¹ | D·t]
        d = torch.tensor([2.0 / W, 2.0 / H], dtype=torch.float64)
        dmd = m * d[None, :, None] / d[None, None, :]  # (B, 2, 2)
        theta = torch.cat([dmd, (t * d)[:, :, None]], 2)  # (B, 2, 3)
        theta = theta.to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)  # (B, H, W, 2)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.hflip:
        flip = flip.to(x.device)[:, None, None, None]  # (B, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    return x


def sample_cutout_boxes(B: int, H: int, W: int, holes: int, scale: int, unit: int = 4,
                        generator: torch.Generator | None = None, clip: bool = True
                        ) -> torch.Tensor:
    """Cutout boxes (B, holes, 4) int64 as half-open (y0, x0, y1, x1); unused holes are all 0.

    Per image: the number of holes n ~ U{0..holes}; hole j < n is a square of side unit·U{1..scale}
    centred at a pixel drawn uniformly over the image. clip=True clips boxes to the image (the
    centre is inside, so a used hole is never empty); clip=False returns them unclipped.
    """
    g = generator
    n = torch.randint(0, holes + 1, (B,), generator=g)  # (B,) holes used per image
    side = unit * torch.randint(1, scale + 1, (B, holes), generator=g)  # (B, holes) px
    cy = torch.randint(0, H, (B, holes), generator=g)
    cx = torch.randint(0, W, (B, holes), generator=g)
    y0, x0 = cy - side // 2, cx - side // 2
    y1, x1 = y0 + side, x0 + side
    if clip:
        y0, y1 = y0.clamp(0, H), y1.clamp(0, H)
        x0, x1 = x0.clamp(0, W), x1.clamp(0, W)
    boxes = torch.stack([y0, x0, y1, x1], -1)  # (B, holes, 4)
    used = torch.arange(holes)[None, :] < n[:, None]  # (B, holes)
    return boxes * used[..., None]


def cutout_mask(boxes: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, holes, 4) boxes -> (B, H, W) bool, True inside any hole."""
    ys = torch.arange(H, device=boxes.device)  # (H,)
    xs = torch.arange(W, device=boxes.device)  # (W,)
    y0, x0, y1, x1 = (boxes[..., i, None] for i in range(4))  # each (B, holes, 1)
    rows = (ys >= y0) & (ys < y1)  # (B, holes, H)
    cols = (xs >= x0) & (xs < x1)  # (B, holes, W)
    return (rows[..., :, None] & cols[..., None, :]).any(1)  # (B, holes, H, W) -> (B, H, W)


def cutout(x: torch.Tensor, holes: int, scale: int, unit: int = 4,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero 0..`holes` random squares (side unit·U{1..scale}) per image of x (B, C, H, W)."""
    if holes <= 0:
        return x
    B, C, H, W = x.shape
    boxes = sample_cutout_boxes(B, H, W, holes, scale, unit, generator).to(x.device)
    mask = cutout_mask(boxes, H, W)  # (B, H, W)
    return x.masked_fill(mask[:, None], 0)  # broadcast over C


def degrade(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """The "strong" and "degrade" policies' changes on float [0, 1] x (B, C, H, W), per image: colour
    (p = colour_p), Gaussian blur (p = blur_p), a down-up resize (p = resize_p), JPEG re-encoding (p = jpeg_p), in
    that order; torchvision's functional ops, one image at a time (each its own factors), JPEG on the CPU. With
    every p = 0 it returns x and draws nothing; the resize's draws are made only when resize_p > 0."""
    if not (cfg.colour_p or cfg.blur_p or cfg.jpeg_p or cfg.resize_p):
        return x
    import torchvision.transforms.v2.functional as TF
    g, B = generator, x.shape[0]
    u = torch.rand(B, 3, generator=g)  # which changes each image gets
    factors = 1 + (torch.rand(B, 3, generator=g) * 2 - 1) * cfg.colour  # brightness, contrast, saturation
    lo, hi = cfg.blur_sigma
    sigma = lo + torch.rand(B, generator=g) * (hi - lo)
    quality = torch.randint(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1, (B,), generator=g)
    if cfg.resize_p:
        u_resize = torch.rand(B, generator=g)
        lo, hi = cfg.resize_scale
        scale = lo + torch.rand(B, generator=g) * (hi - lo)
    H, W = x.shape[-2:]
    out = []
    for i in range(B):
        im = x[i]
        if u[i, 0] < cfg.colour_p:
            b, c, s = factors[i].tolist()
            im = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(im, b), c), s)
        if u[i, 1] < cfg.blur_p:
            sd = float(sigma[i])
            k = 2 * math.ceil(3 * sd) + 1  # the kernel covers ±3 sigma
            im = TF.gaussian_blur(im, [k, k], [sd, sd])
        if cfg.resize_p and u_resize[i] < cfg.resize_p:
            f = float(scale[i])
            small = F.interpolate(im[None], size=(max(8, round(H * f)), max(8, round(W * f))), mode="bilinear",
                                  align_corners=False, antialias=True)
            im = F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)[0].clamp(0, 1)
        if u[i, 2] < cfg.jpeg_p:
            q = TF.jpeg((im.clamp(0, 1) * 255).round().to(torch.uint8).cpu(), int(quality[i]))
            im = q.to(x.device, x.dtype) / 255
        out.append(im)
    return torch.stack(out)


_cutout = cutout  # augment_batch's `cutout: bool` argument shadows the function name


def augment_batch(x: torch.Tensor, cfg: AugmentConfig | None, generator: torch.Generator,
                  cutout: bool = False) -> torch.Tensor:
    """uint8 or float (B, C, H, W) -> float32 in [0, 1]: random_affine, then Cutout if asked.

    cfg=None only converts (validation/test: 1/255 scaling). `degrade` (the "strong" policy's colour, blur and
    JPEG; nothing by default) follows the affine. Cutout comes after them, as
    with Keras' preprocessing_function, so holes keep their exact square shape.
    """
    x = to_float(x)
    if cfg is None:
        return x
    x = degrade(random_affine(x, cfg, generator), cfg, generator)
    if cutout:
        x = _cutout(x, cfg.cutout_holes, cfg.cutout_scale, cfg.cutout_unit, generator)
    return x
