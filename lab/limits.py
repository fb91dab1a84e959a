"""Every limit of a public deployment in one place: what one visitor may take of the server's CPU, queue and disk.

Each limit is read from its environment variable at the time it is used (docs/lab.md "Settings for a public
deployment" lists them). FDFTNET_PUBLIC (default: on where SPACE_ID is set, i.e. on a Hugging Face Space) turns on
the per-client limits: one detection and one training job at a time per client, and a disk quota per client, where
a client is its IP address (with FDFTNET_PROXY_HOPS trusted proxies in front: the address the nearest proxy saw),
not a page load. Budgets of work (face finding, sweeps, the training queue, uploads) apply everywhere.

    with limits.one_at_a_time(request, "detect"): ...     # DataError when this client already has one running
    limits.setting("FDFTNET_DETECT_SECONDS")             # 5.0
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import defaultdict

from fdftnet.data import DataError

__all__ = ["DEFAULTS", "setting", "public", "client_of", "one_at_a_time", "TrainingQueue", "TRAINING", "wait_turn",
           "queue_note", "UploadLog", "UPLOADS"]

# name -> (default, what it bounds); docs/lab.md's table is checked against this (tests/test_docs.py)
DEFAULTS = {
    "FDFTNET_DETECT_SECONDS": (5.0, "face finding in one photo (s); past it the photo is refused in one line"),
    "FDFTNET_REQUEST_SECONDS": (10.0, "one /detect request (s)"),
    "FDFTNET_BATCH_SECONDS": (None, "one /detect_many request (s); it scores what fits and lists the rest (default "
                                    "15 on a public server, 600 elsewhere)"),
    "FDFTNET_VIDEO_SECONDS": (30.0, "one /detect_video clip: decoding, detection and scoring (s)"),
    "FDFTNET_VIDEO_MAX_SECONDS": (600.0, "the longest clip /detect_video takes (s), read from its header"),
    "FDFTNET_SWEEP_MAX_RUNS": (40, "runs of one compare-methods sweep (k values x methods x seeds)"),
    "FDFTNET_SWEEP_MAX_MINUTES": (15.0, "estimated minutes of one sweep; a sweep still running at twice this stops "
                                        "and keeps what it finished"),
    "FDFTNET_QUEUE_WAIT": (600.0, "seconds a fine-tune, sweep or robustness run waits for the training slot before "
                                  "it is refused"),
    "FDFTNET_CLIENT_MB": (500.0, "disk one client may hold: its sessions' folders and its recent uploads (MB)"),
    "FDFTNET_LAB_MB": (2048.0, "disk the whole lab may hold: every session, upload and Hub download (MB)"),
    "FDFTNET_UPLOAD_MB": (100.0, "one upload request (MB)"),
    "FDFTNET_CACHE_SECONDS": (540, "Gradio's copies of uploads and outputs are deleted this many seconds after "
                                   "they were made (checked every minute)"),
    "FDFTNET_PROXY_HOPS": (None, "trusted proxies in front of the server (default 1 on a Space, else 0)"),
    "FDFTNET_PUBLIC": (None, "per-client limits on (1) or off (0); default on where SPACE_ID is set"),
}


def setting(name: str):
    """The value of limit `name`: its environment variable if set (a number), else its default."""
    default = DEFAULTS[name][0]
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return int(value) if isinstance(default, int) else value


def public() -> bool:
    """Are the per-client limits on? FDFTNET_PUBLIC=0/1, default on where SPACE_ID is set (a Hugging Face Space)."""
    flag = os.environ.get("FDFTNET_PUBLIC")
    if flag is None or not flag.strip():
        return bool(os.environ.get("SPACE_ID"))
    return flag.strip().lower() in ("1", "true", "yes", "on")


def client_of(request) -> str:
    """The client a request comes from: its IP address, or behind FDFTNET_PROXY_HOPS trusted proxies the address
    the nearest one appended to X-Forwarded-For (the entries before it are the client's own words)."""
    hops = os.environ.get("FDFTNET_PROXY_HOPS")
    hops = int(hops) if hops and hops.strip().isdigit() else (1 if os.environ.get("SPACE_ID") else 0)
    headers = getattr(request, "headers", None) or {}
    forwarded = [h.strip() for h in (headers.get("x-forwarded-for") or "").split(",") if h.strip()]
    if hops and forwarded:
        return forwarded[-min(hops, len(forwarded))]
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "local"


# ----------------------------------------------------------------------------------------------
# CPU threads per request


def detection_threads() -> None:
    """Face finding and scoring run on one CPU thread (set in the worker thread that runs the request): MTCNN's many
    small ops gain nothing from a second thread, and requests then run side by side instead of queueing, so an
    ordinary photo is not held up behind heavy ones (bench/public_hardening.py "bystander")."""
    import torch
    torch.set_num_threads(1)


def training_threads() -> None:
    """Training uses every core (set in the worker thread that runs it; one job trains at a time)."""
    import torch
    torch.set_num_threads(os.cpu_count() or 1)


# ----------------------------------------------------------------------------------------------
# one job of a kind per client

_BUSY: dict[tuple[str, str], int] = defaultdict(int)
_LOCK = threading.Lock()
_WHAT = {"detect": "face detection", "train": "training job (fine-tune, sweep or robustness run)"}


@contextlib.contextmanager
def one_at_a_time(request, kind: str):
    """With the per-client limits on, a client runs one job of `kind` at a time: a second is refused at once."""
    if not public() or request is None:
        yield
        return
    key = (client_of(request), kind)
    with _LOCK:
        if _BUSY[key]:
            raise DataError(f"you already have a {_WHAT.get(kind, kind)} running on this server: wait for it to "
                            f"finish (one at a time per visitor)")
        _BUSY[key] += 1
    try:
        yield
    finally:
        with _LOCK:
            _BUSY[key] -= 1
            if not _BUSY[key]:
                del _BUSY[key]


# ----------------------------------------------------------------------------------------------
# the training slot: one job trains at a time; others wait at most FDFTNET_QUEUE_WAIT seconds


class TrainingQueue:
    """One training slot, first come first served, with a bounded wait.

    `wait(name)` is a generator: it yields the number of jobs ahead while it waits (for a status line), returns
    once the slot is this job's, and raises DataError once it has waited FDFTNET_QUEUE_WAIT seconds. The caller
    must `release()` the slot (in a finally) once it has it.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._line: list[object] = []  # waiting and running tokens, oldest first; [0] holds the slot

    def wait(self, poll: float = 1.0):
        """Yields the number of jobs ahead each time it changes; returns this job's token once it holds the slot."""
        token = object()
        limit = float(setting("FDFTNET_QUEUE_WAIT"))
        start, told = time.monotonic(), None
        with self._cond:
            self._line.append(token)
        try:
            while True:
                with self._cond:
                    ahead = self._line.index(token)
                    if ahead == 0:
                        return token
                    left = limit - (time.monotonic() - start)
                    if left <= 0:
                        raise DataError(f"the training queue is full: {ahead} job{'s' * (ahead > 1)} still ahead "
                                        f"after {limit:.0f} s of waiting (this server's limit); try again later")
                    if ahead != told:
                        told = ahead
                    else:
                        self._cond.wait(min(poll, left))
                        continue
                yield ahead
        except BaseException:
            self.release(token)
            raise

    @contextlib.contextmanager
    def hold(self):
        """The slot for a block of code (blocking while it waits, DataError past the limit)."""
        waiting = self.wait()
        try:
            while True:
                next(waiting)
        except StopIteration as done:
            token = done.value
        try:
            yield
        finally:
            self.release(token)

    def release(self, token) -> None:
        with self._cond:
            if token in self._line:
                self._line.remove(token)
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._line)


TRAINING = TrainingQueue()


def wait_turn(status):
    """For a generator handler: `token = yield from wait_turn(lambda ahead: outputs)` yields the handler's outputs
    for each change in the number of jobs ahead, and returns the slot's token (release it with TRAINING.release)."""
    waiting = TRAINING.wait()
    while True:
        try:
            ahead = next(waiting)
        except StopIteration as done:
            return done.value
        yield status(ahead)


def queue_note(ahead: int) -> str:
    limit = float(setting("FDFTNET_QUEUE_WAIT"))
    return (f"waiting for the training slot: {ahead} job{'s' * (ahead > 1)} ahead (one trains at a time; after "
            f"{limit:.0f} s of waiting this one is refused)")


# ----------------------------------------------------------------------------------------------
# uploads per client (Gradio's own upload route, counted by lab.uploads_guard's middleware)


class UploadLog:
    """Bytes each client uploaded, kept for FDFTNET_CACHE_SECONDS (as long as Gradio keeps the files)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._log: dict[str, list[tuple[float, int]]] = defaultdict(list)

    def recent(self, client: str) -> int:
        keep = time.monotonic() - float(setting("FDFTNET_CACHE_SECONDS"))
        with self._lock:
            self._log[client] = [(t, n) for t, n in self._log[client] if t >= keep]
            return sum(n for _, n in self._log[client])

    def add(self, client: str, nbytes: int) -> None:
        with self._lock:
            self._log[client].append((time.monotonic(), int(nbytes)))


UPLOADS = UploadLog()
