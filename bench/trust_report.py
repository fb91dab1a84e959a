"""REPORT.md's section on verdicts a visitor can trust (issue #32): each shipped checkpoint's calibration before and
after on every family it was tested on (its calibration.json), reliability diagrams, and the held-out-family check
of the out-of-distribution signal (bench/results/trust/ood_choice_*.json, from bench.ood_choice).

    python -m bench.trust_report          # bench/results/trust/section.md (+ reliability_<checkpoint>.png/.html)
"""
import json
from pathlib import Path

import plotly.graph_objects as go

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "trust"


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _reliability(name: str, tested: list[dict]) -> str:
    from bench.report import _save
    fig = go.Figure()
    for t in tested:
        for when, dash in (("before", "dot"), ("after", None)):
            bins = [b for b in t.get(f"reliability_{when}", []) if b.get("n")]
            fig.add_trace(go.Scatter(x=[b["mean_p"] for b in bins], y=[b["fake_rate"] for b in bins],
                                     mode="lines+markers", line=dict(dash=dash),
                                     name=f"{t['family']}, {when} (ECE {t.get(f'ece_{when}', 0):.3f})"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#aaa", dash="dash"), name="perfect"))
    fig.update_layout(title=f"Reliability: {name}", xaxis_title="mean P(fake) in the bin",
                      yaxis_title="share of fakes in the bin")
    return _save(fig, OUT, f"reliability_{name}")


def section() -> str:
    rows, figs = [], []
    for cal_path in sorted((ROOT / "checkpoints").glob("*/calibration.json")):
        name = cal_path.parent.name
        cal = json.loads(cal_path.read_text())
        f = cal.get("fitted_on") or {}
        band = cal.get("band") or [0, 1]
        tested = [t for t in cal.get("tested_on") or [] if "ece_after" in t]
        for t in tested:
            rows.append(f"| `{name}` | {f.get('method', '?')} on {f.get('what', '?')} | {t['family']} | {t['n']:,} | "
                        f"{t.get('auroc', 0):.3f} | {t['ece_before']:.4f} | **{t['ece_after']:.4f}** | "
                        f"{band[0]:.2f}–{band[1]:.2f} | {_pct(t.get('uncertain_share'))} | "
                        f"{_pct(t.get('unlike_training_share'))} | {_pct(t.get('not_called_real_share'))} |")
        if tested:
            figs.append(_reliability(name, tested))
    out = ["## Verdicts a visitor can trust: calibration, the uncertain band, unlike the training data (issue #32)", "",
           "Each shipped checkpoint's P(fake) is calibrated on its validation split (`fdftnet calibrate`, method "
           "chosen there: Platt scaling or isotonic, whichever has the lower ECE across the split's two halves); "
           "verdicts are fake / real / uncertain, the band chosen on validation so that each confident verdict is "
           "right at least 90% of the time there; a face farther from the training faces than 95% of the validation "
           "faces (in the features the OOD column names) is \"uncertain: unlike the training data\". ECE: expected "
           "calibration error, 15 bins, on the test set named; the last three columns are shares of that test set.",
           "", "| checkpoint | calibration fitted on | tested on | images | AUROC | ECE before | ECE after | band | "
           "uncertain | unlike training | not called real |", "|---|---|---|---|---|---|---|---|---|---|---|", *rows, ""]
    out += [x + "\n" for x in figs]
    for path in sorted(OUT.glob("ood_choice_*.json")):
        r = json.loads(path.read_text())
        out += [f"### Choosing the out-of-distribution signal: `{Path(r['model']).name}` never trained on "
                f"`{r['held_out']}` (`{path.name}`)", "",
                f"`python -m bench.ood_choice` (bank: {r['n']['bank']:,} training faces; threshold: the 95th percentile "
                f"of {r['n']['val']:,} validation faces' distances; own test {r['n']['own']:,} faces, held-out family "
                f"{r['n']['held_out']:,}). The target (issue #32): at least 80% of the held-out family flagged uncertain or "
                f"called fake, at most 10% of the model's own test faces flagged.", "",
                "| features / distance | own test flagged | held-out flagged | held-out uncertain | held-out not called "
                "real | meets the target |", "|---|---|---|---|---|---|"]
        for name, c in r["candidates"].items():
            out.append(f"| {name} | {_pct(c['own']['ood_flagged'])} | {_pct(c['held_out']['ood_flagged'])} | "
                       f"{_pct(c['held_out']['uncertain'])} | {_pct(c['held_out']['flagged_or_called_fake'])} | "
                       f"{'yes' if c['meets_target'] else 'no'} |")
        out.append("")
    notes = ROOT / "bench" / "trust_discussion.md"
    if notes.is_file():
        out += [notes.read_text().strip(), ""]
    return "\n".join(out)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "section.md").write_text(section())
    print(f"wrote {OUT / 'section.md'}")


if __name__ == "__main__":
    main()
