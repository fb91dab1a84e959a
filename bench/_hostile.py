"""Hostile-file builders and fuzz helpers shared by tests/test_hostile_inputs.py and bench/robustness.py.

Every builder returns bytes (images) or writes a zip to `path` and returns it; all are cheap (a zip
bomb is streamed through zipfile, so even a 200 MiB one never sits in memory).

    IMAGE_CASES["cmyk_jpeg"]()            # -> (bytes, expect) with expect "error" or a check function
    ZIP_CASES["traversal"](tmp / "a.zip")  # -> path; extracting it must raise DataError
"""
from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

__all__ = ["png_bytes", "jpeg_bytes", "gif_bytes", "huge_png_header", "lying_jpeg", "IMAGE_CASES", "ZIP_CASES",
           "labelled_zip", "zip_bomb", "DECODED_LATER", "mutate", "seed_images", "tree_snapshot",
           "check_checkpoint_dir", "kill_resume_run", "make_lab_checkpoints", "start_app", "stop_app", "load_run"]


# ----------------------------------------------------------------------------------------------
# valid images


def _noise(size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def png_bytes(arr: np.ndarray | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_noise() if arr is None else arr).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray | None = None, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_noise() if arr is None else arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def gif_bytes(colors=((255, 0, 0), (0, 0, 255)), size: int = 32) -> bytes:
    """An animated GIF whose frames are flat `colors` (first frame red by default)."""
    frames = [Image.new("RGB", (size, size), c).convert("P") for c in colors]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def huge_png_header(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny valid PNG whose IHDR is patched to claim width x height (CRC fixed), a pixel-bomb header."""
    data = bytearray(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


# ----------------------------------------------------------------------------------------------
# the image table: name -> () -> (bytes, expect); expect is "error" or a check(arr) -> None


def _cmyk_jpeg() -> bytes:
    img = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _png16() -> bytes:
    a = np.full((32, 32), 40000, dtype=np.uint16)  # 40000 / 257 = 155.6
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")  # uint16 -> mode I;16
    return buf.getvalue()


def _la_png() -> bytes:
    a = np.zeros((32, 32, 2), np.uint8)
    a[..., 0], a[..., 1] = 200, 255
    buf = io.BytesIO()
    Image.frombytes("LA", (32, 32), a.tobytes()).save(buf, "PNG")
    return buf.getvalue()


def _exif_rotated_jpeg() -> bytes:
    """A 48x32 JPEG, left half black / right half white, with EXIF orientation 6 (rotate 90 CW)."""
    a = np.zeros((32, 48, 3), np.uint8)
    a[:, 24:] = 255
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def _near(expected, tol: int = 12) -> Callable[[np.ndarray], None]:
    def check(arr: np.ndarray) -> None:
        mean = arr.reshape(-1, 3).mean(0)
        assert np.all(np.abs(mean - np.asarray(expected)) <= tol), f"mean colour {mean.round(1)} != {expected}"
    return check


def lying_jpeg(w: int = 6000, h: int = 6000, quality: int = 90) -> bytes:
    """A 200x100 JPEG whose frame header says w x h: libjpeg would fill the missing rows with grey."""
    b = bytearray(jpeg_bytes(np.random.default_rng(0).integers(0, 256, (100, 200, 3), dtype=np.uint8), quality))
    i = b.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
    b[i + 5:i + 9] = h.to_bytes(2, "big") + w.to_bytes(2, "big")
    return bytes(b)


def _rotated(arr: np.ndarray) -> None:
    # after the EXIF rotation the image is 32 wide x 48 tall: top half black, bottom half white
    top, bottom = arr[:16].mean(), arr[-16:].mean()
    assert top < 60 and bottom > 195, (top, bottom)


IMAGE_CASES: dict[str, Callable[[], tuple[bytes, object]]] = {
    "empty_file": lambda: (b"", "error"),
    "html_renamed_png": lambda: (b"<!doctype html><html><body><script>alert(1)</script></body></html>\n" * 4,
                                 "error"),
    "png_30000x30000_header": lambda: (huge_png_header(), "error"),
    "truncated_png": lambda: (png_bytes(_noise(64))[:1500], "error"),
    "truncated_jpeg": lambda: (jpeg_bytes(_noise(64))[:600], "error"),
    "png_bad_crc_idat": lambda: (_corrupt_idat(png_bytes(_noise(64))), "error"),
    "one_pixel_png": lambda: (png_bytes(np.zeros((1, 1, 3), np.uint8)), "error"),
    "eps_renamed_png": lambda: (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n", "error"),
    "random_bytes": lambda: (np.random.default_rng(1).bytes(4096), "error"),
    "cmyk_jpeg": lambda: (_cmyk_jpeg(), _near((255, 0, 0), 20)),
    "png_16bit": lambda: (_png16(), _near((156, 156, 156), 2)),
    "animated_gif_first_frame": lambda: (gif_bytes(), _near((255, 0, 0), 8)),
    "la_png": lambda: (_la_png(), _near((200, 200, 200), 2)),
    "exif_rotated_jpeg": lambda: (_exif_rotated_jpeg(), _rotated),
    # issue 22.7: the header claims far more pixels than the data holds (sparse: refused from the header alone)
    "jpeg_header_6000x6000_data_200x100": lambda: (lying_jpeg(), "error"),
    "jpeg_header_6000x6000_data_200x100_q75": lambda: (lying_jpeg(quality=75), "error"),
    "jpeg_header_1200x1200_data_200x100": lambda: (lying_jpeg(1200, 1200), "error"),
}


def _corrupt_idat(data: bytes) -> bytes:
    i = data.index(b"IDAT") + 20
    return data[:i] + bytes(b ^ 0xFF for b in data[i:i + 64]) + data[i + 64:]


# ----------------------------------------------------------------------------------------------
# zips: name -> (path) -> path; extracting must raise DataError (and write nothing outside dest)


def labelled_zip(path, n: int = 4, size: int = 16, extra: dict[str, bytes] | None = None,
                 wrapper: str = "") -> Path:
    """A valid labelled zip: [wrapper/]real/*.png and [wrapper/]fake/*.png, n each, plus `extra` members."""
    path = Path(path)
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for cls in ("real", "fake"):
            for i in range(n):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                zf.writestr(f"{wrapper}{cls}/{i}.png", png_bytes(arr))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def zip_bomb(path, mib: int = 16, name: str = "real/bomb.png") -> Path:
    """One highly compressible member of `mib` MiB of zeros, streamed (never held in memory)."""
    path = Path(path)
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(_deflated(name), "w", force_zip64=True) as f:
            for _ in range(mib):
                f.write(chunk)
    return path


def _deflated(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _symlink(path) -> Path:
    info = zipfile.ZipInfo("real/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    info.create_system = 3  # unix
    return labelled_zip(path, extra={info: b"/etc/passwd"})  # type: ignore[dict-item]


def _many_files(path, n: int = 2001) -> Path:
    path = Path(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"real/{i}.png", b"")
    return path


def _lying_header(path) -> Path:
    """A member whose central directory claims 100 bytes but holds 64 KiB (a header that lies)."""
    path = labelled_zip(path, extra={"fake/liar.png": png_bytes(_noise(64))})
    data = bytearray(Path(path).read_bytes())
    cd = data.rindex(b"fake/liar.png")  # its central-directory entry (the last occurrence)
    hdr = cd - 46
    assert data[hdr:hdr + 4] == b"PK\x01\x02"
    data[hdr + 24:hdr + 28] = struct.pack("<I", 100)  # uncompressed size
    Path(path).write_bytes(bytes(data))
    return path


def _patched(path, member: str, patch: Callable[[bytearray, int, int], None]) -> Path:
    """labelled_zip + one noise PNG `member`; patch(data, central-dir entry offset, local-header offset)."""
    path = labelled_zip(path, extra={member: png_bytes(_noise(64))})
    data = bytearray(Path(path).read_bytes())
    cd = data.rindex(member.encode()) - 46
    local = struct.unpack("<I", data[cd + 42:cd + 46])[0]
    assert data[cd:cd + 4] == b"PK\x01\x02" and data[local:local + 4] == b"PK\x03\x04"
    patch(data, cd, local)
    Path(path).write_bytes(bytes(data))
    return path


def _bad_version(data: bytearray, cd: int, local: int) -> None:
    data[cd + 6] = 182  # "version needed to extract" 18.2: zipfile raises NotImplementedError on open


def _bad_deflate(data: bytearray, cd: int, local: int) -> None:
    start = local + 30 + sum(struct.unpack("<HH", data[local + 26:local + 30]))
    data[start + 3] ^= 0xFF  # noise deflates to stored blocks: break NLEN -> zlib.error while reading


ZIP_CASES: dict[str, Callable[[Path], Path]] = {
    "zip_bomb_ratio_16MiB": lambda p: zip_bomb(p, 16),
    "zip_bomb_total_210MiB": lambda p: zip_bomb(p, 210),
    "dotdot_path": lambda p: labelled_zip(p, extra={"../evil.png": png_bytes()}),
    "dotdot_inside_path": lambda p: labelled_zip(p, extra={"real/../../evil.png": png_bytes()}),
    "absolute_path": lambda p: labelled_zip(p, extra={"/tmp/fdftnet-evil.png": png_bytes()}),
    "windows_drive_path": lambda p: labelled_zip(p, extra={"C:/evil.png": png_bytes()}),
    "backslash_dotdot": lambda p: labelled_zip(p, extra={"real\\..\\..\\evil.png": png_bytes()}),
    "symlink_entry": _symlink,
    "nested_zip": lambda p: labelled_zip(p, extra={"real/inner.zip": b"PK\x05\x06" + bytes(18)}),
    "too_many_files": _many_files,
    "html_as_png_member": lambda p: labelled_zip(p, extra={"fake/x.png": b"<html>hi</html>"}),
    "pixel_bomb_member": lambda p: labelled_zip(p, extra={"fake/big.png": huge_png_header()}),
    "lying_size_header": _lying_header,
    "unsupported_zip_version": lambda p: _patched(p, "fake/zz.png", _bad_version),
    "corrupt_deflate_stream": lambda p: _patched(p, "fake/zz.png", _bad_deflate),
    "not_a_zip": lambda p: (Path(p).write_bytes(b"<html>not a zip</html>"), Path(p))[1],
    "empty_zip_file": lambda p: (Path(p).write_bytes(b""), Path(p))[1],
}

# extract_images_zip does not decode (Detect decodes each file and reports the bad ones): for these
# cases it extracts, and the bad member is a DataError when decoded
DECODED_LATER = ("html_as_png_member", "pixel_bomb_member")


# ----------------------------------------------------------------------------------------------
# fuzzing


def seed_images() -> list[bytes]:
    """Small valid PNG / JPEG / GIF / 16-bit PNG / CMYK JPEG bytes to mutate."""
    return [png_bytes(_noise(16)), jpeg_bytes(_noise(16)), gif_bytes(size=16), _png16(), _cmyk_jpeg()]


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) ops: 0 flip a byte, 1 truncate, 2 insert a byte, 3 overwrite 4 bytes."""
    b = bytearray(data)
    for kind, pos, val in ops:
        if not b:
            break
        i = pos % len(b)
        if kind == 0:
            b[i] ^= (val % 255) + 1
        elif kind == 1:
            del b[i:]
        elif kind == 2:
            b.insert(i, val % 256)
        else:
            b[i:i + 4] = struct.pack("<I", (val * 2654435761) & 0xFFFFFFFF)
    return bytes(b)


def tree_snapshot(root) -> set[str]:
    """Every path under root (relative, posix), symlinks not followed."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(Path(os.path.relpath(os.path.join(dirpath, n), root)).as_posix())
    return out


# ----------------------------------------------------------------------------------------------
# kill / resume: SIGKILL a CLI fine-tune at random points, check the directory after each kill


# on 2 shared cores, OpenMP's spinning threads make a 2-thread torch process ~6x slower than 1 thread
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CHECKPOINT_FILES = {"config.json", "model.safetensors", "README.md", "training.json", "roc.svg",
                    "last", "last.new", "last.old"}


def _wait_for(pred: Callable[[], bool], timeout: float, proc=None, poll: float = 0.02) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(poll)
    return False


def _resume_epoch(out: Path) -> int:
    try:
        return int(json.loads((out / "last" / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def check_checkpoint_dir(out: Path) -> list[str]:
    """Problems with a checkpoint directory as a kill left it ([] = fine): it must load, resume state must
    read (or be None) without raising, and temp files must be dot-names that no reader picks up."""
    import zipfile as _zip

    from fdftnet import load_model
    from fdftnet.archive import zip_dir
    from fdftnet.checkpoint import read_resume_state
    problems = []
    if (out / "config.json").exists():
        try:
            load_model(out)
        except Exception as e:  # noqa: BLE001 - counted, reported
            problems.append(f"load_model: {type(e).__name__}: {e}")
    try:
        saved = read_resume_state(out)
        if saved is not None and not 1 <= int(saved[0]["epoch"]):
            problems.append(f"resume state with epoch {saved[0]['epoch']}")
    except Exception as e:  # noqa: BLE001
        problems.append(f"read_resume_state raised {type(e).__name__}: {e}")
    if out.exists():
        odd = [p.name for p in out.iterdir() if p.name not in CHECKPOINT_FILES and not p.name.startswith(".")]
        if odd:
            problems.append(f"unexpected non-temp entries {odd}")
        if (out / "config.json").exists():
            z = zip_dir(out, out.parent / f"{out.name}-download.zip")
            with _zip.ZipFile(z) as zf:
                leaked = [n for n in zf.namelist() if n.startswith((".", "last"))]
            os.unlink(z)
            if leaked:
                problems.append(f"temp/resume files in the download zip: {leaked}")
    return problems


def kill_resume_run(data: Path, base: Path, out: Path, kills: int = 3, epochs: int = 6, seed: int = 0,
                    timeout: float = 60.0, python: str = sys.executable, log=None) -> dict:
    """Launch `fdftnet finetune`, SIGKILL it `kills` times at seeded random points, then --resume to the end.

    Kill points alternate between "a random 0-0.35 s after the next epoch's resume state appears"
    (mid-epoch / mid-save) and "a random 1-6 s after launch" (startup, data loading, first epochs).
    Returns counts: kills done, check failures (a checkpoint that did not load), progress regressions,
    whether the final resume completed, the final epoch, and the problems seen.
    """
    rng = random.Random(seed)
    cmd = [python, "-m", "fdftnet", "finetune", "--data", str(data), "--backbone-from", str(base), "--out",
           str(out), "--epochs", str(epochs), "--batch-size", "8", "--patience", "99", "--shots", "16",
           "--device", "cpu", "--resume"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **ONE_THREAD)
    stats = {"kills": 0, "launches": 0, "checkpoint_load_failures": 0, "regressions": 0,
             "resumed_to_completion": False, "final_epoch": 0, "kill_epochs": [], "problems": []}
    logf = open(log, "ab") if log else subprocess.DEVNULL
    try:
        for k in range(kills):
            before = _resume_epoch(out)
            if before >= epochs:
                break
            proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, env=env)
            stats["launches"] += 1
            try:
                if k % 2 == 0:  # mid-epoch or mid-save: just after an epoch's state landed
                    _wait_for(lambda: _resume_epoch(out) > before, timeout, proc)
                    time.sleep(rng.uniform(0.0, 0.35))
                else:  # anywhere from startup into the first epochs
                    _wait_for(lambda: False, rng.uniform(1.0, 6.0), proc)
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    stats["kills"] += 1
                proc.wait(10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            problems = check_checkpoint_dir(out)
            after = _resume_epoch(out)
            stats["kill_epochs"].append(after)
            if problems:
                stats["checkpoint_load_failures"] += 1
                stats["problems"] += problems
            if after < before:
                stats["regressions"] += 1
                stats["problems"].append(f"resume epoch went back from {before} to {after}")
        proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, env=env)
        stats["launches"] += 1
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            rc = None
            stats["problems"].append(f"final --resume run did not finish in {timeout} s")
    finally:
        if log:
            logf.close()
    stats["final_epoch"] = _resume_epoch(out)
    problems = check_checkpoint_dir(out)
    stats["problems"] += problems
    stats["resumed_to_completion"] = (rc == 0 and stats["final_epoch"] == epochs and not problems
                                      and (out / "training.json").exists())
    stats["stale_temp_entries"] = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    return stats


# ----------------------------------------------------------------------------------------------
# load: many /detect calls from several gradio_client callers while a fine-tune runs in the app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_lab_checkpoints(root: Path) -> Path:
    """root/{fdftnet,baseline}/ tiny squeezenet checkpoints and root/default.json pointing at them."""
    import torch

    from fdftnet import BaselineDetector, FDFtNet
    torch.manual_seed(0)
    FDFtNet(backbone="squeezenet", mb_blocks=2).save_pretrained(root / "fdftnet")
    BaselineDetector(backbone="squeezenet").save_pretrained(root / "baseline")
    (root / "default.json").write_text(json.dumps({"fdftnet": "fdftnet", "baseline": "baseline"}))
    return root


def start_app(work: Path, app_py: Path, python: str = sys.executable, timeout: float = 60.0, env: dict | None = None):
    """Launch the lab in a subprocess on a free loopback port -> (proc, url, log path)."""
    port = free_port()
    ckpt = make_lab_checkpoints(work / "checkpoints")
    (work / "results").mkdir(exist_ok=True)
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "FDFTNET_CHECKPOINTS": str(ckpt), "FDFTNET_RESULTS": str(work / "results"), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "TMPDIR": str(work),
           "GRADIO_TEMP_DIR": str(work / "gradio"), "NO_PROXY": "127.0.0.1,localhost", **(env or {})}  # env wins
    log = work / "app.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([python, str(app_py)], cwd=str(app_py.parent), stdout=f, stderr=f, env=env)
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        try:
            with urllib.request.urlopen(url + "config", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    if not _wait_for(up, timeout, proc, poll=0.25):
        stop_app(proc)
        raise RuntimeError(f"the app did not answer in {timeout} s:\n{log.read_text()[-2000:]}")
    return proc, url, log


def stop_app(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def load_run(url: str, work: Path, requests: int = 200, callers: int = 4, ft_images: int = 40,
             ft_epochs: int = 50, timeout: float = 600.0) -> dict:
    """Start a fine-tune through /finetune, then send exactly `requests` /detect calls from `callers` threads.

    The work is bounded by count, not by a time window: every request is sent and its answer awaited, and
    `timeout` only guards against a hang (per call, and for the fine-tune's first epoch), so it is generous on
    purpose; speed figures belong to bench/, not to a pass/fail. Returns {"requests" (sent), "callers", "failed"
    (errors, bad answers, calls unanswered after `timeout`), "p50_ms", "p95_ms", "during_finetune",
    "answered_during_finetune", "finetune_epochs_during_load", "finetune_error", "errors"}: during_finetune is
    true when the fine-tune was training (past its first epoch) when the first request went out and every
    caller's first answer came back before it ended, i.e. detection was not queued behind it.
    """
    from gradio_client import Client, handle_file
    work.mkdir(parents=True, exist_ok=True)
    z = labelled_zip(work / "ft.zip", n=ft_images, size=64)
    rng = np.random.default_rng(1)
    faces = []
    for i in range(4):
        p = work / f"face{i}.png"
        p.write_bytes(png_bytes(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
        faces.append(str(p))
    clients = [Client(url, verbose=False, analytics_enabled=False) for _ in range(callers)]
    job = clients[0].submit(handle_file(str(z)), None, None, "default-baseline", 0, ft_epochs, True, 3, 10,
                            api_name="/finetune")
    _wait_for(lambda: len(job.outputs()) >= 2 or job.done(), timeout, poll=0.1)
    training_at_start = len(job.outputs()) >= 2 and not job.done()
    outputs_at_start = len(job.outputs())
    lat, errors, during, lock = [], [], [], threading.Lock()
    counter = iter(range(requests))

    def next_request() -> int | None:
        with lock:
            return next(counter, None)

    def caller(c) -> None:
        first = True
        while (i := next_request()) is not None:
            t0 = time.perf_counter()
            try:
                res = c.submit(handle_file(faces[i % len(faces)]), "default", api_name="/detect").result(timeout)
                ok = isinstance(res[1], float) and 0.0 <= res[1] <= 1.0 and res[0]["label"] in ("real", "fake")
                err = None if ok else f"bad answer {res[:2]!r}"
            except Exception as e:  # noqa: BLE001 - counted (a TimeoutError is a call left unanswered)
                err = f"{type(e).__name__}: {str(e)[:200]}"
            training = not job.done()
            with lock:
                (errors.append(err) if err else lat.append(1000 * (time.perf_counter() - t0)))
                during.append((first, training))
            first = False

    threads = [threading.Thread(target=caller, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()  # every call inside is bounded by `timeout`
    epochs_during = len(job.outputs()) - outputs_at_start
    ft_error = None
    if job.done():
        try:
            job.result()
        except Exception as e:  # noqa: BLE001
            ft_error = f"{type(e).__name__}: {str(e)[:200]}"
    job.cancel()
    sent = len(lat) + len(errors)
    arr = np.asarray(lat or [float("nan")])
    firsts_while_training = [training for first, training in during if first]
    return {"requests": sent, "callers": callers, "failed": len(errors) + (requests - sent),
            "p50_ms": round(float(np.percentile(arr, 50)), 1), "p95_ms": round(float(np.percentile(arr, 95)), 1),
            "during_finetune": bool(training_at_start and firsts_while_training and all(firsts_while_training)),
            "answered_during_finetune": sum(training for _, training in during),
            "finetune_epochs_during_load": epochs_during, "finetune_error": ft_error, "errors": errors[:5]}
