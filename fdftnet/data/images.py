"""Safe image decoding: any file becomes a (size, size, 3) uint8 RGB array or a one-line DataError.

Decoding happens once, up front (see `folders.py`); training then works on uint8 tensors only.
The model input is float32 (B, 3, H, W) in [0, 1] = uint8 / 255, the paper's only preprocessing
(FDFtNet, Jeon et al., IFIP SEC 2020: "validation/test only scaled by 1/255"; no mean/std).

    arr = load_image("face.png")          # (64, 64, 3) uint8
    photo = load_image("party.jpg", size=None)  # (H, W, 3) uint8 at full resolution (fdftnet.faces)
    x = to_tensor(arr[None])              # (1, 3, 64, 64) float32 in [0, 1]
"""
from __future__ import annotations

import io
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = [
    "DataError", "BudgetError", "DecodeBudget", "charge_headers", "decode_pixels", "MAX_PIXELS", "MIN_SIDE", "IMAGE_EXTENSIONS",
    "load_image", "decode_all", "to_uint8_tensor", "to_float", "to_tensor",
]

MAX_PIXELS = 40_000_000  # decompression-bomb limit, checked on the header size before any decoding
# A JPEG whose header claims more pixels than its data holds decodes without an error: libjpeg fills the
# missing blocks with mid-grey (all-zero coefficients). Baseline and progressive JPEGs spend >= 1 bit per 8x8
# luma block, so under 1/2048 byte per pixel (4x margin) the header lies; under 1/64 (any photo has more),
# a bottom-right corner of exactly (128, 128, 128) is that fill, not picture.
JPEG_MIN_BYTES_PER_PX, JPEG_SPARSE_BYTES_PER_PX = 1 / 2048, 1 / 64
MIN_SIDE = 8  # smaller images hold no face worth classifying (1x1 "images" are usually trackers)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Only these PIL decoders may run. This keeps out formats with risky or external decoders
# (EPS runs Ghostscript, for one) even when a file lies about its extension. Multi-picture JPEGs
# from phones (MPO) still open: PIL's JPEG opener hands them to its MPO plugin.
_THREADS = min(4, os.cpu_count() or 1)  # PIL releases the GIL while decoding, so threads scale
_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes], Image.Image]


class DataError(ValueError):
    """Bad input data (unreadable image, wrong folder layout, unknown label). One-line message."""


class BudgetError(DataError):
    """A request asked for more decoding than its DecodeBudget allows; the whole request stops."""


class DecodeBudget:
    """What one server request may decode: pixels per image, pixels and images in all (thread-safe).

    A small upload can hold a big image (a 0.5 kB zipped PNG decodes to 40 Mpx), so a public server gives
    each request one of these: `load_image(..., budget=b)` refuses an image over `max_pixels` before decoding
    it, and raises BudgetError once the request's images or decoded pixels pass their totals.
    """

    def __init__(self, max_pixels: int = 16_000_000, total_pixels: int = 64_000_000, max_images: int = 500):
        self.max_pixels, self.total_pixels, self.max_images = max_pixels, total_pixels, max_images
        self.pixels = self.images = 0
        self._lock = threading.Lock()

    def charge(self, name: str, pixels: int) -> None:
        with self._lock:
            self.images += 1
            self.pixels += pixels
            if self.images > self.max_images:
                raise BudgetError(f"{name}: more than {self.max_images} images in one request; send fewer at a time")
            if self.pixels > self.total_pixels:
                raise BudgetError(f"{name}: this request's images add up to more than "
                                  f"{self.total_pixels / 1e6:g} Mpx; send fewer or smaller images at a time")


# ----------------------------------------------------------------------------------------------
# decoding


def _describe(src) -> str:
    """A short name for error messages: the path, the file object's name, or '<bytes>'."""
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    if isinstance(src, Image.Image):
        return getattr(src, "filename", "") or "<PIL image>"
    return str(getattr(src, "name", "") or "<bytes>")


def load_image(src: ImageSource, size: int | None = 64, name: str | None = None,
               budget: DecodeBudget | None = None, max_side: int | None = None) -> np.ndarray:
    """Decode `src` into a (size, size, 3) uint8 RGB array, or raise DataError naming the source.

    Args:
        src: a path, raw bytes, a binary file object or a PIL image.
        size: output side; non-square images are centre-cropped to a square first, then resized
            with PIL's antialiased bicubic filter. Images already size x size are not resampled.
            None: the whole image at full resolution, (H, W, 3) (no crop, resize or JPEG draft);
            every check and the budget charge stay the same (the budget sees the full pixel count).
        max_side: with size=None, a JPEG whose long side is at least twice this is decoded at the DCT
            scale (1/2..1/8) that keeps its long side >= max_side; the budget sees that size.
        name: what to call `src` in error messages (default: its path or file name).
        budget: a server request's DecodeBudget (lower per-image cap, totals per request); None: MAX_PIXELS only.
    Steps: header-only open (formats restricted to `_FORMATS`), size checks against MIN_SIDE and
    MAX_PIXELS *before* decoding, full decode of the first frame (truncated/corrupt data fails
    here), EXIF orientation, conversion of every mode to RGB (alpha composited on black),
    crop + resize.
    """
    name = name or _describe(src)
    nbytes = None
    if isinstance(src, Image.Image):
        return _decode(src, size, name, budget, max_side=max_side)
    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(src))
        nbytes = len(src.getbuffer())
    elif isinstance(src, (str, os.PathLike)):
        try:
            st = os.stat(src)
        except OSError as e:
            raise DataError(f"{name}: cannot read file ({e.strerror or e})") from None
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the open; /dev/zero never ends
            raise DataError(f"{name}: not a regular file")
        nbytes = st.st_size
    if nbytes == 0:
        raise DataError(f"{name}: empty file (0 bytes)")
    try:
        img = Image.open(src, formats=_FORMATS)  # lazy: reads the header only
    except Image.DecompressionBombError:
        raise DataError(f"{name}: too many pixels (limit {MAX_PIXELS:,})") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{name}: not an image (or not one of {', '.join(_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{name}: not an image ({_reason(e)})") from None
    with img:
        return _decode(img, size, name, budget, nbytes, max_side)


def _reason(e: BaseException) -> str:
    """First line of an exception message, for one-line DataErrors."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _plan(img: Image.Image, size: int | None, name: str, budget: DecodeBudget | None, nbytes: int | None,
          max_side: int | None = None) -> bool:
    """Header checks, JPEG draft (DCT scaling) and the budget charge, all before decoding a pixel.

    Returns True for a JPEG with few bytes per pixel (checked for libjpeg's grey fill once decoded)."""
    w, h = img.size
    if w * h > MAX_PIXELS:  # our own check: PIL's warning threshold (89M) is higher and only warns
        raise DataError(f"{name}: too many pixels ({w}x{h} > {MAX_PIXELS:,})")
    if min(w, h) < MIN_SIDE:
        raise DataError(f"{name}: image too small ({w}x{h}; need at least {MIN_SIDE}x{MIN_SIDE})")
    sparse = False
    if img.format == "JPEG":
        if nbytes is not None and nbytes < w * h * JPEG_MIN_BYTES_PER_PX:  # libjpeg would fill the rest with grey
            raise DataError(f"{name}: corrupt or truncated image (the header says {w}x{h}, "
                            f"but {nbytes:,} bytes cannot hold that many pixels)")
        sparse = nbytes is not None and nbytes < w * h * JPEG_SPARSE_BYTES_PER_PX
        if size is not None and min(w, h) >= 8 * size:  # DCT scale 1/2..1/8: a 12 Mpx photo costs 0.2 Mpx
            img.draft(None, (4 * size, 4 * size))  # still >= 4x the output side: the resize antialiases
            w, h = img.size
        elif size is None and max_side and max(w, h) >= 2 * max_side:  # a big photo, kept >= max_side
            k = max(w, h) // max_side  # PIL takes the largest of 8, 4, 2 that is <= k
            img.draft(None, (w // k, h // k))
            w, h = img.size
    if budget is not None:
        if w * h > budget.max_pixels:
            raise BudgetError(f"{name}: too many pixels for this server ({w}x{h} > {budget.max_pixels:,})")
        budget.charge(name, w * h)
    return sparse


def decode_pixels(path, max_side: int | None = None) -> int | None:
    """The pixels `load_image(path, size=None, max_side=max_side)` would decode, read from the header alone (a big
    JPEG at its DCT scale); None for a file that is not a usable image (its decode will say why)."""
    b = DecodeBudget(max_pixels=MAX_PIXELS, total_pixels=float("inf"), max_images=1)
    try:
        with Image.open(path, formats=_FORMATS) as img:
            _plan(img, None, os.path.basename(str(path)), b, os.path.getsize(path), max_side)
    except Exception:  # noqa: BLE001 - not an image, or a lying one: the real decode reports it
        return None
    return b.pixels


def charge_headers(paths: Sequence, budget: DecodeBudget, size: int = 64) -> None:
    """Charge `budget` for decoding `paths` (headers only: fast); BudgetError names the first file over it.

    For uploads decoded later by code that takes no budget (a fine-tune's image folders). Files that are
    not images are left for that decoder to report."""
    for p in paths:
        try:
            with Image.open(p, formats=_FORMATS) as img:
                _plan(img, size, os.path.basename(p), budget, os.path.getsize(p))
        except BudgetError:
            raise
        except Exception:  # noqa: BLE001 - not an image (or a lying one): the real decode says why
            continue


def _decode(img: Image.Image, size: int | None, name: str, budget: DecodeBudget | None = None,
            nbytes: int | None = None, max_side: int | None = None) -> np.ndarray:
    """Check, fully decode, orient, convert and resize an opened (maybe not yet loaded) image."""
    header = f"{img.size[0]}x{img.size[1]}"
    sparse = _plan(img, size, name, budget, nbytes, max_side)
    w, h = img.size
    try:
        if img.tell() != 0:  # animated GIF/WebP/APNG/TIFF: first frame (n_frames would scan it all)
            img.seek(0)
        img.load()  # force the full decode now so truncated/corrupt data fails here
    except Image.DecompressionBombError:
        raise DataError(f"{name}: too many pixels (decompression-bomb limit)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{name}: corrupt or truncated image ({_reason(e)})") from None
    if sparse and img.mode in ("RGB", "L") and (
            np.asarray(img.crop((w - 4, h - 4, w, h))) == 128).all():
        raise DataError(f"{name}: corrupt or truncated image (the header says {header}, but the data ends early)")
    try:
        oriented = ImageOps.exif_transpose(img)  # a copy; the EXIF orientation tag is applied
    except Exception:  # noqa: BLE001 - malformed EXIF is common and harmless: keep pixels as stored
        oriented = img
    try:
        rgb = _to_rgb(oriented)  # (h, w, 3) uint8
    except (OSError, ValueError) as e:
        raise DataError(f"{name}: cannot convert mode {img.mode} to RGB ({_reason(e)})") from None
    if size is None:  # full resolution (fdftnet.faces finds and crops the faces itself)
        return rgb if rgb.flags.writeable and rgb.flags.c_contiguous else rgb.copy()
    return _crop_resize(rgb, size)


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8. Alpha is composited on black (= RGB * alpha / 255)."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode.startswith("I") or mode == "F":  # I;16, I;16B, I;16L, I;16N, I (int32), F (float32)
        gray = _scale_to_uint8(np.asarray(img), mode)  # (H, W)
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    ) or (mode in ("L", "RGB") and "transparency" in img.info)
    if not has_alpha:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)  # L, 1, P, CMYK, YCbCr, HSV, ...
    # Composite on black: fully transparent pixels become 0 whatever colour the encoder left
    # under them (often garbage); 0 is also what Cutout and zero padding mean by "nothing".
    rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)  # (H, W, 4)
    rgb = (rgba[:, :, :3] * rgba[:, :, 3:] + 127) // 255  # rounded premultiply, exact at 0 and 255
    return rgb.astype(np.uint8)


def _scale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit integer or float gray -> uint8, scaled by the range the mode implies.

    I;16*: divide by 257 (65535 -> 255). I (int32, e.g. old 16-bit PNG decodes): as-is if it fits
    in 0..255, /257 if it fits in 0..65535, else min-max. F: x255 if in [0, 1], as-is if in
    [0, 255], else min-max.
    """
    a = a.astype(np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        a = a / 257.0
    elif lo >= 0 and hi <= 1 and mode == "F":
        a = a * 255.0
    elif lo >= 0 and hi <= 255:
        pass
    elif lo >= 0 and hi <= 65535 and mode != "F":
        a = a / 257.0
    elif hi > lo:
        a = (a - lo) * (255.0 / (hi - lo))
    else:
        a = np.zeros_like(a)
    return np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8)


def _crop_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) uint8 -> centre square crop -> (size, size, 3) uint8 (antialiased bicubic)."""
    h, w = rgb.shape[:2]
    if h == size and w == size:
        return rgb if rgb.flags.writeable and rgb.flags.c_contiguous else rgb.copy()
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    # box= crops and resizes in one pass; reducing_gap speeds up big downscales at no visible cost
    out = img.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + s, top + s),
                     reducing_gap=3.0)
    return np.asarray(out, dtype=np.uint8)


def decode_all(sources: Sequence, names: Sequence[str], size: int = 64, on_error: str = "raise"
               ) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode `sources` on a thread pool -> (images (M, size, size, 3) uint8, kept, skipped).

    kept: indices into `sources` of the M decoded images; skipped: names of the others.

    on_error="raise" raises the first DataError in input order; "skip" leaves bad images out.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")

    def one(i: int):
        try:
            return load_image(sources[i], size=size, name=names[i])
        except DataError as e:
            return e

    out = np.empty((len(sources), size, size, 3), dtype=np.uint8)  # (N, H, W, 3)
    kept, skipped = [], []
    with ThreadPoolExecutor(_THREADS) as pool:
        for i, res in enumerate(pool.map(one, range(len(sources)))):
            if isinstance(res, DataError):
                if on_error == "raise":
                    raise res
                skipped.append(names[i])
            else:
                out[len(kept)] = res
                kept.append(i)
    return out[: len(kept)], kept, skipped


# ----------------------------------------------------------------------------------------------
# arrays -> model input


def to_uint8_tensor(arr: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H, W, 3) or (N, H, W, 3) uint8 array -> (3, H, W) or (N, 3, H, W) uint8 tensor."""
    if not isinstance(arr, torch.Tensor):
        arr = np.asarray(arr)
        arr = arr if arr.flags.writeable else arr.copy()  # torch warns on read-only arrays
    t = torch.as_tensor(arr)
    if t.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {t.dtype}")
    if t.ndim == 3:
        return t.permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)
    if t.ndim == 4:
        return t.permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) -> (N, 3, H, W)
    raise ValueError(f"expected (H, W, 3) or (N, H, W, 3), got shape {tuple(t.shape)}")


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 in [0, 1] (the paper's 1/255); float passes through."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def to_tensor(arr: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H, W, 3) / (N, H, W, 3) uint8 -> (3, H, W) / (N, 3, H, W) float32 model input in [0, 1]."""
    return to_float(to_uint8_tensor(arr))
