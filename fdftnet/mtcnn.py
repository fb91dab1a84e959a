"""MTCNN's three stages with bounded work: facenet-pytorch's networks and box helpers, driven by our own loop.

facenet-pytorch's `detect_face` passes every P-Net candidate to R-Net and every R-Net survivor to O-Net, cropping
each in a Python loop, and ends with an O(n^2) numpy NMS: a 93 KB PNG tiling 1,936 small faces kept a server busy
for minutes (issue #31). This loop is the same algorithm (Zhang et al., https://arxiv.org/abs/1604.02878; the same
networks, thresholds, pyramid and NMS), with three bounds a public server needs:

- at most `caps[0]` P-Net candidates per pyramid scale enter its NMS, `caps[1]` go on to R-Net and `caps[2]` R-Net
  survivors to O-Net, the highest-scoring ones each time;
- a `Deadline` checked between stages and every few hundred crops: past it, `DetectionTimeout` (one line);
- the caller bounds the image size (fdftnet.faces shrinks photos before detection).

Below the caps the result is the library's own, box for box (tests/test_faces.py compares them).

    boxes, probs, points, capped = detect(get_detector(), image_uint8, min_size=12, deadline=Deadline(5.0))
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torchvision.ops.boxes import batched_nms

from .data.images import DataError

__all__ = ["Deadline", "DetectionTimeout", "detect", "CAPS"]

# candidates kept, per image: P-Net's per pyramid scale before its NMS, P-Net -> R-Net, R-Net -> O-Net. An ordinary
# photo has a few hundred P-Net candidates on its largest scale (skimage's astronaut 134, coffee 256); a PNG tiling
# 1,936 faces of 24 px had 29,040, whose NMS alone took a second
CAPS = (2000, 1000, 200)
_CHECK_EVERY = 256  # crops between deadline checks


class DetectionTimeout(DataError):
    """Face detection ran past its time budget; the message is one line."""


class Deadline:
    """A wall-clock budget shared by the steps of one image or one request (None: no limit)."""

    def __init__(self, seconds: float | None, what: str = "finding faces"):
        self.seconds, self.what = seconds, what
        self.end = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float:
        return float("inf") if self.end is None else self.end - time.monotonic()

    def check(self) -> None:
        if self.end is not None and time.monotonic() > self.end:
            raise DetectionTimeout(f"{self.what} took longer than its {self.seconds:g} s budget (a photo with very "
                                   f"many faces or face-like patterns?); send a smaller or simpler image")


def _crops(img: torch.Tensor, boxes: torch.Tensor, size: int, deadline: Deadline | None) -> torch.Tensor:
    """Each box's pixels (1-based, clipped, as facenet's `pad`) resized to size x size with area interpolation."""
    from facenet_pytorch.models.utils.detect_face import imresample, pad
    h, w = img.shape[2:4]
    y, ey, x, ex = pad(boxes, w, h)
    out = []
    for k in range(len(y)):
        if k % _CHECK_EVERY == 0 and deadline is not None:
            deadline.check()
        if ey[k] > (y[k] - 1) and ex[k] > (x[k] - 1):
            out.append(imresample(img[:, :, (y[k] - 1):ey[k], (x[k] - 1):ex[k]], (size, size)))
    return (torch.cat(out) - 127.5) * 0.0078125


def _top(keep: torch.Tensor, scores: torch.Tensor, cap: int) -> tuple[torch.Tensor, bool]:
    """The `cap` highest-scoring of the indices `keep` (in score order), and whether any were dropped."""
    if len(keep) <= cap:
        return keep, False
    return keep[torch.argsort(scores[keep], descending=True)[:cap]], True


@torch.inference_mode()
def detect(mtcnn, image: np.ndarray, min_size: float = 12.0, caps: tuple[int, int, int] = CAPS,
           deadline: Deadline | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(boxes (N, 4), probabilities (N,), landmarks (N, 5, 2), capped) of an (H, W, 3) uint8 image.

    `mtcnn` is a facenet_pytorch.MTCNN (its pnet/rnet/onet, thresholds and pyramid factor are used); capped says
    some candidates were dropped at a cap. Boxes come largest first, as MTCNN(select_largest=True).detect gives them.
    """
    from facenet_pytorch.models.utils.detect_face import (
        batched_nms_numpy, bbreg, generateBoundingBox, imresample, rerec)
    thr, factor = mtcnn.thresholds, mtcnn.factor
    dtype = next(mtcnn.pnet.parameters()).dtype
    img = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].to(dtype)  # (1, 3, H, W), a copy
    h, w = img.shape[2:4]
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)), False)
    # stage 1: P-Net over the pyramid, NMS per scale then across scales
    m, minl, scales = 12.0 / min_size, min(h, w) * 12.0 / min_size, []
    while minl >= 12:
        scales.append(m * factor ** len(scales))
        minl *= factor
    boxes, capped = [], False
    for scale in scales:
        if deadline is not None:
            deadline.check()
        x = (imresample(img, (int(h * scale + 1), int(w * scale + 1))) - 127.5) * 0.0078125
        reg, probs = mtcnn.pnet(x)
        b, _ = generateBoundingBox(reg, probs[:, 1], scale, thr[0])
        top, more = _top(torch.arange(len(b)), b[:, 4], caps[0])
        b, capped = b[top], capped | more
        boxes.append(b[batched_nms(b[:, :4], b[:, 4], torch.zeros(len(b), dtype=torch.long), 0.5)])
    boxes = torch.cat(boxes) if boxes else torch.zeros(0, 9)
    if not len(boxes):
        return empty
    keep = batched_nms(boxes[:, :4], boxes[:, 4], torch.zeros(len(boxes), dtype=torch.long), 0.7)
    keep, more = _top(keep, boxes[:, 4], caps[1])
    capped |= more
    boxes = boxes[keep]
    rw, rh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = rerec(torch.stack([boxes[:, 0] + boxes[:, 5] * rw, boxes[:, 1] + boxes[:, 6] * rh,
                               boxes[:, 2] + boxes[:, 7] * rw, boxes[:, 3] + boxes[:, 8] * rh, boxes[:, 4]], 1))
    # stage 2: R-Net on 24x24 crops
    reg, score = mtcnn.rnet(_crops(img, boxes, 24, deadline))
    ok = score[:, 1] > thr[1]
    boxes, reg = torch.cat([boxes[ok, :4], score[ok, 1:2]], 1), reg[ok]
    if not len(boxes):
        return empty
    keep = batched_nms(boxes[:, :4], boxes[:, 4], torch.zeros(len(boxes), dtype=torch.long), 0.7)
    keep, more = _top(keep, boxes[:, 4], caps[2])
    capped |= more
    boxes = rerec(bbreg(boxes[keep], reg[keep]))
    # stage 3: O-Net on 48x48 crops, landmarks, NMS by the smaller area ("Min")
    if deadline is not None:
        deadline.check()
    reg, points, score = mtcnn.onet(_crops(img, boxes, 48, deadline))
    ok = score[:, 1] > thr[2]
    boxes, reg, points = torch.cat([boxes[ok, :4], score[ok, 1:2]], 1), reg[ok], points[ok]
    if not len(boxes):
        return empty
    bw, bh = boxes[:, 2:3] - boxes[:, 0:1] + 1, boxes[:, 3:4] - boxes[:, 1:2] + 1
    points = torch.stack([bw * points[:, :5] + boxes[:, 0:1] - 1, bh * points[:, 5:] + boxes[:, 1:2] - 1], 2)
    boxes = bbreg(boxes, reg)
    keep = batched_nms_numpy(boxes[:, :4], boxes[:, 4], torch.zeros(len(boxes), dtype=torch.long), 0.7, "Min")
    boxes, points = boxes[keep].numpy(), points[keep].numpy()
    order = np.argsort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[::-1]  # largest first, as MTCNN
    boxes, points = boxes[order].astype(np.float64), points[order].astype(np.float64)
    return boxes[:, :4], boxes[:, 4], points, capped
