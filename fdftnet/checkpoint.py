"""Checkpoint directories, written so that a kill at any moment leaves the last good one loadable.

    OUT/config.json, OUT/model.safetensors, OUT/README.md   the best model (what every command reads)
    OUT/training.json                                       how it was trained: config, data, history, metrics
    OUT/last/                                               resume state: weights, optimizer.pt, state.json

The best model's files are each replaced atomically (temp file + rename, weights first). The resume
state is a whole directory swapped in with renames, and `read_resume_state` recovers from a kill between them.

    model = load_model("checkpoints/fdftnet-xception-dfdc")   # FDFtNet or BaselineDetector, by config.json
"""
import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .models import BaselineDetector, CheckpointError, FDFtNet, read_config

__all__ = ["load_model", "save_checkpoint", "write_json", "read_json", "save_resume_state",
           "read_resume_state", "has_checkpoint", "MODEL_CLASSES"]

MODEL_CLASSES = {"fdftnet": FDFtNet, "baseline": BaselineDetector}
_FILE_ORDER = ("model.safetensors", "config.json")  # weights land before the config that describes them


def load_model(model_id: str | Path, expect: str | None = None, device: str = "cpu", **hub_kwargs):
    """Load an FDFtNet or BaselineDetector checkpoint (local dir or Hub id), chosen by its config.json.

    Args:
        model_id: a checkpoint directory or a Hub repo id.
        expect: "fdftnet" or "baseline" to refuse the other kind with a clear CheckpointError.
        device: where to put the weights.
        **hub_kwargs: revision, cache_dir, token, local_files_only.
    """
    config = read_config(model_id, **hub_kwargs)
    kind = config["model_type"]
    if expect is not None and kind != expect:
        want = {"fdftnet": "an FDFtNet", "baseline": "a baseline (pretrain)"}[expect]
        raise CheckpointError(f"{model_id} holds a {kind} model; this command needs {want} checkpoint")
    model = MODEL_CLASSES[kind].from_pretrained(str(model_id), map_location=device, **hub_kwargs)
    model.trust = _trust(model_id, hub_kwargs)  # calibration, verdict band, OOD bank, when the checkpoint has them
    return model


def _trust(model_id, hub_kwargs: dict):
    """The checkpoint's fdftnet.trust.Trust (calibration.json + ood.safetensors), or None. From a Hub repo both files
    are optional downloads; a repo without them is an uncalibrated model."""
    from .models import resolve_file
    from .trust import CALIBRATION_NAME, OOD_NAME, load_trust
    if os.path.isdir(model_id):
        return load_trust(model_id)
    folder = None
    for name in (CALIBRATION_NAME, OOD_NAME):
        try:
            folder = os.path.dirname(resolve_file(str(model_id), name, **hub_kwargs))
        except CheckpointError:
            if name == CALIBRATION_NAME:
                return None
    return load_trust(folder) if folder else None


def has_checkpoint(out_dir: str | Path) -> bool:
    out_dir = Path(out_dir)
    return (out_dir / "config.json").exists() or (out_dir / "last" / "state.json").exists()


def write_json(path: str | Path, obj) -> None:
    """Write JSON atomically: temp file in the same folder, then rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")
    os.replace(tmp, path)


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def save_checkpoint(model, out_dir: str | Path, extra_json: dict | None = None, card: str | None = None) -> Path:
    """save_pretrained into a temp folder beside OUT, then move each file into OUT with an atomic rename."""
    from .trust import CALIBRATION_NAME, OOD_NAME
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".tmp-*"):  # left by a run killed mid-save (one writer per directory: rank 0)
        shutil.rmtree(stale, ignore_errors=True)
    for name in (CALIBRATION_NAME, OOD_NAME):  # fitted to the weights being replaced: no longer true of the new ones
        (out_dir / name).unlink(missing_ok=True)
    tmp = out_dir / f".tmp-{uuid.uuid4().hex}"
    try:
        model.save_pretrained(tmp)
        if card is not None:
            (tmp / "README.md").write_text(card)
        for name, obj in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")
        names = sorted(p.name for p in tmp.iterdir())
        names = [n for n in _FILE_ORDER if n in names] + [n for n in names if n not in _FILE_ORDER]
        for name in names:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def save_resume_state(out_dir: str | Path, model, optimizer, scheduler, state: dict, ema: dict | None = None) -> None:
    """Write OUT/last as a new folder, then swap it in; the old one is removed only after the swap. `ema`: the
    state dict of a moving average of the weights, kept beside the optimizer's."""
    out_dir = Path(out_dir)
    last, new, old = out_dir / "last", out_dir / "last.new", out_dir / "last.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    module = getattr(model, "module", model)  # unwrap DDP
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()},
              str(new / "model.safetensors"))
    extra = {"ema": {k: v.detach().cpu() for k, v in ema.items()}} if ema is not None else {}
    torch.save({"optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None, **extra},
               new / "optimizer.pt")
    (new / "state.json").write_text(json.dumps(state, indent=2, allow_nan=False))  # written last: marks complete
    shutil.rmtree(old, ignore_errors=True)
    if last.exists():
        os.replace(last, old)
    os.replace(new, last)
    shutil.rmtree(old, ignore_errors=True)


def read_resume_state(out_dir: str | Path):
    """(state dict, weights dict, optimizer/scheduler dict) from OUT/last, or None when there is none.

    A kill during `save_resume_state` leaves either last/, or last.old/ and a complete last.new/: the newest
    complete one wins (last.new holds state.json only once it is complete). A last/ that exists but cannot be
    read is a CheckpointError, never a silent restart from epoch 1. optimizer.pt is our own file but is still
    read with weights_only=True (no pickle code).
    """
    out_dir = Path(out_dir)
    problems = []
    for cand in _resume_candidates(out_dir):
        try:
            state = json.loads((cand / "state.json").read_text())
            weights = load_file(str(cand / "model.safetensors"))
            opt = torch.load(cand / "optimizer.pt", map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not isinstance(opt, dict):
                raise ValueError("state.json or optimizer.pt holds the wrong kind of value")
        except Exception as e:  # noqa: BLE001 - a half-written candidate: try the next one
            problems.append(f"{cand.name}/: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}")
            continue
        return state, weights, opt
    # a last.new/ alone is a first save cut short (nothing to resume); a last/ or last.old/ was complete once
    if (out_dir / "last").is_dir() or (out_dir / "last.old").is_dir():
        why = next((p for p in problems if not p.startswith("last.new")),
                   "last/ has no state.json or model.safetensors, or cannot be listed")
        raise CheckpointError(f"{out_dir}: cannot resume, its resume state is unreadable ({why}); "
                              f"move last/ away to start again from epoch 1, or pass --overwrite")
    return None


def _resume_candidates(out_dir: Path) -> list[Path]:
    cands = (out_dir / "last.new", out_dir / "last", out_dir / "last.old")  # newest first
    # os.path.exists, not Path.exists: an unreadable folder is "not there", and is then reported above
    return [c for c in cands if os.path.exists(c / "state.json") and os.path.exists(c / "model.safetensors")]
