"""Compare tab: baseline vs FDFtNet from bench/results/*.json and this session's runs; a robustness sweep.

The sweep's dataset is picked by name from a server-side list (the benchmark sets in FDFTNET_DATA, one or more
roots separated by os.pathsep, and this session's hold-outs), never typed as a path by the browser.

bench/results/*.json: {"runs": [{"backbone", "variant", "dataset", "shots", "seed",
"metrics": compute_metrics(...) dict, "history": [{"epoch", "train_loss", "val_loss", "val_acc", "val_auroc"}]}]}
(a bare list of runs is read too). Every file in the folder is read; a run without "metrics" is skipped.
"""
import json
import os
from pathlib import Path

import gradio as gr

from fdftnet.data import load_image_folder
from fdftnet.robustness import CORRUPTIONS, sweep

from . import plots
from . import state as st

ALL = "all"
SPLITS = ["test", "validation", "train", "finetune"]
FULL = "full set"  # runs trained on every image of their split (shots: null), e.g. the main benchmark rows


def load_runs(root: str | None = None) -> tuple[list[dict], list[str]]:
    """(runs, problems) from every *.json under bench/results (or FDFTNET_RESULTS)."""
    root = Path(root or os.environ.get("FDFTNET_RESULTS", "bench/results"))
    runs, problems = [], []
    for f in sorted(root.glob("*.json")) if root.is_dir() else []:
        try:
            data = json.loads(f.read_text())
            found = data.get("runs", []) if isinstance(data, dict) else data
            runs += [dict(r, source=f.name) for r in found
                     if isinstance(r, dict) and isinstance(r.get("metrics"), dict)]
        except (OSError, ValueError, AttributeError, TypeError) as e:
            problems.append(f"{f.name}: {type(e).__name__}")
    return runs, problems


def _all_runs(session: dict | None) -> tuple[list[dict], str]:
    runs, problems = load_runs()
    note = "" if runs else "No benchmark results yet (bench/results/*.json). "
    note += f"**Unreadable:** {', '.join(problems)}. " if problems else ""
    mine = [dict(r, source="this session") for r in (session or {}).get("runs", [])]
    return runs + mine, note + f"{len(runs)} benchmark runs, {len(mine)} from this session."


def _run_label(i: int, r: dict) -> str:
    return (f"{i}: {r.get('dataset', '?')} · {r.get('backbone', '?')} · {r.get('variant', '?')} · "
            f"{r.get('shots')} shots · seed {r.get('seed')}")


def _shots_key(shots: int | None) -> str:
    """A run's entry in the shots dropdown."""
    return FULL if shots is None else str(shots)


def refresh(session: dict, dataset: str, shots: str):
    """Dropdown choices and the overview figures for the chosen dataset and shots."""
    runs, note = _all_runs(session)
    datasets = sorted({str(r.get("dataset")) for r in runs})
    dataset = dataset if dataset in datasets else (datasets[0] if datasets else None)
    in_ds = [r for r in runs if str(r.get("dataset")) == dataset]
    counts = sorted({r.get("shots") for r in in_ds}, key=lambda s: -1 if s is None else s)  # the full set first
    shot_values = [ALL] + [_shots_key(s) for s in counts]
    shots = shots if shots in shot_values else (FULL if None in counts else shot_values[-1])
    sel = [r for r in in_ds if shots in (ALL, _shots_key(r.get("shots")))]
    labels = [_run_label(i, r) for i, r in enumerate(runs)]
    return (gr.update(choices=datasets, value=dataset), gr.update(choices=shot_values, value=shots),
            gr.update(choices=labels, value=labels[-1] if labels else None),
            plots.roc_curves(sel), plots.metric_bars(sel), plots.shots_curve(in_ds), note)


def show_run(label: str, session: dict):
    runs, _ = _all_runs(session)
    try:
        run = runs[int(str(label).split(":")[0])]
    except (ValueError, IndexError):
        return plots.empty("pick a run"), plots.empty("pick a run")
    title = _run_label(0, run).split(": ", 1)[1]
    hist = plots.training_curves(run.get("history") or [], title) if run.get("history") else plots.empty("no history")
    return hist, plots.confusion(run.get("metrics", {}).get("confusion"), title)


def _sweep_models(session: dict) -> list[tuple[str, str]]:
    out = st.model_choices(session)
    return out + [(f"base of {m['label'].split(':')[0]}", m["base"]) for m in st.session_models(session)]


def sweep_datasets(session: dict | None) -> dict[str, tuple[str, list[str]]]:
    """{name shown: (server-side root, its splits)}: the benchmark sets, then this session's hold-outs."""
    out = {}
    for root in filter(None, os.environ.get("FDFTNET_DATA", "").split(os.pathsep)):
        splits = [s for s in SPLITS if (Path(root) / s).is_dir()]
        if splits:
            out[f"benchmark: {Path(root).name}"] = (root, splits)
    for m in st.session_models(session):
        out[f"hold-out of {m['label'].split(':')[0]}"] = (m["data"], ["validation"])
    return out


@st.guard
def run_sweep(chosen: list, dataset: str, split: str, limit: float, kinds: list, session: dict,
              progress=gr.Progress()):
    if not chosen:
        raise ValueError("pick at least one model")
    sets = sweep_datasets(session)
    if dataset not in sets:
        raise ValueError("pick a dataset from the list" + ("" if sets else " (fine-tune first: its hold-out joins it)"))
    root, splits = sets[dataset]
    if split not in splits:
        raise ValueError(f"{dataset} has no split {str(split)[:40]!r}; it has {', '.join(splits)}")
    data = load_image_folder(root, split, limit=int(limit))
    names = {v: lab for lab, v in _sweep_models(session)}
    models = {names.get(v, v): st.get_model(v, session=session) for v in chosen}
    res = sweep(models, data, kinds=kinds or None, callback=lambda d, t: progress(d / t, desc="robustness sweep"))
    return plots.robustness(res), f"{len(data)} images from {dataset}, {split}: {data.counts()}"


def session_changed(session: dict, dataset: str, split: str, chosen: list):
    """New session models join the sweep's choices; the latest hold-out is picked when no dataset is."""
    sets = sweep_datasets(session)
    models = st.session_models(session)
    if models and dataset not in sets:
        dataset, split = f"hold-out of {models[-1]['label'].split(':')[0]}", "validation"
    return (gr.update(choices=_sweep_models(session), value=chosen), gr.update(choices=list(sets), value=dataset),
            gr.update(choices=sets[dataset][1] if dataset in sets else SPLITS, value=split))


def render(session: gr.State, demo: gr.Blocks) -> None:
    note = gr.Markdown(_all_runs(None)[1])
    with gr.Row():
        dataset = gr.Dropdown([], label="dataset")
        shots = gr.Dropdown([], label="shots per class")
        refresh_btn = gr.Button("Refresh", scale=0)
    with gr.Row():
        roc, bars = gr.Plot(label="ROC"), gr.Plot(label="ACC / AUROC")
    shots_fig = gr.Plot(label="accuracy vs shots")
    run = gr.Dropdown([], label="run: training curves and confusion matrix")
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
                                label="dataset (benchmark sets, this session's hold-outs)")
        split = gr.Dropdown(SPLITS, value="test", allow_custom_value=True, label="split")
        limit = gr.Slider(4, 500, value=50, step=1, label="images per class")
    sweep_btn = gr.Button("Run the sweep", variant="primary")
    sweep_status = gr.Markdown()
    sweep_fig = gr.Plot(plots.robustness({}), label="robustness")

    outs = [dataset, shots, run, roc, bars, shots_fig, note]
    refresh_btn.click(refresh, [session, dataset, shots], outs, api_visibility="private")
    gr.on([demo.load, dataset.input, shots.input, session.change], refresh, [session, dataset, shots], outs,
          api_visibility="private")
    run.change(show_run, [run, session], [hist, conf], api_visibility="private")
    session.change(session_changed, [session, sweep_set, split, chosen], [chosen, sweep_set, split],
                   api_visibility="private")
    sweep_btn.click(run_sweep, [chosen, sweep_set, split, limit, kinds, session], [sweep_fig, sweep_status],
                    api_name="robustness", concurrency_limit=1, concurrency_id="train")
