"""Lab state: the checkpoints on disk, a read-only model cache, per-session folders and the handler guard.

Per-session state is a plain dict kept in one `gr.State` (deep-copyable, STYLE A3): {"dir": the
session's temp folder or None, "models": [{"label", "dir", ...}], "runs": [bench-format run dicts]}.
Fine-tuned models live on disk in that folder; models themselves are only ever held in `_CACHE`,
read-only (eval mode, no parameter is written), keyed by their directory and its config.json mtime.

A public server must not fill its disk: a session folder goes when its session ends, when it has been idle
for FDFTNET_SESSION_TTL seconds (API clients never end theirs), and when the server stops; a new server
removes the folders of servers that died. FDFTNET_LOCAL_PATHS=0 (the default on a Space) turns off typed
local folders: models then come from the list, this session or the Hub.
"""
import atexit
import ctypes
import functools
import gc
import inspect
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections import OrderedDict, defaultdict
from pathlib import Path

import gradio as gr

import fdftnet
from fdftnet.checkpoint import MODEL_CLASSES
from fdftnet.data import DataError
from fdftnet.models import read_config, resolve_file
from fdftnet.train import TrainingError

from . import limits

log = logging.getLogger("fdftnet.lab")
USER_ERRORS = (DataError, fdftnet.CheckpointError, TrainingError, ValueError)
DEFAULT, DEFAULT_BASELINE = "default", "default-baseline"
_CACHE: "OrderedDict[tuple, object]" = OrderedDict()  # read-only models, shared by all sessions
_LOCK = threading.Lock()
CANCELLED: set[str] = set()  # session hashes whose fine-tune should stop at the next step
PREFIX = "fdftnet-lab-"
# idle seconds before a session folder goes: 9 min on a public server (+ a janitor round: gone 10 min after a visitor)
SESSION_TTL = float(os.environ.get("FDFTNET_SESSION_TTL") or (540 if limits.public() else 3600))
SESSION_MB = float(os.environ.get("FDFTNET_SESSION_MB", 300))  # disk one session may hold (4-5 fine-tunes)
MAX_MODELS = 5  # fine-tuned models one session keeps (a fine-tune or a sweep's best; each a checkpoint on disk)


def new_session() -> dict:
    return {"dir": None, "models": [], "runs": []}


def drop_session(session: dict) -> None:
    """gr.State delete_callback: remove the session's temp folder."""
    if session and session.get("dir"):
        shutil.rmtree(session["dir"], ignore_errors=True)


def local_paths_allowed() -> bool:
    """May a visitor type a local folder? FDFTNET_LOCAL_PATHS=0/1; default on, off on a Space (SPACE_ID set)."""
    flag = os.environ.get("FDFTNET_LOCAL_PATHS")
    if flag is None:
        return not os.environ.get("SPACE_ID")
    return flag.strip().lower() in ("1", "true", "yes", "on")


# ----------------------------------------------------------------------------------------------
# session folders: $TMPDIR/fdftnet-lab-<server pid>-<session>-<random>


def _own_prefix() -> str:
    return f"{PREFIX}{os.getpid()}-"  # the pid tells a later server which folders belong to a dead one


def session_dir(session: dict, request: gr.Request | None = None) -> Path:
    """The session's folder (made on first use, again after it expired); using it marks the session active. The
    folder is booked to the request's client (lab.limits.client_of), whose disk quota counts every such folder."""
    d = session.get("dir")
    if not d or not os.path.isdir(d):
        tag = re.sub(r"[^A-Za-z0-9]", "", getattr(request, "session_hash", None) or "local")[:12] or "local"
        session["dir"] = d = tempfile.mkdtemp(prefix=f"{_own_prefix()}{tag}-")
        session["models"] = [m for m in session.get("models", []) if os.path.isdir(m["dir"])]  # expired ones go
        session["client"] = limits.client_of(request) if request is not None else session.get("client", "local")
        with _LOCK:
            _CLIENT_DIRS[session["client"]].add(d)
        _start_janitor()
    os.utime(d)
    return Path(d)


_CLIENT_DIRS: "defaultdict[str, set[str]]" = defaultdict(set)  # client -> its session folders (a reload makes more)


def check_room(session: dict) -> None:
    """DataError when the session's folder holds SESSION_MB, its client (per-client limits on) FDFTNET_CLIENT_MB in
    all its sessions and recent uploads, or the whole lab FDFTNET_LAB_MB."""
    d = session.get("dir")
    used = _bytes_under(d) if d and os.path.isdir(d) else 0
    if used > SESSION_MB * 2**20:
        raise DataError(f"this session already keeps {used / 2**20:.0f} MB on the server (limit {SESSION_MB:.0f} MB):"
                        f" reload the page to start a fresh session")
    client = session.get("client")
    if limits.public() and client:
        with _LOCK:
            dirs = [x for x in _CLIENT_DIRS[client] if os.path.isdir(x)]
            _CLIENT_DIRS[client] = set(dirs)
        mine = sum(_bytes_under(x) for x in dirs) + limits.UPLOADS.recent(client)
        cap = float(limits.setting("FDFTNET_CLIENT_MB"))
        if mine > cap * 2**20:
            raise DataError(f"you already keep {mine / 2**20:.0f} MB on this server (limit {cap:g} MB a visitor, "
                            f"across page loads): wait a few minutes for old sessions and uploads to expire")
    total, cap = footprint(), float(limits.setting("FDFTNET_LAB_MB"))
    if total > cap * 2**20:
        raise DataError(f"this server's disk budget ({cap:g} MB for every visitor together) is full: try again in a "
                        f"few minutes")


_FOOTPRINT = {"t": -1e9, "bytes": 0}


def footprint(max_age: float = 5.0) -> int:
    """Bytes the lab keeps on disk: every session folder of this server and Gradio's upload folder (re-counted at
    most every `max_age` s)."""
    now = time.monotonic()
    if now - _FOOTPRINT["t"] > max_age:
        from gradio.utils import get_upload_folder
        folders = [*_folders(), get_upload_folder()]
        _FOOTPRINT.update(t=now, bytes=sum(_bytes_under(f) for f in folders if os.path.isdir(f)))
    return _FOOTPRINT["bytes"]


def _bytes_under(d: str | os.PathLike) -> int:
    """Bytes of the files under d. Files and folders that go while it counts (a finished request's extraction
    folder, the janitor) are skipped: os.walk ignores a folder that vanished, and a file that did counts 0."""
    total = 0
    for root, _, files in os.walk(d):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _folders(own_only: bool = True) -> list[Path]:
    prefix = _own_prefix() if own_only else PREFIX
    return [p for p in Path(tempfile.gettempdir()).glob(prefix + "*") if p.is_dir()]


def expire_idle(ttl: float | None = None) -> list[Path]:
    """Remove this server's session folders idle for more than `ttl` s (default SESSION_TTL); returns them."""
    ttl = SESSION_TTL if ttl is None else ttl
    gone = []
    for d in _folders():
        try:
            idle = time.time() - d.stat().st_mtime
        except OSError:
            continue
        if idle > ttl:
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale() -> list[Path]:
    """At startup: remove the session folders of servers that are no longer running (and old unowned ones)."""
    gone = []
    for d in _folders(own_only=False):
        m = re.match(rf"{PREFIX}(\d+)-", d.name)
        try:
            stale = (not _alive(int(m.group(1)))) if m else time.time() - d.stat().st_mtime > SESSION_TTL
        except OSError:
            continue
        if stale and not d.name.startswith(_own_prefix()):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


@atexit.register
def clean_all() -> None:
    """At shutdown (atexit; app.py turns SIGTERM into an exit): remove every folder of this server."""
    for d in _folders():
        shutil.rmtree(d, ignore_errors=True)


_JANITOR: list[threading.Thread] = []


def _start_janitor() -> None:
    with _LOCK:
        if _JANITOR:
            return

        def loop():
            while True:
                time.sleep(max(1.0, min(60.0, SESSION_TTL / 4)))
                for d in expire_idle():
                    log.info("session folder %s expired after %.0f s idle", d.name, SESSION_TTL)

        _JANITOR.append(threading.Thread(target=loop, name="fdftnet-lab-janitor", daemon=True))
        _JANITOR[0].start()


def in_background(fn, status, interval: float = 1.0):
    """For a generator handler: `result = yield from in_background(fn, status)` runs fn() on a thread and yields
    status() every `interval` s while it runs (a page never looks frozen during a long step, e.g. finding the faces
    of an upload); returns fn's result, or raises its error."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the handler's thread
            out["error"] = e

    t = threading.Thread(target=run, name="fdftnet-lab-step", daemon=True)
    t.start()
    while True:
        t.join(interval)
        if not t.is_alive():
            break
        yield status()
    if "error" in out:
        raise out["error"]
    return out["value"]


def release_memory() -> None:
    """After a fine-tune: collect its objects and hand freed heap pages back to the OS (glibc keeps them)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the pages stay with the process until reused
        pass


def guard(fn):
    """Handler boundary: user errors become a one-line gr.Error and one log line; anything else is logged
    with its traceback (once) and shown only as its type."""
    def convert(e: Exception):
        if isinstance(e, gr.Error) or isinstance(e, USER_ERRORS):
            msg = (str(getattr(e, "message", e)).splitlines() or [type(e).__name__])[0] or type(e).__name__
            msg = scrub_paths(msg)  # a visitor never sees where the server keeps its files
            log.info("%s refused: %s", fn.__name__, msg)  # expected: one line, no traceback
            return gr.Error(msg, print_exception=False)
        log.exception("handler %s failed", fn.__name__)
        return gr.Error(f"internal error: {type(e).__name__}", print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - the boundary
                raise convert(e) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the boundary
            raise convert(e) from None
    return wrapper


# ----------------------------------------------------------------------------------------------
# checkpoints/ discovery


def checkpoints_root() -> Path:
    return Path(os.environ.get("FDFTNET_CHECKPOINTS", "checkpoints"))


def discover() -> dict:
    """{"fdftnet": [dirs], "baseline": [dirs], "default": {"fdftnet": dir|None, "baseline": dir|None}}."""
    root = checkpoints_root()
    found = {"fdftnet": [], "baseline": []}
    for d in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        try:
            kind = json.loads((d / "config.json").read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            continue
        if kind in found:
            found[kind].append(str(d))
    try:
        pref = json.loads((root / "default.json").read_text())
    except (OSError, ValueError):
        pref = {}
    default = {}
    for kind, dirs in found.items():
        want = str(root / pref[kind]) if isinstance(pref, dict) and isinstance(pref.get(kind), str) else None
        default[kind] = want if want in dirs else (dirs[0] if dirs else None)
    return {**found, "default": default}


def missing_default_message(kind: str = "fdftnet") -> str:
    return (f"no default checkpoint yet: {checkpoints_root()}/ holds no {kind} checkpoint (a folder whose "
            f"config.json has model_type \"{kind}\"); pick a fine-tuned model or type a local folder or Hub id")


# ----------------------------------------------------------------------------------------------
# model resolution and cache

_HUB = {"t": 0.0, "ok": False}


def hub_reachable(timeout: float = 2.0) -> bool:
    """Can the Hub be reached? Checked at most once a minute, never waiting more than `timeout` s."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    if time.monotonic() - _HUB["t"] < 60:
        return _HUB["ok"]
    from urllib.parse import urlsplit
    url = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    except ValueError:  # a malformed port in HF_ENDPOINT
        return False
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    t.start()
    t.join(timeout + 0.5)
    _HUB.update(t=time.monotonic(), ok=bool(result))
    return _HUB["ok"]


def _listed(session: dict | None) -> set[str]:
    """Real paths of the folders a visitor may use when typed local folders are off."""
    found = discover()
    mine = [p for m in (session or {}).get("models", []) for p in (m["dir"], m.get("base", ""))]
    return {os.path.realpath(d) for d in found["fdftnet"] + found["baseline"] + mine if d}


def _mine(path: str, session: dict | None) -> bool:
    """Is `path` inside this session's own folder?"""
    d = (session or {}).get("dir")
    return bool(d) and os.path.realpath(path).startswith(os.path.realpath(d) + os.sep)


def resolve(choice: str, session: dict | None = None) -> str:
    """A model choice (default, default-baseline, a local folder, a Hub id) -> a local checkpoint folder."""
    choice = (choice or "").strip()
    if choice in ("", DEFAULT, DEFAULT_BASELINE):
        kind = "baseline" if choice == DEFAULT_BASELINE else "fdftnet"
        found = discover()["default"][kind]
        if not found:
            raise fdftnet.CheckpointError(missing_default_message(kind))
        return found
    local = os.path.isdir(choice) or choice.startswith(("/", ".", "~")) or choice.count("/") > 1
    allowed = lambda: _mine(choice, session) or os.path.realpath(choice) in _listed(session)  # noqa: E731
    if local and not local_paths_allowed() and not allowed():
        raise fdftnet.CheckpointError("typed local folders are turned off on this server: pick a model from the "
                                      "list, or type a Hub id (USER/NAME)")
    if os.path.isdir(choice):
        return choice
    return _fetch_hub(choice, session if session is not None else new_session())


def _fetch_hub(repo_id: str, session: dict) -> str:
    """A Hub id a visitor typed -> a checkpoint folder inside the session's own folder (its disk counted).

    Anonymous (token=False: the server's HF_TOKEN is never sent for a visitor); config.json first, checked (fields
    and size); then model.safetensors' size from the Hub's metadata against what that config allows, before a byte
    of it is downloaded. A refused repo's files are deleted. Messages name the repo id, never a server path."""
    cache = session_dir(session) / "hub"
    hub = dict(cache_dir=str(cache), token=False, local_files_only=not hub_reachable())
    try:
        config_path = resolve_file(repo_id, "config.json", **hub)
        config = read_config(os.path.dirname(config_path))
        n = MODEL_CLASSES[config["model_type"]].check_size(
            {k: v for k, v in config.items() if k not in ("model_type", "format_version")}, repo_id)
        allowed = 4 * n + WEIGHTS_SLACK  # float32 weights and a safetensors header
        if not hub["local_files_only"]:
            size = _remote_size(repo_id, "model.safetensors")
            if size is not None and size > allowed:
                raise fdftnet.CheckpointError(
                    f"{repo_id}: model.safetensors is {size / 2**20:,.0f} MB, more than the {allowed / 2**20:,.0f} MB "
                    f"its config.json's model needs: not downloaded")
        check_room(session)
        weights = resolve_file(repo_id, "model.safetensors", **hub)
        if os.path.getsize(weights) > allowed:  # the Hub's metadata said less than it sent
            raise fdftnet.CheckpointError(f"{repo_id}: model.safetensors is larger than its config.json's model "
                                          f"needs: refused")
        check_room(session)
        return os.path.dirname(config_path)
    except Exception as e:
        folder = f"models--{repo_id.replace('/', '--')}"
        for d in (cache / folder, cache / ".locks" / folder):  # nothing of it stays
            shutil.rmtree(d, ignore_errors=True)
        if isinstance(e, USER_ERRORS):  # the snapshot folder a message names becomes the repo id
            snapshot = re.compile(re.escape(str(cache / folder)) + r"(/snapshots/[0-9a-f]+)?")
            raise type(e)(scrub_paths(snapshot.sub(repo_id, str(e)))) from None
        raise


WEIGHTS_SLACK = 1 << 20  # bytes a safetensors file may hold beyond its float32 tensors (header, alignment)


def _remote_size(repo_id: str, filename: str) -> int | None:
    """The size the Hub reports for a file (a HEAD request, anonymous), or None when it reports none."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError
    try:
        return get_hf_file_metadata(hf_hub_url(repo_id, filename), token=False, timeout=10).size
    except HfHubHTTPError as e:
        raise fdftnet.CheckpointError(f"Hub error for {repo_id!r}: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise fdftnet.CheckpointError(f"the Hub could not be reached for {repo_id!r} ({type(e).__name__})") from None


_PATH = re.compile(r"(?<![\w.~:/-])/(?:[^\s/:'\"()\[\],;]+/)+([^\s/:'\"()\[\],;]*)")


def scrub_paths(message: str) -> str:
    """A message with every absolute server path cut to its last part: /tmp/gradio/ab12/photo.jpg -> photo.jpg."""
    return _PATH.sub(lambda m: m.group(1) or "(a server folder)", message)


def get_model(choice: str, expect: str | None = None, session: dict | None = None):
    """The (cached, read-only, eval-mode) model for a choice; CheckpointError with a one-line reason."""
    path = resolve(choice, session)
    if _mine(path, session):
        os.utime(session["dir"])  # using a fine-tuned model keeps its session alive
    try:
        key = (os.path.realpath(path), os.path.getmtime(os.path.join(path, "model.safetensors")))
    except OSError:
        key = (os.path.realpath(path), 0.0)
    with _LOCK:
        model = _CACHE.get(key)
        if model is not None:
            _CACHE.move_to_end(key)
    if model is None:
        model = fdftnet.load_model(path)
        with _LOCK:
            _CACHE[key] = model
            while len(_CACHE) > 6:
                _CACHE.popitem(last=False)
    if expect and model.model_type != expect:
        raise fdftnet.CheckpointError(f"{choice} holds a {model.model_type} model; "
                                      f"a {expect} checkpoint is needed here")
    return model


BACKBONES = {"efficientnet_lite0": "EfficientNet-Lite0", "efficientnet_lite2": "EfficientNet-Lite2",
             "shallownetv3": "ShallowNetV3 (the paper's)", "squeezenet": "SqueezeNet", "xception": "Xception",
             "resnetv2_50": "ResNetV2-50", "resnet18": "ResNet-18"}


def describe(model) -> str:
    """The model in plain words: FDFtNet or the baseline detector, its backbone, the face size it judges, and its
    decision threshold when it is not calibrated (a calibrated one says fake / real / uncertain)."""
    from fdftnet.models import crop_size_of
    kind = "FDFtNet" if model.model_type == "fdftnet" else "baseline detector"
    size = crop_size_of(model)
    thr = "" if getattr(model, "trust", None) is not None else f", decision threshold {float(model.threshold):.2f}"
    return (f"{kind} on {BACKBONES.get(model.backbone_name, model.backbone_name)}, judging {size}×{size}-px faces"
            f"{thr}")


def session_models(session: dict | None) -> list[dict]:
    """This session's fine-tuned models still on disk (an expired session's folder is gone)."""
    return [m for m in (session or {}).get("models", []) if os.path.isdir(m["dir"])]


def model_choices(session: dict | None) -> list[tuple[str, str]]:
    """Detect's model picker: the defaults that exist, the other shipped checkpoints (FDFtNets first), then this
    session's fine-tuned models."""
    found = discover()
    default = found["default"]
    out = [("default FDFtNet" + ("" if default["fdftnet"] else " (missing)"), DEFAULT)]
    if default["baseline"]:
        out.append(("default baseline", DEFAULT_BASELINE))
    out += [(f"{'FDFtNet' if kind == 'fdftnet' else 'baseline'}: {Path(d).name}", d)
            for kind in ("fdftnet", "baseline") for d in found[kind] if d != default[kind]]
    return out + [(m["label"], m["dir"]) for m in session_models(session)]


def base_choices(session: dict | None = None) -> list[tuple[str, str]]:
    """Fine-tune's start picker: the default baseline, every checkpoint under checkpoints/ (baselines, then FDFtNets
    to fine-tune further), then this session's fine-tuned models."""
    found = discover()
    return ([("default baseline", DEFAULT_BASELINE)] + [(f"baseline: {Path(d).name}", d) for d in found["baseline"]]
            + [(f"keep fine-tuning: {Path(d).name}", d) for d in found["fdftnet"]]
            + [(f"keep fine-tuning: {m['label']}", m["dir"]) for m in session_models(session)])
