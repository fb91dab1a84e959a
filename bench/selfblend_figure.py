"""docs/selfblend.png: 16 real 64x64 face crops beside their self-blended pseudo-fakes, masks and differences.

    python -m bench.selfblend_figure                      # writes docs/selfblend.png
    python -m bench.selfblend_figure --out /tmp/x.png --seed 3

The reals are public-domain: skimage's `data.astronaut()` (NASA's portrait of Eileen Collins), its face found
by fdftnet.faces (MTCNN) and cropped the way the training crops are framed, 16 times with the detection box
moved and scaled a little, every other crop mirrored and its exposure changed, as photos of one face would vary.
No image of the research datasets is used. The pseudo-fakes are fdftnet.data.self_blend with its default
SelfBlendConfig and a seeded generator, as training makes them.
"""
import argparse

import numpy as np
import torch
from PIL import Image, ImageDraw

from fdftnet.data import SelfBlendConfig, self_blend
from fdftnet.faces import crop_face, largest_face

SCALE = 2  # each 64 px tile drawn at 128 px
GAP = 4
LABEL_W = 92


def astronaut_reals(n: int = 16, seed: int = 0) -> np.ndarray:
    """(n, 64, 64, 3) uint8 crops of the astronaut's face, each framed and exposed a little differently."""
    from skimage import data
    photo = data.astronaut()
    face, _ = largest_face(photo)
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = face.box
    w, h = x1 - x0, y1 - y0
    crops = []
    for i in range(n):
        s = 1 + rng.uniform(-0.12, 0.12)  # box scale
        dx, dy = rng.uniform(-0.06, 0.06, 2) * (w, h)  # box shift
        cx, cy = (x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy
        box = (cx - s * w / 2, cy - s * h / 2, cx + s * w / 2, cy + s * h / 2)
        lm = (face.landmarks - [(x0 + x1) / 2, (y0 + y1) / 2]) * s + [cx, cy]
        crop = crop_face(photo, box, lm).astype(np.float32)
        crop = np.clip(crop * rng.uniform(0.8, 1.15), 0, 255)  # exposure
        crops.append((crop[:, ::-1] if i % 2 else crop).astype(np.uint8))
    return np.stack(crops)


def _tile(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img).resize((64 * SCALE, 64 * SCALE), Image.Resampling.NEAREST)


def render(reals: np.ndarray, seed: int = 0) -> Image.Image:
    x = torch.from_numpy(reals).permute(0, 3, 1, 2)  # (N, 3, 64, 64) uint8
    fakes, masks = self_blend(x, SelfBlendConfig(), torch.Generator().manual_seed(seed), return_mask=True)
    diff = ((fakes - x.float() / 255).abs() * 4).clamp(0, 1)  # x4 so that small changes show
    to_u8 = lambda t: (t * 255).round().byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
    rows = [("real", reals), ("self-blend", to_u8(fakes)), ("mask", to_u8(masks.expand(-1, 3, -1, -1))),
            ("|diff| x4", to_u8(diff))]
    per_row, side = 8, 64 * SCALE
    n_rows = len(rows) * ((len(reals) + per_row - 1) // per_row)
    canvas = Image.new("RGB", (LABEL_W + per_row * (side + GAP), n_rows * (side + GAP) + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    r = 0
    for start in range(0, len(reals), per_row):
        for name, imgs in rows:
            y = GAP + r * (side + GAP)
            draw.text((6, y + side // 2 - 6), name, fill="black")
            for j, img in enumerate(imgs[start:start + per_row]):
                canvas.paste(_tile(img), (LABEL_W + j * (side + GAP), y))
            r += 1
    return canvas


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/selfblend.png")
    ap.add_argument("--seed", type=int, default=0, help="the self-blend generator's seed")
    args = ap.parse_args(argv)
    render(astronaut_reals(), args.seed).save(args.out, optimize=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
