"""Video clips for the tests and the video bench, made here with PyAV (no clip is shipped): faces moved across a
background, and the hostile files of issue #33 (a header that lies, truncated, audio only, a still image renamed).

The faces are skimage's astronaut (public domain) or any crops given; a clip is H.264 in mp4 unless asked otherwise.
"""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["astronaut_face", "make_clip", "lying_duration", "lying_size_y4m", "truncated", "audio_only",
           "still_renamed"]


def astronaut_face(side: int = 200) -> np.ndarray:
    """The astronaut's head and shoulders (a 210-px square around her face), `side` px: the face about 40% of it."""
    from skimage import data
    return np.asarray(Image.fromarray(data.astronaut()).crop((120, 20, 330, 230)).resize((side, side)))


def make_clip(path, faces: list[np.ndarray] | None = None, seconds: float = 4.0, fps: int = 25, width: int = 640,
              height: int = 360, rotate: int = 0, codec: str = "libx264") -> Path:
    """A clip of `faces` (default: one astronaut) moving across a grey background: the first left to right along
    the top, the second right to left along the bottom (they never overlap); none: an empty background. rotate:
    90/180/270 written as the stream's display rotation (the frames themselves stay landscape)."""
    import av
    faces = [astronaut_face(min(200, height // 2 - 10))] if faces is None else faces
    path = Path(path)
    turns = (rotate // 90) % 4
    coded_w, coded_h = (height, width) if turns % 2 else (width, height)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = coded_w, coded_h, "yuv420p"
        if turns:
            s.set_display_rotation(rotate)  # a display matrix, as a phone writes it
        n = max(1, int(seconds * fps))
        for i in range(n):
            img = np.full((height, width, 3), 70, np.uint8)
            for k, face in enumerate(faces[:2]):
                fh, fw = face.shape[:2]
                x = int(10 + (width - fw - 20) * (i / n if k == 0 else 1 - i / n))
                y = 5 if k == 0 else height - fh - 5
                img[y:y + fh, x:x + fw] = face
            coded = np.ascontiguousarray(np.rot90(img, k=-turns)) if turns else img  # upright after the rotation
            frame = av.VideoFrame.from_ndarray(coded, format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def lying_duration(src, path, seconds: float = 4e4) -> Path:
    """A copy of an mp4 whose movie and track headers claim `seconds` (4e4 s: 10^6 frames at 25 fps)."""
    data = bytearray(Path(src).read_bytes())
    for box in (b"mvhd", b"mdhd"):
        i = data.find(box)
        while i >= 0:
            version = data[i + 4]
            if version == 0:
                scale = struct.unpack(">I", data[i + 16:i + 20])[0]
                data[i + 20:i + 24] = struct.pack(">I", min(0xFFFFFFFF, int(seconds * scale)))
            i = data.find(box, i + 4)
    path = Path(path)
    path.write_bytes(bytes(data))
    return path


def lying_size_y4m(path, width: int = 20000, height: int = 20000) -> Path:
    """A raw YUV4MPEG2 stream whose header claims width x height frames (1.5 bytes a pixel: 600 MB a frame) and
    holds 64 bytes of picture."""
    path = Path(path)
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + bytes(64))
    return path


def truncated(src, path, keep: float = 0.4) -> Path:
    data = Path(src).read_bytes()
    path = Path(path)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def audio_only(path, seconds: float = 1.0, rate: int = 16000) -> Path:
    """An mp4 holding one AAC audio stream and no video."""
    import av
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=rate)
        t = np.arange(int(seconds * rate)) / rate
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = rate
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def still_renamed(path) -> Path:
    """A PNG photo named like a clip."""
    buf = io.BytesIO()
    Image.fromarray(astronaut_face()).save(buf, format="PNG")
    path = Path(path)
    path.write_bytes(buf.getvalue())
    return path
