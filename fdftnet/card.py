"""Model cards: the README.md (YAML metadata + text) and roc.svg that go with a checkpoint on the Hub.

Everything comes from files already in the checkpoint directory: config.json (architecture), training.json
(written by training: settings, provenance, validation metrics) and, when present, eval.json (written by
`fdftnet evaluate --json`, shown as the test result). No token or other secret is ever read here.

    text = render_model_card("runs/sq-ft", repo_id="user/fdftnet-squeezenet-dfdc")
    write_model_card("runs/sq-ft")   # README.md + roc.svg in place, each written atomically
"""
import json
import math
import os
import re
import uuid
from pathlib import Path
from xml.sax.saxutils import escape

import yaml

from .models import BaselineDetector, FDFtNet, read_config
from .models.efficientnet_lite import PRETRAINED_PACKAGES

__all__ = ["render_model_card", "write_model_card", "card_metadata", "render_roc_svg", "hub_id_or_none"]

MODEL_CLASSES = {"fdftnet": FDFtNet, "baseline": BaselineDetector}
ROC_NAME = "roc.svg"
EVAL_NAME = "eval.json"
# (key in our metrics dicts, model-index metric type, display name)
METRICS = (("acc", "accuracy", "ACC"), ("auroc", "roc_auc", "AUROC"), ("ap", "average_precision", "AP"),
           ("eer", "eer", "EER"))
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


def hub_id_or_none(value) -> str | None:
    """`value` if it reads as a Hub repo id ("owner/name") rather than a local path, else None."""
    if not isinstance(value, str) or not _HUB_ID.match(value) or value.endswith((".", "-")):
        return None
    if os.path.exists(value):  # "runs/sq" beside the cwd is a directory, not a Hub repo
        return None
    return value


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _fmt(v, digits: int = 4) -> str:
    v = _num(v)
    return "n/a" if v is None else f"{v:.{digits}f}"


def _load(model_dir: str | Path) -> tuple[dict, dict, dict]:
    """(config, training, eval) of a local checkpoint; the last two are {} when absent."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir} is not a checkpoint directory")
    config = read_config(model_dir)  # CheckpointError for anything that is not an fdftnet checkpoint
    return config, _read_json(model_dir / "training.json"), _read_json(model_dir / EVAL_NAME)


def _dataset_of(train_cfg: dict, info: dict) -> tuple[str | None, str | None]:
    """(what to show, Hub dataset id or None) for the training data."""
    if train_cfg.get("hf_dataset"):
        data = train_cfg["hf_dataset"]
        return data, (None if info.get("data_source") == "local" else hub_id_or_none(data))
    data = train_cfg.get("data") or info.get("data")
    return data, None  # --data is always a local image-folder root


def _base_model_of(info: dict) -> tuple[str | None, str | None, str | None]:
    """(base model as recorded, its Hub id or None, its revision or None)."""
    base = info.get("base_model")
    if not base:
        return None, None, None
    source = info.get("base_model_source")
    hub_id = None if source == "local" else (base if source == "hub" else hub_id_or_none(base))
    return base, hub_id, info.get("base_model_revision")


def _results(training: dict, evaluation: dict) -> list[tuple[str, str | None, dict]]:
    """[(split, data, metrics)] for the validation metrics of training and the test metrics of eval.json."""
    out = []
    info, cfg = training.get("info") or {}, training.get("train_config") or {}
    if isinstance(training.get("validation"), dict):
        out.append((info.get("val_split") or cfg.get("val_split") or "validation", _dataset_of(cfg, info)[0],
                    training["validation"]))
    if evaluation and any(_num(evaluation.get(k)) is not None for k, _, _ in METRICS):
        out.append((evaluation.get("split") or "test", evaluation.get("data"), evaluation))
    return out


def card_metadata(model_dir: str | Path, repo_id: str | None = None) -> dict:
    """The card's YAML metadata as a dict: library, licence, tags, datasets, base_model, model-index."""
    config, training, evaluation = _load(model_dir)
    cls = MODEL_CLASSES[config["model_type"]]
    card_data = cls._hub_mixin_info.model_card_data.to_dict()
    info, train_cfg = training.get("info") or {}, training.get("train_config") or {}
    tags = [t for t in card_data.get("tags", []) if t not in ("model_hub_mixin", "pytorch_model_hub_mixin")]
    tags += [t for t in ("pytorch", f"backbone-{config.get('backbone')}") if t not in tags]
    meta = {"library_name": "fdftnet", "license": card_data.get("license", "mit"),
            "pipeline_tag": "image-classification", "tags": tags}
    data_ids = [d for d in (_dataset_of(train_cfg, info)[1], hub_id_or_none(evaluation.get("data"))) if d]
    if data_ids:
        meta["datasets"] = list(dict.fromkeys(data_ids))
    _, base_id, _ = _base_model_of(info)
    if base_id:
        meta["base_model"] = base_id
    results = []
    for split, data, m in _results(training, evaluation):
        metrics = [{"type": t, "value": _num(m.get(k)), "name": name}
                   for k, t, name in METRICS if _num(m.get(k)) is not None]
        if not metrics:
            continue
        hub_data = hub_id_or_none(data)
        dataset = {"name": hub_data or (Path(str(data)).name if data else "unknown"),
                   "type": hub_data or "imagefolder", "split": split}
        results.append({"task": {"type": "image-classification", "name": "Fake face detection"},
                        "dataset": dataset, "metrics": metrics})
    if results:
        name = repo_id.split("/")[-1] if repo_id else Path(model_dir).resolve().name
        meta["model-index"] = [{"name": name, "results": results}]
    return meta


def render_roc_svg(curves: list[tuple[str, list[float], list[float]]], size: int = 320) -> str:
    """A self-contained SVG ROC plot: one polyline per (label, fpr, tpr), axes, chance diagonal, legend."""
    pad, w = 44, size - 60  # left/bottom margin for labels; plot area is w x w
    x0, y0 = pad, 16

    def pt(fx: float, ty: float) -> str:
        return f"{x0 + fx * w:.1f},{y0 + (1 - ty) * w:.1f}"

    colours = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
             f'viewBox="0 0 {size} {size}" font-family="sans-serif" font-size="11">',
             f'<rect width="{size}" height="{size}" fill="white"/>',
             f'<rect x="{x0}" y="{y0}" width="{w}" height="{w}" fill="none" stroke="#333"/>',
             f'<polyline points="{pt(0, 0)} {pt(1, 1)}" fill="none" stroke="#999" stroke-dasharray="4 3"/>']
    for t in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{x0 + t * w:.1f}" y="{y0 + w + 14}" text-anchor="middle">{t:g}</text>')
        parts.append(f'<text x="{x0 - 6}" y="{y0 + (1 - t) * w + 4:.1f}" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{x0 + w / 2:.1f}" y="{y0 + w + 30}" text-anchor="middle">False positive rate</text>')
    parts.append(f'<text x="12" y="{y0 + w / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {y0 + w / 2:.1f})">True positive rate</text>')
    for i, (label, fpr, tpr) in enumerate(curves):
        c = colours[i % len(colours)]
        points = " ".join(pt(min(max(f, 0.0), 1.0), min(max(t, 0.0), 1.0)) for f, t in zip(fpr, tpr))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{c}" stroke-width="2"/>')
        ly = y0 + w - 12 - 16 * (len(curves) - 1 - i)
        parts.append(f'<line x1="{x0 + w - 130}" y1="{ly - 4}" x2="{x0 + w - 114}" y2="{ly - 4}" '
                     f'stroke="{c}" stroke-width="2"/>')
        parts.append(f'<text x="{x0 + w - 110}" y="{ly}">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _roc_curves(training: dict, evaluation: dict) -> list[tuple[str, list[float], list[float]]]:
    curves = []
    for split, _, m in _results(training, evaluation):
        roc = m.get("roc") or {}
        fpr, tpr = roc.get("fpr") or [], roc.get("tpr") or []
        if len(fpr) >= 2 and len(fpr) == len(tpr):
            curves.append((f"{split} (AUROC {_fmt(m.get('auroc'), 3)})", fpr, tpr))
    return curves


def render_roc(model_dir: str | Path) -> str | None:
    """roc.svg text for a checkpoint, or None when it has no ROC points (no training.json / eval.json)."""
    _, training, evaluation = _load(model_dir)
    curves = _roc_curves(training, evaluation)
    return render_roc_svg(curves) if curves else None


def _table(rows: list[tuple[str, str]]) -> list[str]:
    return ["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]


def _training_rows(config: dict, training: dict) -> list[tuple[str, str]]:
    cfg, info = training.get("train_config") or {}, training.get("info") or {}
    best = training.get("best_epoch")  # training.json is written at the best epoch: its history stops there
    rows = [("stage", cfg.get("stage") or info.get("stage")),
            ("optimizer", cfg.get("optimizer")), ("learning rate", cfg.get("lr")),
            ("backbone learning rate", cfg.get("backbone_lr") if not config.get("freeze_backbone", True) else None),
            ("weight decay", cfg.get("weight_decay")), ("batch size", cfg.get("batch_size")),
            ("best epoch", f"{best} of at most {cfg['epochs']}" if best and cfg.get("epochs") else best),
            ("early stopping", f"{cfg.get('monitor')}, patience {cfg.get('patience')}" if cfg.get("monitor") else None),
            ("shots per class", cfg.get("shots") if cfg.get("shots") is not None else ("all" if cfg else None)),
            ("seed", cfg.get("seed"))]
    crop, size = config.get("crop_size", 64), config.get("input_size", 64)
    if size != crop or crop != 64 or config.get("mean") is not None:
        ftt = config.get("ftt_size") or crop
        rows.append(("backbone input", (f"the {crop}x{crop} crop" + (f" resized to {size} px" if size != crop else " as is"))
                     + (", ImageNet mean/std" if config.get("mean") is not None else "")
                     + (f" (the FTT reads the crop at {ftt}x{ftt})" if config["model_type"] == "fdftnet" else "")))
    if cfg.get("schedule"):
        rows.append(("lr schedule", cfg["schedule"]))
    for key, name in (("layer_decay", "layer-wise lr decay"), ("frozen_epochs", "epochs with the backbone frozen first"),
                      ("ema", "weights averaged (EMA decay)"), ("mixup", "mixup alpha"), ("cutmix", "cutmix alpha")):
        if cfg.get(key):
            rows.append((name, cfg[key]))
    if cfg.get("pseudo_fakes"):  # docs/selfblend.md
        rows.append(("pseudo-fakes", f"{cfg['pseudo_fakes']}: " + ("the whole fake class (reals only)" if cfg.get("reals_only")
                                                                  else f"{cfg.get('pseudo_ratio')} of each batch's fakes")))
    if config["model_type"] == "fdftnet":
        rows += [("backbone frozen", config.get("freeze_backbone")),
                 ("FTT stages (M)", config.get("ftt_stages") if config.get("use_ftt", True) else "none (ablation)"),
                 ("MBblockV3 blocks (N)", config.get("mb_blocks"))]
        stages = (config.get("backbone_args") or {}).get("feature_blocks")
        if stages:
            rows.append(("MBblockV3 reads", f"the backbone's first {stages} block stages"))
    if cfg.get("augment"):
        cut = (f"yes: α = {cfg.get('cutout_holes')} holes, β = {cfg.get('cutout_scale')}"
               if cfg.get("cutout") else "no")
        rows += [("augmentation", "yes"), ("cutout", cut)]
    elif cfg:
        rows.append(("augmentation", "no"))
    return [(k, f"`{v}`" if isinstance(v, (int, float, bool)) else str(v)) for k, v in rows if v is not None]


def render_model_card(model_dir: str | Path, repo_id: str | None = None, location: str | None = None) -> str:
    """README.md text for a checkpoint directory: YAML metadata, usage, results, ROC, training, provenance.

    Args:
        model_dir: a local checkpoint directory (config.json required; training.json and eval.json optional).
        repo_id: the Hub id the card is for (used in the usage snippet); default: the local directory.
        location: the local path the usage snippet names when the card is written before the directory is moved
            there (a staged export); default: model_dir.
    """
    config, training, evaluation = _load(model_dir)
    crop = config.get("crop_size", 64)
    meta = card_metadata(model_dir, repo_id)
    info, train_cfg = training.get("info") or {}, training.get("train_config") or {}
    where = repo_id or location or str(model_dir)
    title = repo_id.split("/")[-1] if repo_id else Path(model_dir).resolve().name
    cls = "FDFtNet" if config["model_type"] == "fdftnet" else "BaselineDetector"
    backbone = config.get("backbone")
    what = (f"an FDFtNet fake-face detector (Fine-Tune Transformer + MBblockV3 head on a "
            f"{'frozen' if config.get('freeze_backbone', True) else 'fine-tuned'} `{backbone}` backbone)"
            if cls == "FDFtNet" else f"a baseline fake-face detector (`{backbone}` backbone with its own head)")
    info_mixin = MODEL_CLASSES[config["model_type"]]._hub_mixin_info
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {title}", "",
             f"This is {what}, from the [fdftnet]({info_mixin.repo_url}) package, a PyTorch implementation of "
             f"[FDFtNet: Facing Off Fake Images using Fake Detection Fine-tuning Network]({info_mixin.paper_url}) "
             f"(Jeon, Bang, Woo, IFIP SEC 2020). It outputs P(fake) for a {crop}x{crop} RGB face crop"
             + (" (the paper's 64 px)." if crop == 64 else " (native resolution: faces are cut from a photo straight "
                "to this size).") , "",
             "## Usage", "", "```python",
             f"from fdftnet import {cls}", "",
             f'model = {cls}.from_pretrained("{where}")   # eval mode, CPU',
             f"p_fake = model.predict_proba(x)   # x: (B, 3, {crop}, {crop}) float tensor in [0, 1]",
             "is_fake = p_fake >= model.threshold   # threshold calibrated on the validation split", "```", "",
             "From the command line:", "", "```bash",
             f"fdftnet predict --model {where} face1.png face2.jpg",
             f"fdftnet evaluate --model {where} --data DATA_ROOT --split test",
             (f"fdftnet finetune --init-from {where} --data NEW_DATA --out my-fdftnet --shots 100   # adapt to new fakes"
              if cls == "FDFtNet" else
              f"fdftnet finetune --backbone-from {where} --data DATA_ROOT --out my-fdftnet   # FDFtNet on this backbone")]
    if repo_id:
        lines.append(f"fdftnet pull --repo-id {repo_id} --out {title}")
    lines += ["```", ""]

    results = _results(training, evaluation)
    if results:
        lines += ["## Results", "", "| split | data | images | ACC | AUROC | AP | EER |", "|---|---|---|---|---|---|---|"]
        for split, data, m in results:
            lines.append(f"| {split} | {data or 'n/a'} | {m.get('n', 'n/a')} | "
                         + " | ".join(_fmt(m.get(k)) for k, _, _ in METRICS) + " |")
        lines += ["", "ACC is at the model's calibrated threshold; EER is the equal error rate (lower is better).", ""]
        if _roc_curves(training, evaluation):
            lines += ["![ROC curve](roc.svg)", ""]

    lines += _families_section(model_dir) + _calibration_section(model_dir)
    if training:
        lines += ["## Training", ""] + _table(_training_rows(config, training)) + [""]

    data, _ = _dataset_of(train_cfg, info)
    base, _, base_rev = _base_model_of(info)
    prov = []
    if base:
        what = "fine-tuned further from the FDFtNet" if info.get("init_from") else "base model (pretrained backbone):"
        prov.append(f"- {what} `{base}`" + (f" at revision `{base_rev}`" if base_rev else ""))
    elif info.get("stage") == "pretrain" and info.get("pretrained"):
        pip_name = PRETRAINED_PACKAGES.get(backbone, ("?",))[0]
        prov.append(f"- backbone initialised from ImageNet weights (`{pip_name}`, Apache-2.0), then fine-tuned")
    elif info.get("stage") == "pretrain":
        prov.append(f"- trained from scratch (`{backbone}` backbone, seed {train_cfg.get('seed')})")
    if data:
        split = info.get("train_split") or train_cfg.get("train_split")
        prov.append(f"- data: `{data}`" + (f", split `{split}`" if split else ""))
    if info.get("train_counts") == "streamed":
        prov.append("- training images: streamed (not loaded whole)")
    elif info.get("train_counts"):
        counts = ", ".join(f"{v} {k}" for k, v in sorted(info["train_counts"].items()))
        shots = info.get("shots", train_cfg.get("shots"))
        prov.append(f"- training images: {counts}" + (f" ({shots} shots per class, seed {info.get('seed')})"
                                                      if shots is not None else ""))
    prov += [f"- {note}" for note in info.get("notes", [])]  # pseudo-fakes: what the fakes and validation were
    if prov:
        lines += ["## Provenance", ""] + prov + [""]

    lines += ["## Intended use and limitations", "",
              "Research on detecting manipulated or generated face images. A detector trained on one family of "
              "generators or datasets often fails on others; validate on your own data before relying on it.", ""]
    mentions = " ".join(str(x) for x in (data, base, evaluation.get("data"), info.get("data")) if x)
    if "dfdc" in mentions.lower():
        lines += ["**Research use only.** These weights were trained or evaluated on the Deepfake Detection "
                  "Challenge (DFDC) dataset, whose terms allow non-commercial research use only; the same "
                  "restriction applies to these weights.", ""]
    return "\n".join(lines)


FAMILIES_NAME, CALIBRATION_NAME, RELIABILITY_NAME = "families.json", "calibration.json", "reliability.svg"
NOT_COVERED = ("**Not covered:** generators and tools this model was never trained or tested on (diffusion-model "
               "portraits, newer face-swap and reenactment tools, other GANs) may be called real with confidence; "
               "its verdict on them is a guess.")


def _families_section(model_dir) -> list[str]:
    """Per family of fakes: what the model was trained on and tested on (families.json), and what is not covered."""
    fam = _read_json(Path(model_dir) / FAMILIES_NAME)
    rows = fam.get("families") if isinstance(fam.get("families"), list) else []
    if not rows:
        return []
    out = ["## Families of fakes: trained and tested on", "",
           "| family | trained on | tested on | images | ACC | AUROC |", "|---|---|---|---|---|---|"]
    for r in rows:
        for t in r.get("tested_on") or [{}]:
            out.append(f"| {r.get('family', '?')} | {r.get('trained_on') or 'not trained on'} | {t.get('data', '-')} | "
                       f"{t.get('n', '-')} | {_fmt(t.get('acc'))} | {_fmt(t.get('auroc'))} |")
    return out + ["", NOT_COVERED, ""]


def _calibration_section(model_dir) -> list[str]:
    """Calibration before/after (calibration.json), the uncertain band, the out-of-distribution check."""
    cal = _read_json(Path(model_dir) / CALIBRATION_NAME)
    if not cal:
        return []
    f = cal.get("fitted_on") or {}
    band = cal.get("band") or [0, 1]
    out = ["## Calibration and verdicts", "",
           f"P(fake) is calibrated ({f.get('method', cal.get('method', 'platt'))}) on {f.get('what', 'held-out data')} "
           f"({f.get('n', '?')} images). Verdicts are **fake** at calibrated P(fake) >= {_fmt(band[1], 3)}, **real** "
           f"at <= {_fmt(band[0], 3)}, and **uncertain** between (a band chosen there so that each confident verdict "
           f"is right at least {_fmt(f.get('band_target'), 2)} of the time)"
           + (f"; a face whose features are farther from the training faces' than 95% of the validation faces' "
              f"({cal.get('ood_encoder', 'model')} features, {cal.get('ood_method')}) is **uncertain: unlike the "
              f"training data**." if cal.get("ood_threshold") is not None else "."), ""]
    tested = [t for t in cal.get("tested_on") or [] if "ece_after" in t]
    if tested:
        out += ["| tested on | images | AUROC | ECE before | ECE after | uncertain | unlike the training data | "
                "not called real |", "|---|---|---|---|---|---|---|---|"]
        for t in tested:
            out.append(f"| {t['family']} | {t['n']} | {_fmt(t.get('auroc'))} | {_fmt(t.get('ece_before'))} | "
                       f"{_fmt(t.get('ece_after'))} | {_pct(t.get('uncertain_share'))} | "
                       f"{_pct(t.get('unlike_training_share'))} | {_pct(t.get('not_called_real_share'))} |")
        out += ["", "ECE: expected calibration error (15 bins); lower is better.", ""]
        if (Path(model_dir) / RELIABILITY_NAME).is_file():
            out += ["![Reliability diagram](reliability.svg)", ""]
    return out


def _pct(v) -> str:
    v = _num(v)
    return "n/a" if v is None else f"{100 * v:.1f}%"


def render_reliability_svg(bins_before: list, bins_after: list, title: str, size: int = 320) -> str:
    """A reliability diagram: fake rate against mean P(fake) per bin, before (grey) and after (blue) calibration."""
    pad = 36
    span = size - 2 * pad

    def pts(bins):
        return " ".join(f"{pad + b['mean_p'] * span:.1f},{size - pad - b['fake_rate'] * span:.1f}"
                        for b in bins if b.get("n") and b.get("mean_p") is not None)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" font-family="sans-serif" '
            f'font-size="11"><rect width="{size}" height="{size}" fill="white"/>'
            f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="#bbb" stroke-dasharray="4"/>'
            f'<rect x="{pad}" y="{pad}" width="{span}" height="{span}" fill="none" stroke="#333"/>'
            f'<polyline points="{pts(bins_before)}" fill="none" stroke="#999" stroke-width="2"/>'
            f'<polyline points="{pts(bins_after)}" fill="none" stroke="#1f77b4" stroke-width="2"/>'
            f'<text x="{pad}" y="{pad - 10}">{escape(title)}: grey before, blue after</text>'
            f'<text x="{size / 2 - 40}" y="{size - 8}">mean P(fake)</text>'
            f'<text x="6" y="{size / 2}" transform="rotate(-90 10 {size / 2})">fake rate</text></svg>')


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_model_card(model_dir: str | Path, repo_id: str | None = None, location: str | None = None) -> Path:
    """Write README.md (and roc.svg when there are ROC points) into a checkpoint directory; returns README.md."""
    model_dir = Path(model_dir)
    roc = render_roc(model_dir)
    if roc is not None:
        _write_atomic(model_dir / ROC_NAME, roc)  # before the card that links to it
    tested = [t for t in _read_json(model_dir / CALIBRATION_NAME).get("tested_on") or [] if t.get("reliability_after")]
    if tested:  # before the card too: it links the diagram only when the file is there
        _write_atomic(model_dir / RELIABILITY_NAME, render_reliability_svg(
            tested[0]["reliability_before"], tested[0]["reliability_after"], tested[0]["family"]))
    text = render_model_card(model_dir, repo_id, location)
    _write_atomic(model_dir / "README.md", text)
    return model_dir / "README.md"
