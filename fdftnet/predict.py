"""Scoring image files for `fdftnet predict`: which model a name means, and one record per file.

A model name is resolved here, locally and at once: `default` / `default-baseline` are the shipped
checkpoints that checkpoints/default.json names, a folder is itself, a valid Hub repo id goes to the Hub
(only to its cache under HF_HUB_OFFLINE), anything else is a one-line CheckpointError before any network.
A file becomes the record that `--json` prints (issue #19's shape), one entry per face:

    {"file": "party.jpg", "faces": [{"box": [x0, y0, x1, y1], "score": 0.99, "p_fake": 0.12, "fake": false,
     "verdict": "real", "reason": null}], "message": null, "calibrated": true, "tested_on": ["face swaps (DFDC)"]}

p_fake is the calibrated probability when the checkpoint has a calibration.json (fdftnet.trust), the model's own
softmax otherwise; "fake" is the model's threshold decision, "verdict" the three-way one (fake, real, uncertain)
with its reason ("unlike the training data", or the uncertain band).

    model = load_model(resolve_model("default"))
    record = predict_file(model, "party.jpg")                   # faces found by fdftnet.faces (MTCNN)
    record = predict_file(model, "crop.png", whole_image=True)  # the image's centre square, as one "face"
"""
import contextlib
import json
import math
import os
from pathlib import Path

__all__ = ["DEFAULT", "DEFAULT_BASELINE", "checkpoints_root", "shipped_model", "resolve_model", "predict_file",
           "list_checkpoints", "expand_inputs",
           "record_rows", "ROW_HEADER", "face_detector_needed"]

DEFAULT, DEFAULT_BASELINE = "default", "default-baseline"  # the lab's names for the two shipped checkpoints
_KINDS = {DEFAULT: "fdftnet", DEFAULT_BASELINE: "baseline"}
ROW_HEADER = "file\tface\tbox\tscore\tp_fake\tverdict"  # the columns of record_rows (verdict: fake, real, uncertain)


# ----------------------------------------------------------------------------- models by name

def checkpoints_root() -> Path:
    """The shipped checkpoints: $FDFTNET_CHECKPOINTS, else this repository's checkpoints/, else ./checkpoints."""
    if os.environ.get("FDFTNET_CHECKPOINTS"):
        return Path(os.environ["FDFTNET_CHECKPOINTS"])
    here = Path(__file__).resolve().parents[1] / "checkpoints"  # an editable install (make install) finds it
    return here if here.is_dir() else Path("checkpoints")


def shipped_model(kind: str = "fdftnet") -> Path:
    """The checkpoint folder that checkpoints/default.json names for `kind` ("fdftnet" or "baseline")."""
    from .models import CheckpointError
    root = checkpoints_root()
    try:
        name = json.loads((root / "default.json").read_text()).get(kind)
    except (OSError, ValueError, AttributeError):
        name = None
    if not isinstance(name, str) or not name or not (root / name).is_dir():
        raise CheckpointError(f"no shipped {kind} model: {root / 'default.json'} names no {kind} checkpoint "
                              f"folder in {root}; pass --model with a checkpoint folder or a Hub repo id")
    return root / name


def resolve_model(name: str | None, revision: str | None = None, cache_dir: str | None = None, **_) -> str:
    """A model name -> what load_model reads (see the module docstring); extra Hub kwargs are ignored."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from .models import CheckpointError
    name = (name or DEFAULT).strip()
    if name in _KINDS:
        return str(shipped_model(_KINDS[name]))
    if os.path.isdir(name):
        return name
    if os.path.exists(name):
        raise CheckpointError(f"{name} is a file: --model wants a checkpoint folder (config.json + "
                              f"model.safetensors), a Hub repo id, {DEFAULT} or {DEFAULT_BASELINE}")
    head = name.split("/")[0]
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or (head != name and os.path.isdir(head)):
        raise CheckpointError(f"no checkpoint folder {name!r}")  # a path, not a Hub id: say so, do not ask the Hub
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise CheckpointError(f"{name!r} is neither a checkpoint folder nor a valid Hub repo id (USER/NAME); the "
                              f"shipped models are {DEFAULT} and {DEFAULT_BASELINE}") from None
    if constants.HF_HUB_OFFLINE and not isinstance(
            try_to_load_from_cache(name, "config.json", cache_dir=cache_dir, revision=revision), str):
        raise CheckpointError(f"{name!r} is not a checkpoint folder and not in the Hub cache, and HF_HUB_OFFLINE "
                              f"is set (unset it to download)")
    return name


def list_checkpoints() -> list[dict]:
    """The checkpoints `--model` accepts by name: default, default-baseline, then every folder of checkpoints/
    (name, kind, backbone, crop and input size, calibrated or not, its test AUROC from eval.json)."""
    from .models import CheckpointError, read_config
    root = checkpoints_root()
    defaults = {}
    for name, kind in _KINDS.items():
        try:
            defaults[name] = shipped_model(kind).name
        except CheckpointError:
            pass
    rows = []
    for d in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        try:
            cfg = read_config(d)
        except CheckpointError:
            continue
        try:
            ev = json.loads((d / "eval.json").read_text())
            auroc = f"{ev['auroc']:.3f} ({ev.get('data', '?')} {ev.get('split', '')})".strip()
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            auroc = None
        rows.append({"name": d.name, "kind": cfg["model_type"], "backbone": cfg["backbone"],
                     "crop_size": cfg.get("crop_size", 64), "input_size": cfg.get("input_size", 64),
                     "calibrated": (d / "calibration.json").is_file(), "test_auroc": auroc,
                     "aliases": [a for a, n in defaults.items() if n == d.name]})
    return rows


# ----------------------------------------------------------------------------- files -> records

def predict_file(model, path: str, whole_image: bool = False, max_faces: int | None = None,
                 min_size: int | None = None, device=None) -> dict:
    """One image file -> {"file", "faces": [{"box", "score", "p_fake", "fake"}], "message"}.

    Faces are found by fdftnet.faces and each is cut from the photo straight to the model's crop size
    (largest first; an input that already is a face crop is used as is, and the message says so).
    whole_image=True skips detection: the centre square, resized to the crop size, is scored as one face
    with score None. Raises DataError (one line, naming the file) for a file that is not a usable image;
    "no face" and the caps are messages.
    """
    from .models import crop_size_of
    from .trust import assess
    size = crop_size_of(model)
    if whole_image:
        boxes, scores, crops, message = _whole_image(path, size)
    else:
        boxes, scores, crops, message = _faces(path, max_faces, min_size, size)
    rows = assess(model, crops) if crops else []
    faces = [face_record(box, score, row) for box, score, row in zip(boxes, scores, rows)]
    return {"file": path, "faces": faces, "message": message, **model_notes(model)}


def face_record(box, score: float | None, row: dict) -> dict:
    """One face of `predict --json` (and of the lab's /detect): its box, the detector's score (None for a crop
    used as is or a whole image), P(fake), the threshold decision and the three-way verdict (fdftnet.trust.assess's
    row for the face)."""
    score = None if score is None or math.isnan(score) else round(float(score), 4)
    return {"box": [round(float(v), 1) for v in box], "score": score, "p_fake": round(float(row["p_fake"]), 6),
            "fake": bool(row["fake"]), "verdict": row["verdict"], "reason": row["reason"]}


def model_notes(model) -> dict:
    """What every record says of the model: calibrated or not, and the families of fakes it was tested on."""
    trust = getattr(model, "trust", None)
    tested = [f"{t['family']} (AUROC {t['auroc']:.2f})" if isinstance(t.get("auroc"), (int, float)) else t["family"]
              for t in trust.tested_on] if trust is not None else []
    return {"calibrated": trust is not None, "tested_on": tested}


def _whole_image(path: str, size: int):
    from PIL import Image

    from .data import load_image
    crop = load_image(path, size=size)  # refuses a bad file first, with its one-line reason
    with Image.open(path) as im:  # the header only: the size as load_image saw it, EXIF rotation included
        w, h = im.size[::-1] if im.getexif().get(0x0112) in (5, 6, 7, 8) else im.size
    side = min(w, h)
    x0, y0 = (w - side) // 2, (h - side) // 2
    return [(x0, y0, x0 + side, y0 + side)], [None], [crop], None


@contextlib.contextmanager
def face_detector_needed():
    """A missing facenet-pytorch becomes a one-line ValueError, raised only when a photo needs detection
    (a face crop is used as is without it)."""
    try:
        yield
    except ModuleNotFoundError as e:
        if e.name != "facenet_pytorch":
            raise
        raise ValueError("finding faces needs facenet-pytorch (`make install` installs it); "
                         "`predict --whole-image` scores images without it") from None


def _faces(path: str, max_faces: int | None, min_size: int | None, size: int):
    from . import faces as F
    photo = F.load_photo(path)
    try:
        with face_detector_needed():
            res = F.find_faces(photo, max_faces=max_faces or F.MAX_FACES, min_size=min_size or F.MIN_FACE,
                               size=size)
    except F.FaceError as e:  # an extreme aspect ratio, say: a property of the photo, reported like "no face"
        return [], [], [], str(e)
    return [f.box for f in res.faces], [f.score for f in res.faces], [f.crop for f in res.faces], res.message


def expand_inputs(paths: list[str]) -> list[str]:
    """Image files for `predict`: each file as given, each folder's image files (recursive, sorted); a path that does
    not exist is kept, so its own one-line error names it."""
    from .data import IMAGE_EXTENSIONS
    from .video import VIDEO_EXTENSIONS
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(str(f) for f in Path(p).rglob("*") if f.is_file() and not f.name.startswith(".")
                           and f.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
            if not found:
                raise ValueError(f"{p}: a folder with no image or video files ({' '.join(IMAGE_EXTENSIONS)} "
                                 f"{' '.join(VIDEO_EXTENSIONS)})")
            out += found
        else:
            out.append(p)
    return out


def record_rows(record: dict) -> str:
    """A record as tab-separated rows under ROW_HEADER, one per face; a message is a `# file: ...` line."""
    rows = [f"# {record['file']}: {record['message']}"] if record["message"] else []
    for i, f in enumerate(record["faces"], 1):
        box = ",".join(f"{v:.0f}" for v in f["box"])
        score = "-" if f["score"] is None else f"{f['score']:.3f}"
        verdict = f["verdict"] + (f" ({f['reason']})" if f.get("reason") and f["verdict"] == "uncertain" else "")
        rows.append(f"{record['file']}\t{i}\t{box}\t{score}\t{f['p_fake']:.6f}\t{verdict}")
    return "\n".join(rows)
