"""Faces in real photos: detect them (MTCNN) and crop each the way the training crops were framed.

Every model is fed square face crops of its own `crop_size` (64 px for the paper's protocol, 128 px and more
for a native-resolution model). `find_faces` turns a photo into such crops, each cut from the photo straight
to that size (no detour through a smaller crop): facenet-pytorch's
MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", https://arxiv.org/abs/1604.02878) gives boxes, scores and 5 landmarks, and `FRAMING` turns
a box into the square the benchmark crops cover. FRAMING was measured, not guessed: bench/face_framing.py
runs the detector on dfdc64 test crops and fits the box -> crop relation (bench/results/face_framing.json).

    res = find_faces(load_photo("party.jpg"), size=crop_size_of(model))   # FaceResult
    for f in res.faces: print(f.box, f.score)     # f.crop is (size, size, 3) uint8, ready for the model
    res.message                                   # "no face found", "2 faces under 20 px ignored", ...
    crop_folder("photos/", "data/mine", size=128) # photos/{real,fake} -> data/mine/finetune/{real,fake}
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .data import images
from .data.folders import _image_files, _subdirs
from .data.images import MIN_SIDE, DataError, DecodeBudget, ImageSource
from . import mtcnn
from .mtcnn import Deadline, DetectionTimeout

__all__ = [
    "Face", "FaceResult", "FaceError", "FRAMING", "find_faces", "largest_face", "is_face_crop",
    "crop_face", "whole_image", "load_photo", "crop_folder", "get_detector", "Deadline", "DetectionTimeout",
]

CROP_SIZE = 64  # the paper's crop side: the default where no model says its own (crop_size_of)
MAX_FACES = 20  # per image; more are cut to the largest ones, and the message says so
MIN_FACE = 20  # px (box width in the photo); smaller faces hold too little for a 64 px crop
MIN_SCORE = 0.9  # MTCNN probability; 99% of the benchmark's faces score >= 0.97 (score_p01)
MAX_ASPECT = 6.0  # long side / short side; panoramas and banners are refused, not squashed
MAX_DETECT_SIDE = 1600  # longer photos are shrunk before detection (speed; faces stay >= 12 px)
_PNET_WINDOW = 12  # MTCNN's smallest window: a face must be >= 12 px in the image it runs on
_SEE_BELOW = 0.75  # detect down to 0.75 * min_size so faces just under it are reported, not unseen

# Detection -> crop, fitted on 1,000 + 1,000 dfdc64 test crops (bench/face_framing.py): the crop is a
# square of side `scale` x the box height, centred `dx`, `dy` box heights right of / below the mean of
# the 5 landmarks. Of 12 size x centre choices this one overlaps the true crops best (median IoU 0.83;
# box centre + box size: 0.81). The training crops are tight: MTCNN's box sticks out above and below.
FRAMING = {"size": "height", "centre": "landmarks", "scale": 0.852, "dx": -0.012, "dy": -0.014}

# is_face_crop: a square (aspect <= CROP_ASPECT) of at most CROP_SMALL px is a crop whatever it shows;
# up to CROP_MAX px it is a crop if its largest face is at least CROP_FILL of its width (the benchmark
# crops' box width / crop width has its 1st percentile at 0.73, and 99% of them upscaled to 256 px pass;
# in the astronaut portrait of the tests it is 0.17).
CROP_ASPECT = 1.25
CROP_SMALL = 128
CROP_MAX = 512
CROP_FILL = 0.7


class FaceError(DataError):
    """A photo the face path cannot use (no face, extreme aspect ratio, not an RGB array). One line."""


@dataclass
class Face:
    """One detected face: box (x0, y0, x1, y1) and landmarks (5, 2) in photo pixels, and its square crop."""

    box: tuple[float, float, float, float]
    score: float  # MTCNN probability; nan when the input was a crop with no detection
    landmarks: np.ndarray  # (5, 2): eyes, nose, mouth corners as (x, y); nan when unknown
    crop: np.ndarray  # (size, size, 3) uint8 at the model's crop size, framed like the training crops


@dataclass
class FaceResult:
    """Faces of one photo, largest first, and what was left out (None when nothing was)."""

    faces: list[Face] = field(default_factory=list)
    message: str | None = None
    is_crop: bool = False  # the input already was a face crop and was used as is


# ----------------------------------------------------------------------------------------------
# the detector, built once per process

_DETECTOR = None
_LOCK = threading.Lock()


def get_detector():
    """The process-wide MTCNN (CPU), built on first use; its weights ship inside facenet-pytorch."""
    global _DETECTOR
    if _DETECTOR is None:
        with _LOCK:
            if _DETECTOR is None:
                from facenet_pytorch import MTCNN  # ~1 s import, only for the face path

                # min_face_size is fixed at the P-Net window; `_detect` sets the smallest face by
                # shrinking the photo instead, so one detector serves every min_size
                _DETECTOR = MTCNN(min_face_size=_PNET_WINDOW, keep_all=True, device="cpu")
    return _DETECTOR


def _detect(image: np.ndarray, min_size: int, deadline: Deadline | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(boxes (N, 4), scores (N,), landmarks (N, 5, 2)) in photo pixels, scores >= MIN_SCORE, and whether
    fdftnet.mtcnn's candidate caps dropped some (a photo of very many faces); DetectionTimeout past `deadline`."""
    h, w = image.shape[:2]
    # faces of _SEE_BELOW * min_size px become 12 px: the cheapest pyramid that still sees them
    s = min(1.0, _PNET_WINDOW / max(1.0, _SEE_BELOW * min_size), MAX_DETECT_SIDE / max(h, w))
    if min(h, w) * s < _PNET_WINDOW:  # no face of min_size fits: nothing to run
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)), False
    small = image
    if s < 1.0:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR,
                                                         reducing_gap=2.0))
    boxes, probs, points, capped = mtcnn.detect(get_detector(), small, _PNET_WINDOW, deadline=deadline)
    sx, sy = w / small.shape[1], h / small.shape[0]
    boxes = boxes * [sx, sy, sx, sy]  # (N, 4), back to photo px
    points = points * [sx, sy]  # (N, 5, 2)
    keep = probs >= MIN_SCORE
    return boxes[keep], probs[keep], points[keep], capped


# ----------------------------------------------------------------------------------------------
# cropping


def _check(image) -> np.ndarray:
    """An (H, W, 3) uint8 array with a sane aspect ratio, or FaceError."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 \
            or image.dtype != np.uint8:
        what = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise FaceError(f"expected an (H, W, 3) uint8 RGB image, got {what}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise FaceError(f"image too small ({w}x{h}; need at least {MIN_SIDE}x{MIN_SIDE})")
    if max(h, w) / min(h, w) > MAX_ASPECT:
        raise FaceError(f"extreme aspect ratio ({w}x{h}; at most {MAX_ASPECT:g}:1)")
    return image


def _size_and_centre(box, landmarks) -> tuple[float, float, float]:
    """FRAMING's face-size measure and reference centre (x, y) of one detection."""
    x0, y0, x1, y1 = map(float, box)
    w, h = x1 - x0, y1 - y0
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2) if landmarks is not None else None
    size, centre = FRAMING["size"], FRAMING["centre"]
    if lm is None and (size in ("eye_dist", "eye_mouth") or centre == "landmarks"):
        raise ValueError(f"FRAMING {size}@{centre} needs the landmarks")
    if size == "width":
        m = w
    elif size == "height":
        m = h
    elif size == "sqrt_wh":
        m = float(np.sqrt(w * h))
    elif size == "max_wh":
        m = max(w, h)
    elif size == "eye_dist":
        m = float(np.linalg.norm(lm[1] - lm[0]))
    else:  # eye_mouth: eye midpoint to mouth midpoint
        m = float(np.linalg.norm((lm[3] + lm[4]) / 2 - (lm[0] + lm[1]) / 2))
    cx, cy = ((x0 + x1) / 2, (y0 + y1) / 2) if centre == "box" else tuple(lm.mean(0))
    return m, cx, cy


def crop_face(image: np.ndarray, box, landmarks=None, size: int = CROP_SIZE) -> np.ndarray:
    """The training-crop square around a detection (FRAMING), resized to (size, size, 3) uint8.

    Parts of the square outside the photo repeat its edge pixels; the resize is Lanczos, as the
    benchmark crops were made (shared/data/README.md).
    """
    m, cx, cy = _size_and_centre(box, landmarks)
    side = FRAMING["scale"] * m
    cx, cy = cx + FRAMING["dx"] * m, cy + FRAMING["dy"] * m
    left, top = cx - side / 2, cy - side / 2
    h, w = image.shape[:2]
    # pad by whatever the square needs beyond the photo (edge pixels), then crop + resize in one pass
    pad = int(np.ceil(max(0.0, -left, -top, left + side - w, top + side - h))) + 1
    src = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad > 1 else image
    off = pad if pad > 1 else 0
    out = Image.fromarray(src).resize((size, size), Image.Resampling.LANCZOS,
                                      box=(left + off, top + off, left + off + side, top + off + side))
    return np.asarray(out, dtype=np.uint8)


def _square(shape, max_side: int) -> bool:
    """Square-ish (long / short side <= CROP_ASPECT) and at most `max_side` px."""
    h, w = shape[:2]
    return max(h, w) / min(h, w) <= CROP_ASPECT and max(h, w) <= max_side


def _fills(shape, boxes: np.ndarray) -> bool:
    """The widest detected face is at least CROP_FILL of the image width."""
    return bool(len(boxes)) and float((boxes[:, 2] - boxes[:, 0]).max()) >= CROP_FILL * shape[1]


def is_face_crop(image: np.ndarray) -> bool:
    """True if `image` already is a face crop like the training data, to be scored as is.

    Rule: the image is square-ish (long / short side <= CROP_ASPECT = 1.25) and either at most
    CROP_SMALL = 128 px (too small to hold a face worth re-cropping: the crop would be an upscale of
    a face under MIN_FACE-ish pixels), or at most CROP_MAX = 512 px with its widest detected face at
    least CROP_FILL = 0.7 of its width. Anything bigger or less square is a photo.
    """
    image = _check(image)
    if _square(image.shape, CROP_SMALL):
        return True
    return _square(image.shape, CROP_MAX) and _fills(image.shape, _detect(image, MIN_FACE)[0])


def _as_crop(image: np.ndarray, boxes, probs, points, size: int = CROP_SIZE) -> FaceResult:
    """The whole input as one Face, resized the way the direct path does it (load_image)."""
    h, w = image.shape[:2]
    i = int(np.argmax(boxes[:, 2] - boxes[:, 0])) if len(boxes) else None
    face = Face(box=(0.0, 0.0, float(w), float(h)),
                score=float(probs[i]) if i is not None else float("nan"),
                landmarks=points[i] if i is not None else np.full((5, 2), np.nan),
                crop=images._crop_resize(image, size))
    return FaceResult([face], "already a face crop: used as is", is_crop=True)


def find_faces(image: np.ndarray, max_faces: int = MAX_FACES, min_size: int = MIN_FACE,
               size: int = CROP_SIZE, deadline: Deadline | None = None) -> FaceResult:
    """Detect the faces of an (H, W, 3) uint8 photo and crop each like the training crops.

    Args:
        image: the photo, RGB uint8 (see `load_photo` for files).
        max_faces: keep at most this many, the largest; the message says how many were dropped.
        min_size: ignore faces whose box is narrower (px); the message counts them.
        size: the crop side, the model's crop_size (`models.crop_size_of`); each crop is cut from the photo
            straight to it.
        deadline: a time budget (fdftnet.mtcnn.Deadline) for the detection; past it, DetectionTimeout (a
            FaceError-like one-line ValueError). Detection's candidate caps (fdftnet.mtcnn.CAPS) always apply.
    Returns a FaceResult with faces largest first. An input that already is a face crop
    (`is_face_crop`) comes back as one Face covering it, with is_crop=True.
    Raises FaceError for a non-image array, a side under MIN_SIDE or an aspect ratio over MAX_ASPECT.
    """
    image = _check(image)
    if _square(image.shape, CROP_SMALL):  # is_face_crop's rule, sharing its detection
        return _as_crop(image, np.zeros((0, 4)), None, None, size)
    boxes, probs, points, capped = _detect(image, min_size, deadline)
    if _square(image.shape, CROP_MAX) and _fills(image.shape, boxes):
        return _as_crop(image, boxes, probs, points, size)
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]), kind="stable")  # widest first
    boxes, probs, points = boxes[order], probs[order], points[order]
    big = (boxes[:, 2] - boxes[:, 0]) >= min_size
    notes = []
    if not big.all():
        n = int((~big).sum())
        notes.append(f"{n} face{'s' * (n > 1)} under {min_size} px ignored")
    boxes, probs, points = boxes[big], probs[big], points[big]
    if capped:
        notes.append("very many face-like patterns: only the most likely candidates were examined")
    if len(boxes) > max_faces:
        notes.append(f"more than {max_faces} faces: kept the {max_faces} largest")
        boxes, probs, points = boxes[:max_faces], probs[:max_faces], points[:max_faces]
    if len(boxes) == 0:
        notes.insert(0, "no face found")
    faces = [Face(tuple(float(v) for v in b), float(p), lm, crop_face(image, b, lm, size))
             for b, p, lm in zip(boxes, probs, points)]
    return FaceResult(faces, "; ".join(notes) or None)


def whole_image(image: np.ndarray, size: int = CROP_SIZE) -> FaceResult:
    """No detection: the image's centre square resized to size x size (as `load_image` does), as one Face.

    For a photo with no face found when the user explicitly asks for a score anyway; the message says
    the verdict is about the whole picture, not a face crop like the training data."""
    image = _check(image)
    h, w = image.shape[:2]
    s = min(h, w)
    x0, y0 = (w - s) // 2, (h - s) // 2
    face = Face(box=(float(x0), float(y0), float(x0 + s), float(y0 + s)), score=float("nan"),
                landmarks=np.full((5, 2), np.nan), crop=images._crop_resize(image, size))
    return FaceResult([face], f"whole image scored, no face detection (its centre square, resized to {size}x{size})")


def largest_face(image: np.ndarray, min_size: int = MIN_FACE, size: int = CROP_SIZE) -> tuple[Face, FaceResult]:
    """The largest face (or the crop itself) at `size` px and the full result; FaceError if there is none."""
    res = find_faces(image, min_size=min_size, size=size)
    if not res.faces:
        raise FaceError(res.message or "no face found")
    return res.faces[0], res


# ----------------------------------------------------------------------------------------------
# files and folders


def load_photo(src: ImageSource, name: str | None = None, budget: DecodeBudget | None = None,
               max_side: int | None = None) -> np.ndarray:
    """Decode a photo at full size into (H, W, 3) uint8, or raise DataError naming it.

    One decode by `data.images.load_image(size=None)`, with every guard and one-line message it has
    (format whitelist, size limits from the header, truncated or lying files, FIFOs, a server
    request's DecodeBudget), EXIF orientation and RGB conversion. max_side: a JPEG at least twice as
    long is decoded at a reduced DCT scale keeping >= max_side px (a server's budget; MAX_DETECT_SIDE
    is what detection looks at).
    """
    return images.load_image(src, size=None, name=name, budget=budget, max_side=max_side)


def _class_dirs(src: str, split: str) -> dict[tuple[str, str], str]:
    """{(split, class): folder} for SRC/{real,fake} (-> `split`) or SRC/SPLIT/{real,fake}."""
    def classes(folder):
        found = {d.lower(): d for d in reversed(_subdirs(folder))}  # exact lower-case name wins
        return {c: os.path.join(folder, found[c]) for c in ("real", "fake") if c in found}

    top = classes(src)
    if top:
        return {(split, c): d for c, d in top.items()}
    out = {}
    for s in _subdirs(src):
        out.update({(s, c): d for c, d in classes(os.path.join(src, s)).items()})
    return out


def crop_folder(src: str | os.PathLike, out: str | os.PathLike, split: str = "finetune",
                min_size: int = MIN_FACE, progress=None, size: int = CROP_SIZE) -> dict:
    """Folders of photos -> the image-folder layout the trainers read, one size x size PNG per photo.

    Args:
        src: SRC/{real,fake}/ (written to OUT/`split`/{real,fake}) or SRC/SPLIT/{real,fake}/
            (splits kept). Class folders match case-insensitively and are searched recursively.
        out: the dataset root to write (created; existing files of the same name are replaced).
        min_size: faces narrower than this are ignored, as in `find_faces`.
        progress: called as progress(done, total) after each photo, if given.
        size: the crop side: the crop_size of the model these crops will train (64 by default).
    Each photo gives its largest face (a photo that already is a face crop is used as is), saved as
    OUT/SPLIT/CLASS/<path below the class folder>.png. Photos with no face, or unreadable, are skipped.
    Returns {"photos", "faces", "no_face": [paths], "unreadable": [paths], "reasons": {path: message},
    "counts": {split: {class: n}},
    "out"}. Raises FaceError in one line when `src` is not a folder or holds no real/ and fake/.
    """
    src, out = os.fspath(src), os.fspath(out)
    if not os.path.isdir(src):
        raise FaceError(f"{src}: not a folder")
    dirs = _class_dirs(src, split)
    if not dirs:
        raise FaceError(f"{src}: expects real/ and fake/ folders (or SPLIT/real, SPLIT/fake); "
                        f"found: {', '.join(_subdirs(src)) or 'nothing'}")
    jobs = [(s, c, folder, f) for (s, c), folder in sorted(dirs.items())
            for f in _image_files(folder)]
    report = {"photos": len(jobs), "faces": 0, "no_face": [], "unreadable": [], "reasons": {},
              "counts": {s: {"real": 0, "fake": 0} for s, _ in dirs}, "out": out}
    for done, (s, c, folder, path) in enumerate(jobs, 1):
        try:
            face, _ = largest_face(load_photo(path), min_size=min_size, size=size)
        except FaceError as e:
            report["no_face"].append(path)
            report["reasons"][path] = str(e)
        except DataError as e:
            report["unreadable"].append(path)
            report["reasons"][path] = str(e)
        else:
            dst = os.path.join(out, s, c, os.path.splitext(os.path.relpath(path, folder))[0] + ".png")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            Image.fromarray(face.crop).save(dst)
            report["faces"] += 1
            report["counts"][s][c] += 1
        if progress is not None:
            progress(done, len(jobs))
    return report
