"""Faces through a video clip (issue #33): frames sampled over the clip, faces tracked, a verdict per person.

PyAV (FFmpeg inside its wheel) decodes mp4, webm, mov, mkv and avi at any frame rate, honouring the rotation a
phone writes into the stream. `analyze_video` takes `frames` frames spread evenly over the clip, finds the faces of
each with the photo path (`fdftnet.faces.find_faces`, cut at the model's crop size), links them into tracks by box
overlap and centre distance, scores every face (`fdftnet.trust.assess`), and gives each track the verdict of its
**mean logit margin** (calibrated like a single face when the model is). The clip's verdict is its most suspicious
track. Everything is bounded before and while it decodes (`VideoLimits`): the header's frame size and duration are
checked before a frame is decoded, decoded frames are counted, and a time budget stops the work.

    record = analyze_video(model, "clip.mp4")     # {"tracks": [{"p_fake", "verdict", "frames": [...]}], ...}
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from PIL import Image

from .data.images import DataError
from .mtcnn import Deadline

__all__ = ["VIDEO_EXTENSIONS", "VideoError", "VideoLimits", "probe", "iter_frames", "sample_frames", "link_tracks",
           "analyze_video", "is_video", "track_rows", "AGGREGATION"]

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
AGGREGATION = "mean of the per-frame logit margins"  # a track's score; docs/video.md says why
VIDEO_MIN_FACE = 40  # px: smaller faces in a clip are not looked for (a 128-px crop of them would be an upscale),
#                      which keeps detection's pyramid small: a clip is 32 photos, a face-less one costs it all
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "gif", "webp_pipe", "tiff_pipe", "apng", "mjpeg"}


class VideoError(DataError):
    """A video the clip path cannot use (not a video, no video stream, over a limit, corrupt). One line."""


@dataclass
class VideoLimits:
    """What one clip may cost: checked from the header before decoding, then counted while decoding."""

    max_seconds: float = 600.0  # clip duration
    max_side: int = 4096  # frame width or height (a header claiming 20,000 x 20,000 is refused at once)
    max_decoded: int = 1500  # frames decoded in all (sequential decoding, or after each seek)
    keep_side: int = 1280  # sampled frames are kept at most this long (a 4K frame is shrunk before detection)
    seconds: float | None = 60.0  # wall-clock budget for decoding, detection and scoring


def is_video(path: str) -> bool:
    return str(path).lower().endswith(VIDEO_EXTENSIONS)


def _open(path):
    import av
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        why = " (invalid data)" if isinstance(e, av.error.InvalidDataError) else ""
        raise VideoError(f"{os.path.basename(str(path))}: not a video file FFmpeg can open{why}") from None


def probe(path, limits: VideoLimits | None = None) -> dict:
    """{"width", "height", "fps", "duration", "frames_claimed", "format"} from the container's header, or VideoError
    (one line) for no video stream, a still image, a frame size or duration over `limits`."""
    limits = limits or VideoLimits()
    name = os.path.basename(str(path))
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise VideoError(f"{name}: empty file (0 bytes)")
    with _open(path) as c:
        if not c.streams.video:
            raise VideoError(f"{name}: no video stream" + (" (audio only)" if c.streams.audio else ""))
        s = c.streams.video[0]
        fmt = c.format.name.split(",")[0]
        w, h = s.codec_context.width, s.codec_context.height
        fps = float(s.average_rate or s.guessed_rate or 0) or None
        dur = float(s.duration * s.time_base) if s.duration and s.time_base else (
            c.duration / 1e6 if c.duration else None)
        if fmt in _IMAGE_FORMATS or (s.frames == 1 and not dur):
            raise VideoError(f"{name}: a still image, not a video: score it as a photo")
        if not w or not h:
            raise VideoError(f"{name}: the video stream has no frame size (corrupt header)")
        if max(w, h) > limits.max_side:
            raise VideoError(f"{name}: frames of {w}x{h} are over this server's limit of {limits.max_side} px a side")
        if dur is not None and dur > limits.max_seconds:
            raise VideoError(f"{name}: {dur:.0f} s long, over the limit of {limits.max_seconds:g} s: cut it shorter")
        return {"width": w, "height": h, "fps": fps, "duration": dur, "frames_claimed": int(s.frames or 0),
                "format": fmt}


def _rgb(frame, keep_side: int) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB, at most keep_side long, turned upright by its rotation tag."""
    w, h = frame.width, frame.height
    s = min(1.0, keep_side / max(w, h))
    if s < 1.0:
        frame = frame.reformat(width=max(2, round(w * s)) // 2 * 2, height=max(2, round(h * s)) // 2 * 2)
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def iter_frames(path, n: int = 32, limits: VideoLimits | None = None, deadline: Deadline | None = None,
                info: dict | None = None):
    """Yields (time s, frame RGB) for `n` frames spread evenly over the clip (the frame at or after each of
    (i + 0.5) / n of its duration), one at a time (a clip's frames are never all held). A clip short enough is
    decoded once, in order (its length unknown: counted in a first pass); a longer one seeks to each time. `info`
    (a dict) receives probe()'s fields and "decoded". VideoError for a clip that cannot be decoded; a truncated one
    gives the frames it holds."""
    import av
    limits = limits or VideoLimits()
    info = {} if info is None else info
    info.update(probe(path, limits), decoded=0)
    name = os.path.basename(str(path))
    dur, fps = info["duration"], info["fps"] or 30.0
    sent, last_t = 0, None

    def decoded_one():
        info["decoded"] += 1
        if deadline is not None and info["decoded"] % 32 == 0:
            deadline.check()
        if info["decoded"] > limits.max_decoded:
            raise VideoError(f"{name}: more than {limits.max_decoded} frames to decode for this clip")

    try:
        with _open(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            if dur is None:  # no length in the header: count the frames first (no conversion: cheap)
                count = 0
                for _ in c.decode(s):
                    decoded_one()
                    count += 1
                c.seek(0)
                picks = set(np.unique(np.linspace(0, max(0, count - 1), min(n, max(1, count))).round().astype(int)))
                for i, frame in enumerate(c.decode(s)):
                    decoded_one()
                    if i in picks:
                        t = float(frame.time) if frame.time is not None else i / fps
                        yield t, _rgb(frame, limits.keep_side)
                        sent += 1
            elif dur * fps <= limits.max_decoded:  # one pass in order: cheaper than seeking
                targets = [(i + 0.5) / n * dur for i in range(n)]
                for frame in c.decode(s):
                    decoded_one()
                    t = float(frame.time) if frame.time is not None else info["decoded"] / fps
                    if sent < n and t >= targets[sent] - 0.5 / fps:
                        while sent < n and t >= targets[sent] - 0.5 / fps:
                            sent += 1  # a clip with fewer frames than n: each frame once
                        yield t, _rgb(frame, limits.keep_side)
                        if sent >= n:
                            break
            else:  # a long clip: seek to each time, decode up to it
                for i in range(n):
                    target = (i + 0.5) / n * dur
                    c.seek(int(target / s.time_base), stream=s, backward=True, any_frame=False)
                    for k, frame in enumerate(c.decode(s)):
                        decoded_one()
                        if frame.time is not None and frame.time >= target - 0.5 / fps or k > 300:
                            t = float(frame.time if frame.time is not None else target)
                            if t != last_t:
                                yield t, _rgb(frame, limits.keep_side)
                                sent, last_t = sent + 1, t
                            break
    except av.error.FFmpegError as e:
        if not sent:
            why = getattr(e, "strerror", None) or type(e).__name__
            raise VideoError(f"{name}: corrupt or truncated video ({why})") from None
    if not sent:
        raise VideoError(f"{name}: no frame could be decoded (corrupt or truncated video)")


def sample_frames(path, n: int = 32, limits: VideoLimits | None = None,
                  deadline: Deadline | None = None) -> tuple[list[tuple[float, np.ndarray]], dict]:
    """([(time s, frame RGB)], probe info and "decoded"): iter_frames' frames, held in a list."""
    info: dict = {}
    frames = list(iter_frames(path, n, limits, deadline, info))
    return frames, info


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def link_tracks(boxes_per_frame: list[list], min_iou: float = 0.2, max_centre: float = 1.5,
                frame_reach: float = 0.15, max_gap: int = 3, frame_diag: float = 0.0) -> list[list[tuple[int, int]]]:
    """Tracks as [(frame index, face index)] from each sampled frame's boxes.

    A face joins the track whose last box overlaps it (IoU >= min_iou) or, failing that, whose last box's centre is
    nearest, within max_centre box sizes or frame_reach of the frame's diagonal (32 frames over a clip are far
    apart in time: a walking face moves a face width or more between them), and whose size is within a factor 2 of
    it; greedy, overlap then nearness first, one face per track per frame; a track unseen for max_gap frames ends."""
    tracks: list[list[tuple[int, int]]] = []
    last: list[tuple[int, tuple]] = []  # per track: (frame index, box)
    for f, boxes in enumerate(boxes_per_frame):
        pairs = []
        for ti, (lf, lb) in enumerate(last):
            if f - lf > max_gap:
                continue
            for j, b in enumerate(boxes):
                iou = _iou(lb, b)
                sa, sb = max(lb[2] - lb[0], lb[3] - lb[1], 1e-6), max(b[2] - b[0], b[3] - b[1], 1e-6)
                dist = math.dist(((lb[0] + lb[2]) / 2, (lb[1] + lb[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2))
                reach = max(max_centre * max(sa, sb), frame_reach * frame_diag)
                if iou >= min_iou or (dist <= reach and max(sa, sb) <= 2 * min(sa, sb)):
                    pairs.append((iou, -dist, ti, j))
        used_t, used_f = set(), set()
        for _, _, ti, j in sorted(pairs, reverse=True):
            if ti in used_t or j in used_f:
                continue
            used_t.add(ti)
            used_f.add(j)
            tracks[ti].append((f, j))
            last[ti] = (f, tuple(boxes_per_frame[f][j]))
        for j, b in enumerate(boxes):
            if j not in used_f:
                tracks.append([(f, j)])
                last.append((f, tuple(b)))
    return tracks


TRACK_HEADER = "file\ttrack\tframes\tseconds\tp_fake\tverdict"


def track_rows(record: dict) -> str:
    """A clip's record as `predict` rows: a `# file: ...` line (duration, frames, the clip's verdict), then one
    tab-separated row per track under TRACK_HEADER, most suspicious first."""
    head = (f"# {record['file']}: {record['duration'] or 0:.1f} s, {record['frames_sampled']} frames sampled, "
            f"{len(record['tracks'])} face track{'s' * (len(record['tracks']) != 1)}"
            + (f"; clip verdict: {record['verdict']}" if record["verdict"] else f"; {record['message']}"))
    rows = [head, TRACK_HEADER]
    for t in record["tracks"]:
        verdict = t["verdict"] + (f" ({t['reason']})" if t["verdict"] == "uncertain" and t["reason"] else "")
        rows.append(f"{record['file']}\t{t['track']}\t{t['n']}\t{t['start']:.1f}-{t['end']:.1f}\t"
                    f"{t['p_fake']:.6f}\t{verdict}")
    return "\n".join(rows)


def _margin(p_raw: float) -> float:
    p = min(max(float(p_raw), 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def analyze_video(model, path, frames: int = 32, limits: VideoLimits | None = None, max_faces: int = 8,
                  min_size: int | None = None, return_frames: bool = False):
    """One clip -> {"file", "duration", "fps", "frames_sampled", "tracks": [...], "verdict", "p_fake", "message",
    "calibrated", "tested_on", "aggregation"}, tracks most suspicious first, each {"track", "n", "p_fake",
    "verdict", "reason", "start", "end", "frames": [{"t", "box", "score", "p_fake", "verdict"}]}.
    return_frames: (record, [(time s, frame RGB at most 640 px, its scale)] of the frames sampled), for drawing."""
    from . import faces as F
    from .models import crop_size_of
    from .predict import model_notes
    from .trust import assess
    limits = limits or VideoLimits()
    if not 1 <= frames <= 256:
        raise ValueError(f"frames must be 1..256, got {frames}")
    deadline = Deadline(limits.seconds, "scoring this clip")
    size = crop_size_of(model)
    info: dict = {}
    found, times, shown, diag = [], [], [], 0.0
    for t, rgb in iter_frames(path, frames, limits, deadline, info):  # one frame at a time: only crops are kept
        deadline.check()
        diag = diag or math.hypot(*rgb.shape[:2])
        try:
            res = F.find_faces(rgb, max_faces=max_faces, min_size=min_size or VIDEO_MIN_FACE, size=size,
                               deadline=deadline)
            found.append(res.faces)
        except F.FaceError:
            found.append([])
        times.append(t)
        if return_frames:  # for display: the frame at most 640 px, boxes scaled with it
            k = min(1.0, 640 / max(rgb.shape[:2]))
            small = rgb if k == 1.0 else np.asarray(Image.fromarray(rgb).resize(
                (round(rgb.shape[1] * k), round(rgb.shape[0] * k))))
            shown.append((t, small, k))
    tracks = link_tracks([[f.box for f in faces] for faces in found], frame_diag=diag)
    crops = [found[f][j].crop for tr in tracks for f, j in tr]
    rows = iter(assess(model, crops)) if crops else iter(())
    trust = getattr(model, "trust", None)
    out_tracks = []
    for tr in tracks:
        per = []
        for f, j in tr:
            r, face = next(rows), found[f][j]
            per.append({"t": round(times[f], 3), "box": [round(float(v), 1) for v in face.box],
                        "score": None if math.isnan(face.score) else round(float(face.score), 4),
                        "p_fake": round(r["p_fake"], 6), "p_fake_raw": r["p_fake_raw"], "verdict": r["verdict"],
                        "reason": r["reason"]})
        m = float(np.mean([_margin(x.pop("p_fake_raw")) for x in per]))
        if trust is not None:
            p = float(trust.calibrate([m])[0])
            lo, hi = trust.band
            unlike = sum(x["reason"] == "unlike the training data" for x in per) > len(per) / 2
            verdict = "uncertain" if unlike or lo < p < hi else ("fake" if p >= hi else "real")
            reason = ("unlike the training data" if unlike else f"P(fake) between {lo:.2f} and {hi:.2f}"
                      if verdict == "uncertain" else None)
        else:
            p = 1 / (1 + math.exp(-m))
            verdict, reason = ("fake" if p >= float(model.threshold) else "real"), "not calibrated"
        out_tracks.append({"n": len(per), "p_fake": round(p, 6), "verdict": verdict, "reason": reason,
                           "start": per[0]["t"], "end": per[-1]["t"], "frames": per})
    out_tracks.sort(key=lambda t: -t["p_fake"])
    for i, t in enumerate(out_tracks, 1):
        t["track"] = i
    top = out_tracks[0] if out_tracks else None
    with_faces = sum(bool(f) for f in found)
    message = None if out_tracks else f"no face found in any of the {len(times)} frames sampled"
    record = {"file": str(path), "duration": info["duration"], "fps": info["fps"], "size": [info["width"],
              info["height"]], "frames_sampled": len(times), "frames_with_faces": with_faces,
              "tracks": out_tracks, "verdict": top["verdict"] if top else None,
              "p_fake": top["p_fake"] if top else None, "message": message, "aggregation": AGGREGATION,
              **model_notes(model)}
    return (record, shown) if return_frames else record
