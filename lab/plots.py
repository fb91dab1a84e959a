"""Plotly figures from plain lists and dicts (training history rows, bench-format runs, sweep results)."""
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

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
