"""Compare tab: the headline first (baseline vs FDFtNet per backbone, and ACC / AUROC vs shots per method), then
ROC one backbone at a time, one run's details, and a robustness sweep.

Results come from bench/results (or FDFTNET_RESULTS; lab/results.py reads them) and this session's runs. The
sweep's dataset is picked by name from a server-side list (the benchmark sets in FDFTNET_DATA, one or more roots
separated by os.pathsep, and this session's uploads), never typed as a path by the browser.
"""
import os
from collections import Counter
from pathlib import Path

import gradio as gr

from fdftnet.data import load_image_folder
from fdftnet.models import crop_size_of
from fdftnet.robustness import CORRUPTIONS, sweep

from . import limits, plots
from . import state as st
from .results import JOBS, SESSION, load_runs, load_sweeps, run_points

SPLITS = ["test", "validation", "train", "finetune"]
FULL = "full set"  # runs trained on every image of their split (shots: null), e.g. the main benchmark rows
NO_RESULTS = ("**No results yet.** Fine-tune in the Few-shot tab (one model, or *compare methods* for curves vs "
              "shots), or run `python -m bench.reproduce` / `fdftnet sweep --json bench/results/sweep_NAME.json` "
              "on the server and press Refresh.")
NO_SWEEP = "no shots sweep here yet: run “compare methods” in the Few-shot tab, or fdftnet sweep --json"


def _all_runs(session: dict | None) -> tuple[list[dict], list[dict], str]:
    """(bench-format runs, shots points, a status line), the benchmark's and this session's."""
    runs, problems = load_runs()
    points, sweep_problems = load_sweeps()
    problems += sweep_problems
    # bench.reproduce's "long" group trains the same variants for longer: not seeds of the main rows
    runs = [dict(r, variant=f"{r.get('variant')} (long)") if r.get("group") == "long" else r for r in runs]
    mine = [dict(r, source=SESSION) for r in (session or {}).get("runs", [])]
    note = "" if runs or points or mine else NO_RESULTS + " "
    note += f"**Unreadable:** {', '.join(problems)}. " if problems else ""
    note += f"{len(runs)} benchmark runs, {len(points)} sweep runs, {len(mine)} from this session."
    return runs + mine, points + run_points(runs + mine), note


def _run_label(i: int, r: dict) -> str:
    return (f"{i}: {r.get('dataset', '?')} · {r.get('backbone', '?')} · {r.get('variant', '?')} · "
            f"{r.get('shots')} shots · seed {r.get('seed')}")


def _shots_key(shots: int | None) -> str:
    return FULL if shots is None else str(shots)


def headline_pairs(runs: list[dict]) -> list[dict]:
    """Per backbone, its most-run baseline-like variant and its most-run FDFtNet (ties: higher mean AUROC), renamed
    "baseline" and "FDFtNet" with the exact variant kept as "recipe": the default headline."""
    out = []
    for bb in {r.get("backbone") for r in runs}:
        mine = [r for r in runs if r.get("backbone") == bb]
        count = Counter(str(r.get("variant")) for r in mine)
        auroc = {v: sum(r["metrics"].get("auroc") or 0 for r in mine if str(r.get("variant")) == v) / n
                 for v, n in count.items()}
        for family, prefix in (("baseline", "baseline"), ("FDFtNet", "fdftnet")):
            found = [v for v in count if v.startswith(prefix)]  # a linear probe is neither: shown when ticked
            if found:
                pick = max(found, key=lambda v: (count[v], auroc[v]))
                out += [dict(r, variant=family, recipe=pick) for r in mine if str(r.get("variant")) == pick]
    return out


def plain(variant: str) -> tuple[str, str]:
    """(label shown, value) of a variant for a checkbox: its plain name, the lab's name kept in brackets."""
    shown = plots.plain_name(variant)
    return (f"{shown} [{variant}]" if shown != variant else variant), variant


def refresh(session: dict, dataset: str, shots: str, backbone: str | None = None, variants: list | None = None,
            source: str | None = None):
    """Every choice and figure of the tab for the chosen dataset, shots, ROC backbone, variants and sweep source.
    With no dataset chosen, the session's latest sweep or fine-tune comes first, then the benchmark's."""
    runs, points, note = _all_runs(session)
    datasets = sorted({str(r.get("dataset")) for r in runs} | {p["dataset"] for p in points})
    mine = [str(r.get("dataset")) for r in (session or {}).get("runs", [])]
    dataset = dataset if dataset in datasets else (mine[-1] if mine else (datasets[0] if datasets else None))
    in_ds = [r for r in runs if str(r.get("dataset")) == dataset]
    counts = sorted({r.get("shots") for r in in_ds}, key=lambda s: -1 if s is None else s)
    shot_values = [_shots_key(s) for s in counts]
    shots = shots if shots in shot_values else (shot_values[0] if None in counts else (shot_values or [None])[-1])
    sel = [r for r in in_ds if _shots_key(r.get("shots")) == shots]
    names = sorted({str(r.get("variant")) for r in sel}, key=lambda v: (not v.startswith("baseline"), v))
    variants = [v for v in variants or [] if v in names]  # none ticked: baseline vs FDFtNet per backbone
    shown = [r for r in sel if str(r.get("variant")) in variants] if variants else headline_pairs(sel)
    with_roc = [b for b, _ in Counter(r.get("backbone") for r in sel if (r["metrics"].get("roc") or {}).get("fpr"))
                .most_common()]
    backbone = backbone if backbone in with_roc else (with_roc[0] if with_roc else None)
    pts = [p for p in points if p["dataset"] == dataset]
    sources = sorted({p["source"] for p in pts}, key=lambda s: (s == JOBS, s == SESSION, s))  # sweep files first
    source = source if source in sources else (sources[0] if sources else None)
    where = "the full training set" if shots == FULL else f"{shots} shots per class"
    head = (plots.headline(shown, f"{dataset}, {where}: mean ± 1 sd over seeds") if datasets
            else plots.empty("no results yet: fine-tune in the Few-shot tab, or run bench.reproduce"))
    curves = plots.shots_bands([p for p in pts if p["source"] == source], f"{dataset} vs shots ({source})",
                               placeholder=NO_SWEEP) if source else plots.empty(NO_SWEEP)
    labels = [_run_label(i, r) for i, r in enumerate(runs)]
    # ROC: the headline pair (each named with its recipe), unless variants are ticked
    roc_runs = sel if variants else [dict(r, variant=f"{r['variant']} ({r.get('recipe')})") for r in shown]
    return (gr.update(choices=datasets, value=dataset), gr.update(choices=shot_values, value=shots),
            gr.update(choices=[plain(v) for v in names], value=variants), gr.update(choices=with_roc, value=backbone),
            gr.update(choices=sources, value=source), gr.update(choices=labels, value=None),
            head, curves, plots.roc_by_variant(roc_runs, backbone), note)


def show_run(label: str, session: dict):
    runs, _, _ = _all_runs(session)
    try:
        run = runs[int(str(label).split(":")[0])]
    except (ValueError, IndexError):
        return plots.empty("pick a run"), plots.empty("pick a run")
    title = _run_label(0, run).split(": ", 1)[1]
    hist = plots.training_curves(run.get("history") or [], title) if run.get("history") else plots.empty("no history")
    return hist, plots.confusion(run.get("metrics", {}).get("confusion"), title)


# ----------------------------------------------------------------------------------------------
# robustness sweep


def _sweep_models(session: dict) -> list[tuple[str, str]]:
    out = st.model_choices(session)
    return out + [(f"base of {m['label'].split(':')[0]}", m["base"]) for m in st.session_models(session)]


def sweep_datasets(session: dict | None) -> dict[str, tuple[str, list[str]]]:
    """{name shown: (server-side root, its splits)}: the benchmark sets, then this session's uploads."""
    out = {}
    for root in filter(None, os.environ.get("FDFTNET_DATA", "").split(os.pathsep)):
        splits = [s for s in SPLITS if (Path(root) / s).is_dir()]
        if splits:
            out[f"benchmark: {Path(root).name}"] = (root, splits)
    for m in st.session_models(session):
        if m.get("data"):  # a single fine-tune's hold-out (a sweep's upload is listed below)
            out[f"hold-out of {m['label'].split(':')[0]}"] = (m["data"], ["validation"])
    for u in (session or {}).get("uploads", []):  # the face crops of a "compare methods" upload
        if os.path.isdir(os.path.join(u["root"], u["split"])):
            out[u["name"]] = (u["root"], [u["split"]])
    return out


@st.guard
def run_sweep(models: list | None = None, dataset: str | None = None, split: str = "test",
              images_per_class: int = 50, corruptions: list | None = None, session: dict | None = None,
              request: gr.Request = None, progress=gr.Progress()):
    """Robustness sweep: AUROC of the chosen models under JPEG, blur, down-scaling and noise, on a dataset by name."""
    chosen, limit, kinds = models, images_per_class, corruptions  # the API's names, the code's
    if not chosen:
        raise ValueError("pick at least one model")
    sets = sweep_datasets(session)
    if dataset not in sets:
        raise ValueError("pick a dataset from the list" + ("" if sets else " (fine-tune first: its hold-out joins it)"))
    root, splits = sets[dataset]
    if split not in splits:
        raise ValueError(f"{dataset} has no split {str(split)[:40]!r}; it has {', '.join(splits)}")
    names = {v: lab for lab, v in _sweep_models(session)}
    models = {names.get(v, v): st.get_model(v, session=session) for v in chosen}
    # one training-class job per visitor, and the shared training slot (waiting at most FDFTNET_QUEUE_WAIT s)
    limits.training_threads()
    with limits.one_at_a_time(request, "train"), limits.TRAINING.hold():
        # at the largest crop size of the chosen models: each scores them resized to its own (fdftnet.robustness)
        data = load_image_folder(root, split, limit=int(limit), size=max(crop_size_of(m) for m in models.values()))
        res = sweep(models, data, kinds=kinds or None, callback=lambda d, t: progress(d / t, desc="robustness sweep"))
    return plots.robustness(res), f"{len(data)} images from {dataset}, {split}: {data.counts()}"


def session_changed(session: dict, dataset: str, split: str, chosen: list):
    """New session models and uploads join the sweep's choices; the latest is picked when no dataset is."""
    sets = sweep_datasets(session)
    if sets and dataset not in sets and (st.session_models(session) or (session or {}).get("uploads")):
        dataset = list(sets)[-1]
        split = sets[dataset][1][0]
    return (gr.update(choices=_sweep_models(session), value=chosen), gr.update(choices=list(sets), value=dataset),
            gr.update(choices=sets[dataset][1] if dataset in sets else SPLITS, value=split))


def render(session: gr.State, demo: gr.Blocks) -> None:
    note = gr.Markdown(_all_runs(None)[2], elem_id="cmp-note")
    with gr.Row():
        dataset = gr.Dropdown([], label="dataset")
        shots = gr.Dropdown([], label="trained on (shots per class)")
        refresh_btn = gr.Button("Refresh", scale=0)
    with gr.Accordion("More variants (advanced)", open=False):
        variants = gr.CheckboxGroup([], label="variants to compare", info="none ticked: per backbone, the baseline "
                                    "and the FDFtNet recipe with the most seeds (hover a point for its recipe)")
    head = gr.Plot(label="baseline vs FDFtNet per backbone", elem_id="cmp-headline")
    source = gr.Dropdown([], label="shots curves from", info="a sweep file, this session, or the benchmark jobs")
    curves = gr.Plot(label="ACC / AUROC vs shots", elem_id="cmp-shots")
    backbone = gr.Dropdown([], label="ROC of backbone")
    roc = gr.Plot(label="ROC", elem_id="cmp-roc")
    with gr.Accordion("One run: training curves and confusion matrix", open=False):
        run = gr.Dropdown([], label="run")
        with gr.Row():
            hist, conf = gr.Plot(label="training curves"), gr.Plot(label="confusion matrix")
    gr.Markdown("### Robustness sweep: AUROC under JPEG, blur, down-scaling and noise")
    with gr.Row():
        default = [v for _, v in st.model_choices(None) if v in (st.DEFAULT, st.DEFAULT_BASELINE)]
        chosen = gr.CheckboxGroup(_sweep_models(None), value=default if st.discover()["default"]["fdftnet"] else [],
                                  label="models")
        kinds = gr.CheckboxGroup(list(CORRUPTIONS), value=list(CORRUPTIONS), label="corruptions")
    with gr.Row():
        sets = list(sweep_datasets(None))
        # custom values reach run_sweep, which refuses them in one line (a Dropdown would raise in preprocess)
        sweep_set = gr.Dropdown(sets, value=sets[0] if sets else None, allow_custom_value=True, scale=2,
                                label="dataset (benchmark sets, this session's uploads)",
                                info="the server's sets (FDFTNET_DATA), then each upload of this session: "
                                "fine-tune or compare methods in the Few-shot tab to add yours")
        split = gr.Dropdown(SPLITS, value="test", allow_custom_value=True, label="split")
        limit = gr.Slider(4, 500, value=50, step=1, precision=0, label="images per class")
    sweep_btn = gr.Button("Run the sweep", variant="primary")
    sweep_status = gr.Markdown(label="sweep status")
    sweep_fig = gr.Plot(plots.robustness({}), label="robustness")

    ins = [session, dataset, shots, backbone, variants, source]
    outs = [dataset, shots, variants, backbone, source, run, head, curves, roc, note]
    gr.on([refresh_btn.click, demo.load, dataset.input, shots.input, backbone.input, variants.input, source.input],
          refresh, ins, outs, api_visibility="private")
    # a new sweep or fine-tune of this session: shown first (its dataset, its curves), whatever was picked before
    session.change(lambda s, _d, _sh, b, v, _so: refresh(s, None, None, b, v, None), ins, outs,
                   api_visibility="private")
    run.input(show_run, [run, session], [hist, conf], api_visibility="private")
    session.change(session_changed, [session, sweep_set, split, chosen], [chosen, sweep_set, split],
                   api_visibility="private")
    sweep_btn.click(run_sweep, [chosen, sweep_set, split, limit, kinds, session], [sweep_fig, sweep_status],
                    api_name="robustness", concurrency_limit=None, concurrency_id="train")
