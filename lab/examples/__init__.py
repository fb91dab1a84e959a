"""Detect's one-click examples: public-domain material only, each with its source and licence.

All of them are made from one photo, scikit-image's `data.astronaut()` (Eileen Collins, NASA Great Images,
"no known copyright restrictions, released into the public domain"). The benchmark data's terms are
research-only, so nothing from it is shipped here. The "fake" is this project's own crude splice, said so.

    python -m lab.examples        # (re)writes the files next to this module
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SOURCE = ("NASA photo of astronaut Eileen Collins, via scikit-image's `data.astronaut()`; "
          "public domain (no known copyright restrictions)")
ASTRO_FACE = (182, 62, 267, 175)  # the face box in the 512x512 photo (tests/test_faces.py)

# file, caption (the example's label in the page), what it is
EXAMPLES = [
    ("astronaut.jpg", "a real photo, one face", "the photo itself (512x512)"),
    ("two-astronauts.jpg", "two faces", "two copies of the photo on a grey canvas, made by this project"),
    ("astronaut-face.png", "a 64x64 face crop", "the photo's face, cut to a 64x64 crop like the training data"),
    ("astronaut-splice.jpg", "fake (made by this project)",
     "the photo with its face replaced by the face's own mirror image, upsampled from 1/4 size and blended in "
     "with a soft oval mask: a crude splice made by this project, not a GAN or a face swap of another person"),
    ("no-face.jpg", "no face", "the lower half of the photo (the suit and helmet): no face in it"),
]


def paths() -> list[str]:
    """The example files, writing them first if any is missing."""
    if not all((HERE / f).is_file() for f, *_ in EXAMPLES):
        make()
    return [str(HERE / f) for f, *_ in EXAMPLES]


def credits() -> str:
    """One Markdown line per example: its name, what it is, and the source and licence of the material."""
    lines = [f"- **{cap}** (`{f}`): {what}." for f, cap, what in EXAMPLES]
    return "**Examples** (source and licence: " + SOURCE + "):\n" + "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# making the files


def _splice(photo: np.ndarray) -> np.ndarray:
    """The face replaced by its mirror image at 1/4 resolution, blended in through a feathered oval."""
    x0, y0, x1, y1 = ASTRO_FACE
    img = Image.fromarray(photo)
    face = img.crop((x0, y0, x1, y1)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    w, h = face.size
    face = face.resize((w // 4, h // 4), Image.Resampling.BILINEAR).resize((w, h), Image.Resampling.BICUBIC)
    oval = Image.new("L", (w, h), 0)
    ImageDraw.Draw(oval).ellipse((w * 0.12, h * 0.12, w * 0.88, h * 0.92), fill=255)
    oval = oval.filter(ImageFilter.GaussianBlur(w * 0.06))  # the soft edge of a face-swap blend
    out = img.copy()
    out.paste(face, (x0, y0), oval)
    return np.asarray(out)


def make() -> None:
    from skimage import data

    photo = data.astronaut()  # (512, 512, 3) uint8
    Image.fromarray(photo).save(HERE / "astronaut.jpg", quality=92)
    canvas = np.full((480, 800, 3), 128, np.uint8)
    for x, y, side in ((380, 40, 400), (20, 60, 300)):
        face = Image.fromarray(photo).resize((side, side), Image.Resampling.LANCZOS)
        canvas[y:y + side, x:x + side] = np.asarray(face)
    Image.fromarray(canvas).save(HERE / "two-astronauts.jpg", quality=92)
    from fdftnet.faces import find_faces

    Image.fromarray(find_faces(photo).faces[0].crop).save(HERE / "astronaut-face.png")
    Image.fromarray(_splice(photo)).save(HERE / "astronaut-splice.jpg", quality=92)
    Image.fromarray(photo[256:]).save(HERE / "no-face.jpg", quality=92)
