"""Lab state: the checkpoints on disk, a read-only model cache, per-session folders and the handler guard.

Per-session state is a plain dict kept in one `gr.State` (deep-copyable, STYLE A3): {"dir": the
session's temp folder or None, "models": [{"label", "dir", ...}], "runs": [bench-format run dicts]}.
Fine-tuned models live on disk in that folder; models themselves are only ever held in `_CACHE`,
read-only (eval mode, no parameter is written), keyed by their directory and its config.json mtime.
"""
import functools
import inspect
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import gradio as gr

import fdftnet
from fdftnet.data import DataError
from fdftnet.models import resolve_file
from fdftnet.train import TrainingError

log = logging.getLogger("fdftnet.lab")
USER_ERRORS = (DataError, fdftnet.CheckpointError, TrainingError, ValueError)
DEFAULT, DEFAULT_BASELINE = "default", "default-baseline"
_CACHE: "OrderedDict[tuple, object]" = OrderedDict()  # read-only models, shared by all sessions
_LOCK = threading.Lock()
CANCELLED: set[str] = set()  # session hashes whose fine-tune should stop at the next step


def new_session() -> dict:
    return {"dir": None, "models": [], "runs": []}


def drop_session(session: dict) -> None:
    """gr.State delete_callback: remove the session's temp folder."""
    if session and session.get("dir"):
        shutil.rmtree(session["dir"], ignore_errors=True)


def session_dir(session: dict, request: gr.Request | None = None) -> Path:
    if not session.get("dir"):
        tag = getattr(request, "session_hash", None) or "local"
        session["dir"] = tempfile.mkdtemp(prefix=f"fdftnet-lab-{tag[:12]}-")
    return Path(session["dir"])


def guard(fn):
    """Handler boundary: user errors become a one-line gr.Error; anything else is logged, not shown."""
    def convert(e: Exception):
        if isinstance(e, gr.Error):
            return e
        if isinstance(e, USER_ERRORS):
            return gr.Error(str(e).splitlines()[0] if str(e) else type(e).__name__)
        log.exception("handler %s failed", fn.__name__)
        return gr.Error(f"internal error: {type(e).__name__}")

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
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    result = []

    def probe():
        try:
            socket.create_connection((host.split(":")[0], 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    t.start()
    t.join(timeout + 0.5)
    _HUB.update(t=time.monotonic(), ok=bool(result))
    return _HUB["ok"]


def resolve(choice: str) -> str:
    """A model choice (default, default-baseline, a local folder, a Hub id) -> a local checkpoint folder."""
    choice = (choice or "").strip()
    if choice in ("", DEFAULT, DEFAULT_BASELINE):
        kind = "baseline" if choice == DEFAULT_BASELINE else "fdftnet"
        found = discover()["default"][kind]
        if not found:
            raise fdftnet.CheckpointError(missing_default_message(kind))
        return found
    if os.path.isdir(choice):
        return choice
    # a Hub id: fetch both files (or find them in the cache when offline) and use the snapshot folder
    offline = not hub_reachable()
    cfg = resolve_file(choice, "config.json", local_files_only=offline)
    resolve_file(choice, "model.safetensors", local_files_only=offline)
    return os.path.dirname(cfg)


def get_model(choice: str, expect: str | None = None):
    """The (cached, read-only, eval-mode) model for a choice; CheckpointError with a one-line reason."""
    path = resolve(choice)
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


def describe(model) -> str:
    kind = "FDFtNet" if model.model_type == "fdftnet" else "baseline"
    extra = f", {'frozen' if model.freeze_backbone else 'unfrozen'} backbone" if kind == "FDFtNet" else ""
    return f"{kind} on {model.backbone_name}{extra}, threshold {float(model.threshold):.3f}"


def model_choices(session: dict | None) -> list[tuple[str, str]]:
    """Detect's model picker: the defaults that exist, then this session's fine-tuned models."""
    default = discover()["default"]
    out = [("default FDFtNet" + ("" if default["fdftnet"] else " (missing)"), DEFAULT)]
    if default["baseline"]:
        out.append(("default baseline", DEFAULT_BASELINE))
    return out + [(m["label"], m["dir"]) for m in (session or {}).get("models", [])]


def base_choices(session: dict | None = None) -> list[tuple[str, str]]:
    """Fine-tune's start picker: the default baseline, every checkpoint under checkpoints/ (baselines, then FDFtNets
    to fine-tune further), then this session's fine-tuned models."""
    found = discover()
    return ([("default baseline", DEFAULT_BASELINE)] + [(f"baseline: {Path(d).name}", d) for d in found["baseline"]]
            + [(f"keep fine-tuning: {Path(d).name}", d) for d in found["fdftnet"]]
            + [(f"keep fine-tuning: {m['label']}", m["dir"]) for m in (session or {}).get("models", [])])
