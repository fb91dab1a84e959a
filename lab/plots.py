"""Plotly figures from plain lists and dicts (training history rows, bench-format runs, sweep results)."""
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# a variant's or method's name in the lab -> what it is, for legends, tables and checkboxes (issue #32: no internal
# names on the page)
NAMES = {
    "fdftnet-frozen": "FDFtNet, detector kept fixed",
    "fdftnet-unfrozen": "FDFtNet, detector trained too", "fdftnet-unfrozen-lowlr": "FDFtNet, detector at lr / 10",
    "baseline-head": "baseline, last layer retrained", "baseline-full": "baseline, all layers retrained",
    "linear-probe": "linear probe", "fdftnet": "FDFtNet (new layers)", "fdftnet-adapt": "the default FDFtNet, trained further",
    "baseline-continued": "baseline, trained further", "fdftnet-start": "FDFtNet before fine-tuning",
}


def plain_name(variant) -> str:
    """The plain name of a variant or method (itself when it has none)."""
    return NAMES.get(str(variant), str(variant))


_LAYOUT = dict(template="plotly_white", margin=dict(l=40, r=20, t=50, b=40), height=340)


def empty(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=15, color="#666"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig.update_layout(**{**_LAYOUT, "height": 220})


def training_curves(history: list[dict], title: str = "") -> go.Figure:
    """Loss, ACC and AUROC per epoch from fit()'s epoch rows (train_loss, val_loss, train_acc, val_acc, val_auroc)."""
    if not history:
        return empty("the curves appear after the first epoch")
    fig = make_subplots(rows=1, cols=3, subplot_titles=("loss", "accuracy", "validation AUROC"))
    ep = [h["epoch"] for h in history]
    series = [(1, "train_loss", "train"), (1, "val_loss", "validation"),
              (2, "train_acc", "train"), (2, "val_acc", "validation"), (3, "val_auroc", "validation")]
    colours = {"train": "#1f77b4", "validation": "#ff7f0e"}
    for col, key, name in series:
        if any(h.get(key) is not None for h in history):
            fig.add_trace(go.Scatter(x=ep, y=[h.get(key) for h in history], mode="lines+markers", name=name,
                                     line=dict(color=colours[name]), legendgroup=name, showlegend=col == 1), 1, col)
    fig.update_xaxes(title_text="epoch", dtick=max(1, len(ep) // 8))
    fig.update_yaxes(range=[0, 1.05], col=2)
    fig.update_yaxes(range=[0, 1.05], col=3)
    return fig.update_layout(**_LAYOUT, title=title or None)


def _label(run: dict) -> str:
    return f"{run.get('backbone', '?')} · {run.get('variant', '?')}"


def roc_curves(runs: list[dict]) -> go.Figure:
    """One ROC line per run (AUROC in the legend), plus the chance diagonal."""
    fig = go.Figure()
    for run in runs:
        roc = run.get("metrics", {}).get("roc") or {}
        if roc.get("fpr"):
            auc = run["metrics"].get("auroc")
            fig.add_trace(go.Scatter(x=roc["fpr"], y=roc["tpr"], mode="lines",
                                     name=f"{_label(run)} ({auc:.3f})" if auc is not None else _label(run)))
    if not fig.data:
        return empty("no ROC curves for this selection")
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#aaa"), name="chance"))
    fig.update_xaxes(title_text="false positive rate", range=[0, 1])
    fig.update_yaxes(title_text="true positive rate", range=[0, 1.01])
    return fig.update_layout(**_LAYOUT, title="ROC")


def _frame(runs: list[dict]) -> pd.DataFrame:
    rows = [{"backbone": r.get("backbone", "?"), "variant": r.get("variant", "?"), "shots": r.get("shots"),
             "ACC": r.get("metrics", {}).get("acc"), "AUROC": r.get("metrics", {}).get("auroc")} for r in runs]
    return pd.DataFrame(rows, columns=["backbone", "variant", "shots", "ACC", "AUROC"])


def metric_bars(runs: list[dict]) -> go.Figure:
    """ACC and AUROC per backbone, one bar per variant (mean over seeds)."""
    df = _frame(runs)
    if df.empty:
        return empty("no runs for this selection")
    long = df.melt(id_vars=["backbone", "variant"], value_vars=["ACC", "AUROC"], var_name="metric")
    long = long.groupby(["backbone", "variant", "metric"], as_index=False)["value"].mean()
    fig = px.bar(long, x="backbone", y="value", color="variant", barmode="group", facet_col="metric",
                 range_y=[0, 1.05], text_auto=".3f")
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))  # "metric=ACC" -> "ACC"
    return fig.update_layout(**_LAYOUT, title="ACC / AUROC per backbone (mean over seeds)")


def shots_curve(runs: list[dict]) -> go.Figure:
    """Accuracy vs shots per (backbone, variant), mean over seeds."""
    df = _frame(runs).dropna(subset=["shots"])
    if df.empty or df["shots"].nunique() < 1:
        return empty("no runs with a number of shots")
    df = df.groupby(["backbone", "variant", "shots"], as_index=False)["ACC"].mean().sort_values("shots")
    df["model"] = df["backbone"] + " · " + df["variant"]
    order = [f"{s:g}" for s in sorted(df["shots"].unique())]
    df["shots"] = df["shots"].map(lambda s: f"{s:g}")  # evenly spaced categories: 10, 100, 1000 ...
    fig = px.line(df, x="shots", y="ACC", color="model", markers=True, range_y=[0, 1.05],
                  category_orders={"shots": order})
    fig.update_xaxes(type="category")
    return fig.update_layout(**_LAYOUT, title="accuracy vs shots per class (mean over seeds)")


def confusion(matrix: list[list[int]], title: str = "") -> go.Figure:
    """2x2 [[real->real, real->fake], [fake->real, fake->fake]] as an annotated heatmap."""
    if not matrix:
        return empty("no confusion matrix")
    fig = px.imshow(matrix, x=["predicted real", "predicted fake"], y=["real", "fake"], text_auto=True,
                    color_continuous_scale="Blues", aspect="auto")
    fig.update_layout(**{**_LAYOUT, "height": 300}, title=title or "confusion matrix")
    return fig.update_coloraxes(showscale=False)


def robustness(result: dict) -> go.Figure:
    """AUROC per corruption kind (one panel each) vs strength, one line per model; 'clean' first."""
    kinds = result.get("kinds", {})
    if not kinds:
        return empty("run the sweep to see AUROC under corruptions")
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=[k["label"] for k in kinds.values()],
                        shared_yaxes=True)
    palette = px.colors.qualitative.Plotly
    for col, k in enumerate(kinds.values(), start=1):
        x = ["clean" if v is None else f"{v:g}" for v in k["levels"]]
        for i, (name, ys) in enumerate(k["auroc"].items()):
            fig.add_trace(go.Scatter(x=x, y=ys, mode="lines+markers", name=name, legendgroup=name,
                                     line=dict(color=palette[i % len(palette)]), showlegend=col == 1), 1, col)
    fig.update_yaxes(range=[0, 1.02], title_text="AUROC", col=1)
    return fig.update_layout(**{**_LAYOUT, "height": 360}, title=f"robustness on {result.get('n', '?')} images")


# ----------------------------------------------------------------------------------------------
# Compare tab and the few-shot "compare methods" sweep

_METHOD_COLOURS = {"baseline": "#7f7f7f", "FDFtNet": "#ff7f0e", "baseline-head": "#7f7f7f", "baseline-full": "#1f77b4",
                   "linear-probe": "#2ca02c", "fdftnet": "#ff7f0e", "fdftnet-adapt": "#d62728"}


def _colours(names: list[str]) -> dict[str, str]:
    """Known methods keep their colour in every figure; the others take the palette in order."""
    palette = [c for c in px.colors.qualitative.Plotly if c not in _METHOD_COLOURS.values()]
    out, i = {}, 0
    for n in names:
        base = n.split(" · ")[-1]
        if base in _METHOD_COLOURS and _METHOD_COLOURS[base] not in out.values():
            out[n] = _METHOD_COLOURS[base]
        else:
            out[n], i = palette[i % len(palette)], i + 1
    return out


def _zoom(lo: float, hi: float) -> list[float]:
    """An axis range around [lo, hi] with some air, inside [0, 1]."""
    pad = max(0.02, (hi - lo) * 0.15)
    return [max(0.0, lo - pad), min(1.0 + pad / 3, hi + pad)]  # a point at 1.0 stays whole


# legends sit above the plot, under its title: below it they covered the x axis' tick labels (issue #32.6)
LEGEND_ABOVE = dict(orientation="h", yanchor="bottom", y=1.06, x=0)


def headline(runs: list[dict], title: str) -> go.Figure:
    """ACC and AUROC per backbone, one point per variant with a ± 1 sd bar over seeds, on an axis zoomed to the
    data (points, not bars: a bar on a zoomed axis would lie about its length). A run's "recipe", when given, is
    the exact variant behind a family name ("baseline", "FDFtNet") and shows on hover."""
    rows = [{"backbone": r.get("backbone", "?"), "variant": plain_name(r.get("variant", "?")),
             "recipe": plain_name(r.get("recipe", r.get("variant", "?"))), "ACC": r.get("metrics", {}).get("acc"),
             "AUROC": r.get("metrics", {}).get("auroc")} for r in runs]
    df = pd.DataFrame(rows, columns=["backbone", "variant", "recipe", "ACC", "AUROC"]).dropna(
        subset=["ACC", "AUROC"], how="all")
    if df.empty:
        return empty("no runs for this dataset and shots")
    agg = df.groupby(["backbone", "variant", "recipe"]).agg(
        n=("ACC", "size"), ACC_mean=("ACC", "mean"), ACC_sd=("ACC", "std"), AUROC_mean=("AUROC", "mean"),
        AUROC_sd=("AUROC", "std")).reset_index().fillna({"ACC_sd": 0.0, "AUROC_sd": 0.0})
    backbones = sorted(agg["backbone"].unique())
    variants = sorted(agg["variant"].unique(), key=lambda v: (not v.startswith("baseline"), v))
    colour = _colours(variants)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("ACC", "AUROC"), horizontal_spacing=0.08)
    width = 0.6 / max(1, len(variants))
    for col, m in enumerate(("ACC", "AUROC"), start=1):
        for j, v in enumerate(variants):
            d = agg[agg["variant"] == v]
            x = [backbones.index(b) + (j - (len(variants) - 1) / 2) * width for b in d["backbone"]]
            fig.add_trace(go.Scatter(
                x=x, y=d[f"{m}_mean"], error_y=dict(type="data", array=d[f"{m}_sd"], thickness=1.5, width=4),
                mode="markers", marker=dict(size=10, color=colour[v]), name=v, legendgroup=v, showlegend=col == 1,
                customdata=list(zip(d["backbone"], d["recipe"], d["n"], d[f"{m}_sd"])),
                hovertemplate=f"%{{customdata[0]}} · %{{customdata[1]}}<br>{m} %{{y:.3f}} ± %{{customdata[3]:.3f}}"
                              f" (%{{customdata[2]}} runs)<extra></extra>"), 1, col)
        lo = (agg[f"{m}_mean"] - agg[f"{m}_sd"]).min()
        hi = (agg[f"{m}_mean"] + agg[f"{m}_sd"]).max()
        fig.update_yaxes(range=_zoom(lo, hi), col=col)
    fig.update_xaxes(zeroline=False, tickvals=list(range(len(backbones))), ticktext=backbones,
                     range=[-0.6, len(backbones) - 0.4])
    return fig.update_layout(**{**_LAYOUT, "height": 400, "margin": {**_LAYOUT["margin"], "t": 110}}, title=title, legend=LEGEND_ABOVE)


def roc_by_variant(runs: list[dict], backbone: str) -> go.Figure:
    """ROC of one backbone, one line per variant (its lowest seed), AUROC in the legend, which sits below."""
    chosen: dict[str, dict] = {}
    for r in sorted(runs, key=lambda r: (r.get("seed") is None, r.get("seed") or 0)):
        if r.get("backbone") == backbone and (r.get("metrics", {}).get("roc") or {}).get("fpr"):
            chosen.setdefault(str(r.get("variant", "?")), r)
    if not chosen:
        return empty(f"no ROC points for {backbone}" if backbone else
                     "no ROC curve for these runs (a sweep keeps each run's scores, not its curve)")
    names = sorted(chosen, key=lambda v: (not v.startswith("baseline"), v))
    colour = _colours(names)
    fig = go.Figure()
    for v in names:
        r = chosen[v]
        auc, seed = r["metrics"].get("auroc"), r.get("seed")
        label = plain_name(v) + (f" ({auc:.3f})" if auc is not None else "") + (f", seed {seed}" if seed else "")
        fig.add_trace(go.Scatter(x=r["metrics"]["roc"]["fpr"], y=r["metrics"]["roc"]["tpr"], mode="lines",
                                 name=label, line=dict(color=colour[v])))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#aaa"), name="chance"))
    fig.update_xaxes(title_text="false positive rate", range=[0, 1])
    fig.update_yaxes(title_text="true positive rate", range=[0, 1.01])
    return fig.update_layout(**{**_LAYOUT, "height": 440 + 22 * (len(names) // 2),
                                "margin": {**_LAYOUT["margin"], "t": 110 + 22 * (len(names) // 2)}}, title=f"ROC, {backbone}",
                             legend=LEGEND_ABOVE)


def shots_bands(points: list[dict], title: str = "", placeholder: str = "no runs with a number of shots") -> go.Figure:
    """ACC and AUROC vs shots per class: one line per method (mean over seeds), a band of ± 1 sd where a k has
    two seeds or more. `points`: {"method", "k", "acc", "auroc"} (and "backbone": named when there are several)."""
    df = pd.DataFrame([p for p in points if p.get("k") is not None],
                      columns=["backbone", "method", "k", "seed", "acc", "auroc"])
    if df.empty:
        return empty(placeholder)
    df["method"] = df["method"].map(plain_name)
    df["line"] = df["method"] if df["backbone"].nunique() <= 1 else df["backbone"] + " · " + df["method"]
    names = sorted(df["line"].unique(), key=lambda v: (not v.split(" · ")[-1].startswith(("baseline", "linear")), v))
    colour = _colours(names)
    ks = sorted(df["k"].unique())
    fig = make_subplots(rows=1, cols=2, subplot_titles=("ACC", "AUROC"), horizontal_spacing=0.08)
    for col, m in enumerate(("acc", "auroc"), start=1):
        for name in names:
            g = df[df["line"] == name].groupby("k")[m].agg(["mean", "std", "size"]).reset_index().dropna(
                subset=["mean"])
            if g.empty:
                continue
            sd = g["std"].fillna(0.0)
            rgb = colour[name].lstrip("#")
            fill = "rgba({},{},{},0.15)".format(*(int(rgb[i:i + 2], 16) for i in (0, 2, 4)))
            if (g["size"] > 1).any():
                fig.add_trace(go.Scatter(x=list(g["k"]) + list(g["k"])[::-1],
                                         y=list(g["mean"] + sd) + list(g["mean"] - sd)[::-1], fill="toself",
                                         mode="lines",  # no markers: plotly adds them to short traces
                                         fillcolor=fill, line=dict(width=0), hoverinfo="skip", showlegend=False,
                                         legendgroup=name), 1, col)
            fig.add_trace(go.Scatter(x=g["k"], y=g["mean"], mode="lines+markers", name=name, legendgroup=name,
                                     line=dict(color=colour[name]), showlegend=col == 1,
                                     customdata=list(zip(sd, g["size"])),
                                     hovertemplate=f"{name}<br>k %{{x}}: {m.upper()} %{{y:.3f}} ± "
                                                   "%{customdata[0]:.3f} (%{customdata[1]} runs)<extra></extra>"),
                          1, col)
        lo, hi = df[m].min(), df[m].max()
        if lo == lo and hi == hi:  # not NaN
            fig.update_yaxes(range=_zoom(float(lo), float(hi)), col=col)
    log = len(ks) > 1 and ks[-1] / max(1, ks[0]) >= 8  # 5, 10, 20, 50: even steps on a log axis
    fig.update_xaxes(title_text="shots per class", type="log" if log else "linear", tickvals=ks,
                     ticktext=[str(k) for k in ks])
    return fig.update_layout(**{**_LAYOUT, "height": 420, "margin": {**_LAYOUT["margin"], "t": 110}},
                             title=title or "ACC / AUROC vs shots (mean ± 1 sd)", legend=LEGEND_ABOVE)


def video_timeline(record: dict, band: tuple | None = None) -> go.Figure:
    """P(fake) of each tracked face over the clip's time, one line per track (most suspicious first), with the
    uncertain band shaded when the model has one."""
    tracks = record.get("tracks") or []
    if not tracks:
        return empty(record.get("message") or "no face tracked")
    fig = go.Figure()
    if band:
        fig.add_hrect(y0=band[0], y1=band[1], fillcolor="#f2a900", opacity=0.12, line_width=0,
                      annotation_text="uncertain", annotation_position="top left")
    palette = px.colors.qualitative.Plotly
    for i, t in enumerate(tracks):
        fig.add_trace(go.Scatter(x=[f["t"] for f in t["frames"]], y=[f["p_fake"] for f in t["frames"]],
                                 mode="lines+markers", line=dict(color=palette[i % len(palette)]),
                                 name=f"person {t['track']}: {t['verdict']} ({t['p_fake']:.2f})"))
    fig.update_xaxes(title_text="time in the clip (s)", range=[0, max(record.get("duration") or 0,
                                                                       max(f["t"] for t in tracks for f in t["frames"]))])
    fig.update_yaxes(title_text="P(fake)", range=[0, 1.02])
    return fig.update_layout(**{**_LAYOUT, "height": 360, "margin": {**_LAYOUT["margin"], "t": 90}},
                             title="P(fake) of each person over time", legend=LEGEND_ABOVE)
