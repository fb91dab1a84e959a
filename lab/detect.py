"""Detect tab: P(fake), the verdict at the model's calibrated threshold, and where the model looked.

Each request decodes within a budget (lab_budget): a small upload cannot cost minutes or gigabytes, and
/detect_many runs in its own queue so one-image /detect calls keep answering while it works."""
import os
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from fdftnet.archive import extract_images_zip
from fdftnet.data import DataError, load_image
from fdftnet.data.images import BudgetError, DecodeBudget
from fdftnet.explain import decide, enlarge, heatmap, overlay
from fdftnet.inference import predict_arrays

from . import state as st

GALLERY_MAX = 24  # overlays shown for a batch; the table and CSV hold every image
MAX_FILES = 500  # images (zip members included) per /detect_many request
ZIP_BYTES = 64 * 2**20  # uncompressed bytes per zip in a request


def lab_budget(max_images: int = MAX_FILES) -> DecodeBudget:
    """A request's decode budget: 12 Mpx per image (the CLI allows 40), 48 Mpx and `max_images` in all.

    A 12 Mpx phone JPEG costs 0.2 Mpx (DCT draft); the totals bound PNG-heavy requests (bench.robustness)."""
    return DecodeBudget(max_pixels=12_000_000, total_pixels=48_000_000, max_images=max_images)


def _file(payload) -> tuple[str, str]:
    """(path, display name) of an uploaded image: a FileData dict (preprocess=False) or a path string."""
    if isinstance(payload, dict):
        path = payload.get("path")
        return path, payload.get("orig_name") or os.path.basename(path or "")
    return payload, os.path.basename(payload or "")


def model_info(choice: str) -> str:
    try:
        return f"**Model:** {st.describe(st.get_model(choice))}"
    except st.USER_ERRORS as e:
        return f"**Warning:** {e}"


@st.guard
def detect_image(image, choice: str, session: dict | None = None):
    """One image -> (verdict + confidence, P(fake), explanation, the 64x64 input, the attention overlay)."""
    path, name = _file(image)
    if not path:
        raise DataError("no image: upload, paste or drop one first")
    model = st.get_model(choice, session=session)
    arr = load_image(path, name=name, budget=lab_budget(1))  # (64, 64, 3) uint8: exactly what the model sees
    p = float(predict_arrays(model, [arr])[0])
    t = float(model.threshold)
    verdict, conf = decide(p, t)
    heat, method = heatmap(model, arr[None])
    text = (f"## {verdict.upper()}\nP(fake) = **{p:.3f}** {'≥' if verdict == 'fake' else '<'} threshold {t:.3f} · "
            f"confidence {conf:.0%}  \n{st.describe(model)} · overlay: {method}")
    # the Label shows the verdict at the calibrated threshold (not argmax at 0.5) and its confidence bar
    return {verdict: conf}, p, text, enlarge(arr), enlarge(overlay(arr, heat[0]))


@st.guard
def detect_many(files, choice: str, session: dict, request: gr.Request):
    """Many images (or zips of images) -> (table, CSV file, overlay gallery, status, session)."""
    if not files:
        raise DataError("no files: drop images or a zip of images first")
    model = st.get_model(choice, session=session)
    st.check_room(session)
    folder = st.session_dir(session, request)
    budget = lab_budget()
    with tempfile.TemporaryDirectory(prefix="detect-", dir=folder) as work:  # extractions go when the request ends
        items = []
        for f in files:
            if f.lower().endswith(".zip"):
                items += extract_images_zip(f, Path(work) / f"zip{len(items)}", max_files=MAX_FILES,
                                            max_total_bytes=ZIP_BYTES)
            else:
                items.append((f, os.path.basename(f)))
            if len(items) > MAX_FILES:
                raise DataError(f"more than {MAX_FILES} images in one request; send fewer at a time")
        arrays, names, errors = [], [], []
        for path, name in items:
            try:
                arrays.append(load_image(path, name=name, budget=budget))  # BudgetError stops the request
                names.append(name)
            except BudgetError:
                raise
            except DataError as e:
                errors.append(str(e))
    if not arrays:
        raise DataError(f"none of the {len(items)} files is a usable image: {'; '.join(errors[:3])}")
    t = float(model.threshold)
    probs = predict_arrays(model, arrays)
    rows = [(n, round(float(p), 4), *decide(p, t)) for n, p in zip(names, probs)]
    df = pd.DataFrame(rows, columns=["file", "P(fake)", "verdict", "confidence"]).round({"confidence": 3})
    df = df.sort_values("P(fake)", ascending=False, kind="stable")
    csv = folder / "detections.csv"  # one per session, replaced by the next request
    df.to_csv(csv, index=False)
    heat, method = heatmap(model, arrays[:GALLERY_MAX])
    gallery = [(enlarge(overlay(a, h), 2), f"{n}: {p:.3f}") for a, h, n, p in zip(arrays, heat, names, probs)]
    status = f"{len(arrays)} images scored with {st.describe(model)} (overlay: {method})."
    if errors:
        gr.Warning(f"{len(errors)} file(s) skipped: " + "; ".join(errors[:3]) + (" ..." if len(errors) > 3 else ""))
        status += f"  \n**{len(errors)} skipped:** " + "; ".join(errors)
    return df, str(csv), gallery, status, session


def render(session: gr.State, demo: gr.Blocks) -> None:
    with gr.Row():
        choice = gr.Dropdown(st.model_choices(None), value=st.DEFAULT, allow_custom_value=True, scale=2,
                             label="Model", info="the default, a model fine-tuned in this session, "
                                                 "or type a local checkpoint folder or a Hub id and press Enter")
        info = gr.Markdown(lambda: model_info(st.DEFAULT))
    with gr.Tab("One image"):
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", label="Face image (upload, paste or drop)", height=300,
                                 elem_id="image")
                detect_btn = gr.Button("Detect", variant="primary")
            with gr.Column():
                label = gr.Label(label="verdict at the model's threshold, and confidence")
                p_fake = gr.Number(label="P(fake)", precision=4, interactive=False, elem_id="p-fake")
                verdict = gr.Markdown(elem_id="verdict")
        with gr.Row():
            seen = gr.Image(label="the 64×64 input the model saw", interactive=False, height=280)
            where = gr.Image(label="where it looked", interactive=False, height=280)
    with gr.Tab("Many images or a zip"):
        files = gr.File(file_count="multiple", file_types=["image", ".zip"], label="Images and/or zips of images")
        many_btn = gr.Button("Detect all", variant="primary")
        status = gr.Markdown()
        table = gr.Dataframe(label="results (click a header to sort)", interactive=False, max_height=400)
        csv = gr.File(label="CSV download")
        gallery = gr.Gallery(label=f"where it looked (first {GALLERY_MAX})", columns=6, height="auto")

    # one-image calls and batches queue apart: a heavy batch never holds up /detect
    choice.change(model_info, choice, info, concurrency_limit=2, concurrency_id="detect", api_visibility="private")
    gr.on([demo.load, session.change], lambda s, c: gr.update(choices=st.model_choices(s), value=c),
          [session, choice], choice, api_visibility="private")
    outs = [label, p_fake, verdict, seen, where]
    # preprocess=False: the upload reaches fdftnet's safe decoder untouched (gr.Image would open it with PIL first)
    detect_btn.click(detect_image, [image, choice, session], outs, api_name="detect", preprocess=False,
                     concurrency_limit=2, concurrency_id="detect")
    image.upload(detect_image, [image, choice, session], outs, preprocess=False, api_visibility="private",
                 concurrency_limit=2, concurrency_id="detect")
    many_btn.click(detect_many, [files, choice, session], [table, csv, gallery, status, session],
                   api_name="detect_many", concurrency_limit=1, concurrency_id="detect_many")
