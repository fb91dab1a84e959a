"""Detect tab: find the faces of a photo, then P(fake) per face at the model's threshold and where it looked.

Faces are found and cropped like the training data by fdftnet.faces (MTCNN); a face crop is used as is; a
photo without a face is scored whole only when the user asks. Each request decodes within a budget
(lab_budget), and /detect_many runs in its own queue so one-image /detect calls keep answering while it works.
Refused requests raise gr.Error for API clients; the page also shows the message in its status line.
"""
import functools
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from fdftnet import faces as F
from fdftnet.archive import extract_images_zip
from fdftnet.data import DataError
from fdftnet.data.images import DecodeBudget, decode_pixels
from fdftnet.explain import draw_boxes, enlarge, heatmap, overlay
from fdftnet.models import crop_size_of
from fdftnet.predict import face_detector_needed, face_record, model_notes
from fdftnet.trust import assess

from . import detect_view as view
from . import examples, limits, video
from . import state as st

GALLERY_MAX = 24  # overlays shown for a batch; the table and CSV hold every face
DETECT_WORKERS = 6  # one-image requests run side by side, one CPU thread each: a heavy photo does not queue the rest
MAX_FILES = 500  # images (zip members included) per /detect_many request
ZIP_BYTES = 64 * 2**20  # uncompressed bytes per zip in a request
WHOLE = "score the whole image anyway (no face detection: its centre square, resized to the model's crop size)"
_ERRORS: "OrderedDict[str, str]" = OrderedDict()  # session hash -> its last refused request's message
_LOCK = threading.Lock()


LIMITS_LINE = ("at most {images} images and {mpx:g} Mpx in all, each photo up to {photo_mpx:g} Mpx, and what fits in "
               "{seconds:g} s of work on this server")


def batch_seconds() -> float:
    """The work one /detect_many request may do (s): FDFTNET_BATCH_SECONDS, default 15 on a public server (its
    share of a busy machine), 600 elsewhere."""
    raw = os.environ.get("FDFTNET_BATCH_SECONDS")
    try:
        return float(raw)
    except (TypeError, ValueError):
        return 15.0 if limits.public() else 600.0


def limits_now() -> dict:
    b = lab_budget()
    return {"images": MAX_FILES, "mpx": b.total_pixels / 1e6, "photo_mpx": b.max_pixels / 1e6,
            "seconds": batch_seconds()}


def plan_batch(items: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """(the images this request will look at, in upload order; the names of those over its limits), from their
    headers alone: at most MAX_FILES images and lab_budget's pixels in all (an image over the per-photo cap is
    left to its decode, which refuses it in one line)."""
    b = lab_budget()
    keep, over, pixels = [], [], 0
    for path, name in items:
        px = decode_pixels(path, max_side=F.MAX_DETECT_SIDE) or 0
        fits = px > b.max_pixels or pixels + px <= b.total_pixels
        if len(keep) < MAX_FILES and fits:
            keep.append((path, name))
            pixels += px if px <= b.max_pixels else 0
        else:
            over.append(name)
    return keep, over


def _names(names: list[str], n: int = 10) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def lab_budget(max_images: int = MAX_FILES) -> DecodeBudget:
    """A request's decode budget: 12 Mpx per image (the CLI allows 40), 48 Mpx and `max_images` in all.

    Photos decode at full resolution (faces are cropped from them), big JPEGs at a DCT scale keeping >= 1600 px;
    the totals bound PNG-heavy requests."""
    return DecodeBudget(max_pixels=12_000_000, total_pixels=48_000_000, max_images=max_images)


def _file(payload) -> tuple[str, str]:
    """(path, display name) of an uploaded image: a FileData dict (preprocess=False) or a path string."""
    if isinstance(payload, dict):
        path = payload.get("path")
        return path, payload.get("orig_name") or os.path.basename(path or "")
    return payload, os.path.basename(payload or "")


def kept_for_page(fn):
    """st.guard, keeping a refused request's one-line message for its page's status line (`status_of`)."""
    guarded = st.guard(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return guarded(*args, **kwargs)
        except gr.Error as e:
            req = next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)
            if getattr(req, "session_hash", None):
                with _LOCK:
                    _ERRORS[req.session_hash] = e.message
                    while len(_ERRORS) > 1000:  # API sessions never ask for theirs
                        _ERRORS.popitem(last=False)
            raise
    return wrapper


def status_of(request: gr.Request) -> str:
    with _LOCK:
        msg = _ERRORS.pop(getattr(request, "session_hash", None) or "", None)
    return f"**Could not score this:** {msg}" if msg else "**Could not score this** (see the message above)."


def model_info(choice: str, session: dict | None = None) -> str:
    try:
        model = st.get_model(choice, session=session)
        path = st.resolve(choice, session)
    except st.USER_ERRORS as e:
        return f"**Warning:** {e}"
    own = any(m["dir"] == path for m in st.session_models(session))
    return view.about(path, st.describe(model), own=own)


def _faces(path: str, name: str, whole: bool, budget: DecodeBudget, size: int,
           deadline: F.Deadline | None = None) -> tuple[np.ndarray, F.FaceResult]:
    """(the photo, its faces at `size` px, the model's crop size): detected, the crop itself, or the whole image.
    Detection stops with a one-line DetectionTimeout past `deadline`."""
    # a big JPEG decodes at a DCT scale keeping >= 1600 px (what MTCNN looks at): a 12 Mpx photo costs 3 Mpx
    photo = F.load_photo(path, name=name, budget=budget, max_side=F.MAX_DETECT_SIDE)
    with face_detector_needed():  # a missing facenet-pytorch: one line, not a traceback
        return photo, (F.whole_image(photo, size) if whole else F.find_faces(photo, size=size, deadline=deadline))


def _photo_deadline(request_deadline: F.Deadline | None = None) -> F.Deadline:
    """Face finding in one photo: FDFTNET_DETECT_SECONDS, and no longer than the request has left."""
    seconds = float(limits.setting("FDFTNET_DETECT_SECONDS"))
    if request_deadline is not None:
        seconds = min(seconds, max(0.0, request_deadline.left()))
    return F.Deadline(seconds)


def _record(name: str, res: F.FaceResult, rows: list[dict], model) -> dict:
    """`fdftnet predict --json`'s record, plus the image's verdict and its highest P(fake): fake when any face is,
    else uncertain when any face is, else real."""
    faces = [face_record(f.box, f.score, r) for f, r in zip(res.faces, rows)]
    top = max((f["p_fake"] for f in faces), default=None)
    verdicts = {f["verdict"] for f in faces}
    label = next((v for v in ("fake", "uncertain", "real") if v in verdicts), None)
    trust = getattr(model, "trust", None)
    t = trust.threshold if trust is not None else float(model.threshold)
    return {"label": label, "p_fake": top, "threshold": round(t, 6), "file": name, "faces": faces,
            "message": res.message, **model_notes(model)}


@kept_for_page
def detect_image(photo, model: str = st.DEFAULT, session: dict | None = None, whole_image: bool = False,
                 request: gr.Request = None):
    """One photo -> (faces JSON, highest P(fake), the photo with numbered boxes, per-face rows, verdict, status).
    The parameters are named for API callers: photo, model (a name from the picker, a folder or a Hub id),
    whole_image (score the whole picture, no face detection)."""
    path, name = _file(photo)
    if not path:
        raise DataError("no image: upload, paste or drop one first")
    model = st.get_model(model, session=session)
    size = crop_size_of(model)
    limits.detection_threads()
    with limits.one_at_a_time(request, "detect"):
        request_deadline = F.Deadline(float(limits.setting("FDFTNET_REQUEST_SECONDS")), "this request")
        photo, res = _faces(path, name, bool(whole_image), lab_budget(1), size, _photo_deadline(request_deadline))
    crops = np.stack([f.crop for f in res.faces]) if res.faces else np.zeros((0, size, size, 3), np.uint8)
    verdicts = assess(model, crops)
    record = _record(name, res, verdicts, model)
    colours = [view.VERDICT_RGB[v["verdict"]] for v in verdicts]
    shown = draw_boxes(photo, [f.box for f in res.faces], [str(i) for i in range(1, len(crops) + 1)], colours)
    if not res.faces:
        return record, None, shown, "", view.summary([], record, None), view.NO_FACE.format(min_px=F.MIN_FACE)
    heat, method = heatmap(model, crops)
    rows = view.face_rows(crops, verdicts, [overlay(c, h) for c, h in zip(crops, heat)], method)
    return record, record["p_fake"], shown, rows, view.summary(verdicts, record, res.message), ""


def detect_upload(photo, model: str, session: dict | None, whole_image: bool, request: gr.Request):
    """The page's own trigger (upload, example, the checkbox): an emptied image empties the outputs."""
    if not photo:
        return None, None, None, "", "", ""
    return detect_image(photo, model, session, whole_image, request)


def failed_detect(request: gr.Request):
    return None, None, None, "", "", status_of(request)


@kept_for_page
def detect_many(files, model: str = st.DEFAULT, session: dict | None = None, whole_image: bool = False,
                request: gr.Request = None):
    """Many images (or zips of images) -> (table of faces, CSV file, overlay gallery, status, session)."""
    if not files:
        raise DataError("no files: drop images or a zip of images first")
    session = session if session is not None else st.new_session()
    whole, model = whole_image, st.get_model(model, session=session)
    st.check_room(session)
    folder = st.session_dir(session, request)
    budget, size = lab_budget(), crop_size_of(model)
    limits.detection_threads()
    names, results, errors, late = [], [], [], []
    request_deadline = F.Deadline(batch_seconds(), "this request")
    with limits.one_at_a_time(request, "detect"), \
            tempfile.TemporaryDirectory(prefix="detect-", dir=folder) as work:  # extractions go with the request
        items, unopened = [], []
        for f in files:
            if len(items) >= MAX_FILES:  # nothing more is extracted: listed as over the limit
                unopened.append(os.path.basename(f))
            elif f.lower().endswith(".zip"):
                items += extract_images_zip(f, Path(work) / f"zip{len(items)}", max_files=MAX_FILES,
                                            max_total_bytes=ZIP_BYTES)
            else:
                items.append((f, os.path.basename(f)))
        items, over = plan_batch(items)  # from the headers alone, before any decoding
        over += unopened
        for i, (path, name) in enumerate(items):
            if request_deadline.left() <= 0:  # the request's time is up: what is left is listed, not looked at
                late = [n for _, n in items[i:]]
                break
            try:
                results.append(_faces(path, name, bool(whole), budget, size, _photo_deadline(request_deadline))[1])
                names.append(name)
            except F.DetectionTimeout as e:
                errors.append(f"{name}: {e}")
            except DataError as e:  # FaceError (an extreme aspect ratio) and a budget refusal included
                errors.append(str(e))
    if not names:
        why = "; ".join(errors[:3]) or (f"the request's {request_deadline.seconds:g} s time budget ran out" if late
                                        else f"all are over this request's limits ({LIMITS_LINE.format(**limits_now())})")
        raise DataError(f"none of the {len(items) + len(over)} files could be scored: {why}")
    crops = [f.crop for r in results for f in r.faces]
    verdicts = iter(assess(model, crops))
    rows, shown = [], []
    for name, res in zip(names, results):
        for i, f in enumerate(res.faces, 1):
            v = next(verdicts)
            why = f" ({v['reason']})" if v["verdict"] == "uncertain" and v["reason"] else ""
            rows.append((name, i, ",".join(f"{x:.0f}" for x in f.box), round(v["p_fake"], 4), v["verdict"] + why,
                         res.message or ""))
            shown.append((f.crop, f"{name} #{i}: {v['verdict']}, {v['p_fake']:.3f}"))
        if not res.faces:
            rows.append((name, None, "", None, "no face", res.message or ""))
    df = pd.DataFrame(rows, columns=["file", "face", "box", "P(fake)", "verdict", "note"])
    df["face"] = df["face"].astype("Int64")  # face numbers stay ints beside the no-face rows
    df = df.sort_values("P(fake)", ascending=False, kind="stable")
    csv = folder / "detections.csv"  # one per session, replaced by the next request
    df.to_csv(csv, index=False)
    gallery = []
    if shown:
        heat, method = heatmap(model, np.stack([c for c, _ in shown[:GALLERY_MAX]]))
        gallery = [(enlarge(overlay(c, h), max(1, 128 // size)), cap) for (c, cap), h in zip(shown, heat)]
    no_face = sum(not r.faces for r in results)
    status = (f"{len(names)} images, {len(crops)} faces scored with {st.describe(model)}"
              + (f"; **{no_face} with no face found** (tick the box to score them whole)" if no_face else "") + ".")
    if shown:
        status += "  \n" + view.LEGEND.format(method=method)
    if errors:
        status += f"  \n**{len(errors)} skipped:** " + "; ".join(errors)
    if over:
        status += (f"  \n**{len(over)} not scored, over this request's limits** ({LIMITS_LINE.format(**limits_now())}):"
                   f" {_names(over)}; send them in another request.")
    if late:
        status += (f"  \n**Time budget reached** ({request_deadline.seconds:g} s of work a request): {len(late)} "
                   f"images not looked at ({_names(late)}); send them in another request.")
    return df, str(csv), gallery, status, session


def render(session: gr.State, demo: gr.Blocks) -> None:
    with gr.Row():
        choice = gr.Dropdown(st.model_choices(None), value=st.DEFAULT, allow_custom_value=True, scale=2,
                             label="Model", info="the default, a model fine-tuned in this session, "
                                                 "or type a local checkpoint folder or a Hub id and press Enter")
        info = gr.Markdown(elem_id="about-model")
    with gr.Tab("One image"):
        with gr.Row():
            with gr.Column(scale=2):
                image = gr.Image(type="filepath", label="Photo or face crop (upload, paste or drop)", height=360,
                                 elem_id="image")
                whole = gr.Checkbox(False, label=WHOLE, elem_id="whole")
                detect_btn = gr.Button("Detect", variant="primary")
                status = gr.Markdown(label="status", elem_id="detect-status")
                gr.Examples(examples.paths(), inputs=image, label="Examples (one click)",
                                 example_labels=[cap for _, cap, _ in examples.EXAMPLES])
                gr.Markdown(examples.credits(), elem_id="example-credits")
            with gr.Column(scale=3):
                shown = gr.Image(label="faces found (numbered boxes)", interactive=False, height=460,
                                 elem_id="boxes")
                verdict = gr.Markdown(label="verdict", elem_id="verdict")
                # for API clients (a summary of the JSON); hidden: gradio shows "0" for an empty Number
                p_fake = gr.Number(label="highest P(fake)", precision=4, interactive=False, visible=False,
                                   elem_id="p-fake")
        rows = gr.HTML(label="face rows", elem_id="faces")
        with gr.Accordion("JSON (what the /detect API returns)", open=False):
            record = gr.JSON(label="faces")
    with gr.Tab("Video"):
        video.render(choice, session)
    with gr.Tab("Many images or a zip"):
        files = gr.File(file_count="multiple", file_types=["image", ".zip"], label="Images and/or zips of images",
                        height=220)  # a long file list scrolls inside the box instead of stretching the page
        gr.Markdown(f"Each request scores {LIMITS_LINE.format(**limits_now())}; the rest are listed, not scored, "
                    "so you can send them again.", elem_id="many-limits")
        whole_many = gr.Checkbox(False, label=WHOLE)
        many_btn = gr.Button("Detect all", variant="primary")
        many_status = gr.Markdown(label="status", elem_id="many-status")
        table = gr.Dataframe(label="faces table", interactive=False, max_height=400)
        csv = gr.File(label="CSV download")
        gallery = gr.Gallery(label=f"where it looked (first {GALLERY_MAX} faces)", columns=6, height="auto")

    # one-image calls and batches queue apart: a heavy batch never holds up /detect
    gr.on([demo.load, choice.change], model_info, [choice, session], info, api_visibility="private",
          concurrency_limit=DETECT_WORKERS, concurrency_id="detect")
    gr.on([demo.load, session.change], _choices, [session, choice], choice, api_visibility="private")
    outs = [record, p_fake, shown, rows, verdict, status]
    # preprocess=False: the upload reaches fdftnet's safe decoder untouched (gr.Image would open it with PIL first)
    detect_btn.click(detect_image, [image, choice, session, whole], outs, api_name="detect", preprocess=False,
                     concurrency_limit=DETECT_WORKERS, concurrency_id="detect"
                     ).failure(failed_detect, None, outs, api_visibility="private")
    gr.on([image.change, whole.input], detect_upload, [image, choice, session, whole], outs, preprocess=False,
          api_visibility="private", concurrency_limit=DETECT_WORKERS, concurrency_id="detect"
          ).failure(failed_detect, None, outs, api_visibility="private")
    many_btn.click(detect_many, [files, choice, session, whole_many], [table, csv, gallery, many_status, session],
                   api_name="detect_many", concurrency_limit=1, concurrency_id="detect_many"
                   ).failure(status_of, None, many_status, api_visibility="private")


def _choices(session, choice):
    return gr.update(choices=st.model_choices(session), value=choice)
