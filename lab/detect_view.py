"""What the Detect tab shows, as text and HTML: the "about this model" line, the per-face rows, the verdict.

No gradio and no math here: lab/detect.py calls fdftnet and hands the numbers to these builders.
"""
import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from fdftnet.card import card_metadata
from fdftnet.explain import colour_scale

FAKE_RGB, REAL_RGB, UNCERTAIN_RGB = (214, 39, 40), (44, 160, 44), (230, 145, 20)  # box and verdict colours
VERDICT_RGB = {"fake": FAKE_RGB, "real": REAL_RGB, "uncertain": UNCERTAIN_RGB}
FINETUNE_TAB = "Few-shot fine-tune"
LEGEND = ("colour scale of the overlays: blue = where the model looked least, red = where it looked most "
          "(each face scaled to its own range; {method})")


def _png(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _pct(v) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, (int, float)) else "n/a"


def about(model_dir: str | None, kind: str, own: bool = False) -> str:
    """One Markdown line from a checkpoint's card data: what it was trained on and how it scored there."""
    try:
        meta = card_metadata(model_dir) if model_dir else {}
    except (OSError, ValueError):
        meta = {}
    try:
        info = json.loads((Path(model_dir) / "training.json").read_text()).get("info") or {}
    except (OSError, ValueError, TypeError, AttributeError):
        info = {}
    results = [r for m in meta.get("model-index", []) for r in m.get("results", [])]
    best = next((r for r in results if r["dataset"]["split"] == "test"), results[-1] if results else None)
    counts = info.get("train_counts") or {}
    n = " + ".join(f"{v} {k}" for k, v in counts.items())
    try:  # the families of fakes its whole training met (the card's table), not only its last stage's data
        met = [f["family"] for f in json.loads((Path(model_dir) / "families.json").read_text())["families"]
               if f.get("trained_on")]
    except (OSError, ValueError, TypeError, KeyError):
        met = []
    if own:
        trained = f"fine-tuned in this session on your upload ({n} images)" if n else "fine-tuned in this session"
    elif met:
        trained = "trained on " + " and ".join(f"**{f}**" for f in met) + " (its model card lists the data)"
    elif info.get("data"):
        trained = f"trained on **{Path(str(info['data'])).name}**" + (f" ({n} face crops)" if n else "")
    else:
        trained = "no training record came with this checkpoint"
    text = f"**About this model:** {kind}; {trained}"
    if best:
        m = {x["name"]: x["value"] for x in best["metrics"]}
        auroc = f"{m['AUROC']:.3f}" if isinstance(m.get("AUROC"), (int, float)) else "n/a"
        where = "its hold-out" if own else f"{best['dataset']['name']} {best['dataset']['split']}"
        text += f"; on {where}: ACC {_pct(m.get('ACC'))}, AUROC {auroc}"
    return (text + f". Faces from another kind of fake (another generator or face swap) may need a few-shot "
                   f"fine-tune first: see the **{FINETUNE_TAB}** tab.")


def face_rows(crops, verdicts: list[dict], overlays, method: str) -> str:
    """An HTML table, one row per face: number, its crop (as the model saw it), P(fake), verdict and its reason, where
    it looked; a legend."""
    side = int(np.asarray(crops[0]).shape[0]) if len(crops) else 64
    head = (f"<tr><th>#</th><th>the {side}×{side} crop the model saw</th><th>P(fake)</th>"
            f"<th>verdict</th><th>where it looked</th></tr>")
    img = '<img src="{}" width="128" height="128" style="image-rendering: pixelated" alt="{}">'
    rows = []
    for i, (crop, v, ov) in enumerate(zip(crops, verdicts, overlays), 1):
        colour = "rgb({},{},{})".format(*VERDICT_RGB[v["verdict"]])
        why = f"<br><small>{html.escape(v['reason'])}</small>" if v["verdict"] == "uncertain" and v["reason"] else ""
        rows.append(f'<tr class="face-row" data-face="{i}"><td><b>{i}</b></td>'
                    f'<td>{img.format(_png(crop), f"face {i}")}</td><td class="p-fake">{v["p_fake"]:.3f}</td>'
                    f'<td style="color:{colour}"><b>{v["verdict"].upper()}</b>{why}</td>'
                    f'<td>{img.format(_png(ov), f"face {i}: {method}")}</td></tr>')
    scale = f'<img src="{_png(colour_scale(160, 10))}" width="160" height="10" alt="colour scale">'
    legend = f'<p class="legend">{scale} {html.escape(LEGEND.format(method=method))}</p>'
    return f'<table class="faces">{head}{"".join(rows)}</table>{legend}'


def tested_on(record: dict) -> str:
    """The line shown with every verdict: what the model was tested on, and that other kinds are not covered."""
    if not record.get("calibrated"):
        return ("_This model is not calibrated: P(fake) is its raw score and there is no “uncertain” verdict. "
                "It was tested only on the data its card names._")
    fams = "; ".join(record.get("tested_on") or []) or "its own validation data"
    return (f"_Tested on: {fams} (AUROC: how well it ranks fakes above reals, 0.5 is chance, 1 perfect). Other kinds "
            f"of fakes (diffusion portraits, new face-swap tools) were not tested: treat its verdict on them as a "
            f"guess._")


def summary(verdicts: list[dict], record: dict, message: str | None) -> str:
    """The verdict line(s): the photo's verdict, each face's verdict with P(fake) and reason, what the model was
    tested on, then what was left out."""
    parts = []
    if len(verdicts):
        n = {k: sum(v["verdict"] == k for v in verdicts) for k in ("fake", "uncertain", "real")}
        if len(verdicts) == 1:
            head = f"### {verdicts[0]['verdict'].upper()}"
        else:
            head = (f"### {len(verdicts)} faces: {n['fake']} fake, {n['uncertain']} uncertain, {n['real']} real")
        t = record["threshold"]  # an uncalibrated model's verdict is its threshold's: say it
        faces = [f"face {i}: **{v['verdict']}**, P(fake) = {v['p_fake']:.3f}"
                 + (f" ({v['reason']})" if v["verdict"] == "uncertain" and v["reason"] else "")
                 + ("" if record.get("calibrated") else f" {'≥' if v['fake'] else '<'} threshold {t:.3f}")
                 for i, v in enumerate(verdicts, 1)]
        parts += [head, " · ".join(faces), tested_on(record)]
    if message:
        parts.append(f"_{message}_")
    return "  \n".join(parts)


NO_FACE = ("**No face found** (faces under {min_px} px are ignored). The model judges face crops; tick "
           "**score the whole image anyway** to score the whole picture, squashed to the model's crop size (that "
           "verdict means little for anything but a face crop).")
