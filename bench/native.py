"""Native resolution and all of dfdc-full (issue #30): evaluate the runs, pair them, write REPORT.md's section.

Each run folder is scored on the built sets at its own crop size (dfdc-full test and test-extra, gan test framed
as a photo's faces and as whole images); paired bootstraps compare the new models with today's default on the same
4,000 test crops (matched by file name: dfdc64/test and dfdc-full/test are the same crops); the section lists the
data curve, the families table, the augmentation trial and every command.

    python -m bench.native --runs /work/runs/native --data /work/data --shared ../shared/data     # eval + paired
    python -m bench.native --report-only                  # bench/results/native/section.md from the JSON files
    python -m bench.native --export mixed-fdftnet --make-default      # ship it and its baseline into checkpoints/

Results: bench/results/native/<run>.json ({set: metrics}) and paired_*.json; REPORT.md includes section.md.
"""
import argparse
import functools
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "native"
# run name -> (what it is, what it trained on); the folders are RUNS/<name>
RUNS = {
    "dfdc-8k": ("Lite0 at 128 px, 4,000 + 4,000 train crops, degradations", "dfdc-full train, 8k (limit 4,000 a class)"),
    "dfdc-8k-flip": ("the same, flips only (no degradations)", "dfdc-full train, 8k"),
    "dfdc-16k": ("Lite0 at 128 px, 8,045 + 8,045 train crops, degradations", "dfdc-full train, 16k (all reals)"),
    "dfdc-all": ("Lite0 at 128 px, all 47,118 train crops (balanced epochs), degradations", "dfdc-full train, 47k"),
    "mixed": ("dfdc-all + gan faces (gan-faces-128 finetune, 100 a class held out)", "dfdc-full train + gan finetune"),
    "dfdc-fdftnet": ("FDFtNet (FTT at 64 px + MBblockV3) on `dfdc-all`, trained end to end at lr/10 for the backbone",
                     "dfdc-full finetune"),
    "mixed-fdftnet": ("FDFtNet (FTT at 64 px + MBblockV3) on `mixed`, trained end to end at lr/10 for the backbone",
                      "dfdc-full finetune + gan finetune"),
}
SETS = {"dfdc test": ("dfdc-full-128", "test"), "dfdc test-extra": ("dfdc-full-128", "test-extra"),
        "gan test (faces)": ("gan-faces-128", "test"), "gan test (whole images)": ("gan-128", "test")}
CHECKPOINTS = ROOT / "checkpoints"
OLD_DEFAULT = CHECKPOINTS / "fdftnet-efficientnet_lite0-dfdc64"


@functools.cache
def _model(model_dir: Path):
    """A run's model, loaded once however many sets it scores."""
    from fdftnet import load_model
    return load_model(model_dir)


def _scores(model_dir, root: Path, split: str, limit=None):
    """(labels, P(fake) at the model's threshold, file stems, threshold) of a split at the model's crop size."""
    from fdftnet.data import load_image_folder
    from fdftnet.inference import predict_imageset
    from fdftnet.models import crop_size_of
    model = _model(Path(model_dir))
    data = load_image_folder(root, split, limit=limit, size=crop_size_of(model))
    stems = [f"{Path(p).parent.name}/{Path(p).stem}" for p in data.paths]
    return data.labels.numpy(), predict_imageset(model, data), stems, float(model.threshold)


def evaluate_runs(args) -> None:
    from fdftnet.metrics import compute_metrics, jsonable
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.only_runs or RUNS:
        folder = Path(args.runs) / name
        if not (folder / "model.safetensors").is_file():
            print(f"{name}: no model in {folder}, skipped", flush=True)
            continue
        path = OUT / f"{name}.json"
        done = json.loads(path.read_text()) if path.is_file() else {}
        for label, (root, split) in SETS.items():
            if label in done and not args.again:
                continue
            y, p, _, thr = _scores(folder, Path(args.data) / root, split, args.limit)
            m = jsonable(compute_metrics(y, p, threshold=thr))
            m.pop("roc", None)
            done[label] = {**m, "data": f"{root}/{split}"}
            print(f"{name} on {label}: ACC {m['acc']:.4f} AUROC {m['auroc']:.4f} (n={m['n']})", flush=True)
            path.write_text(json.dumps(done, indent=1) + "\n")


def paired_runs(args) -> None:
    """New models against today's default (on dfdc64/test, the same crops) and against each other."""
    from bench.paired import paired
    pairs = [("old-default", "mixed-fdftnet", "dfdc test"), ("old-default", "mixed", "dfdc test"),
             ("old-default", "dfdc-all", "dfdc test"), ("dfdc-all", "mixed", "dfdc test"),
             ("dfdc-all", "mixed", "gan test (faces)"), ("mixed", "mixed-fdftnet", "dfdc test"),
             ("dfdc-all", "dfdc-fdftnet", "dfdc test"),
             ("dfdc-8k-flip", "dfdc-8k", "dfdc test"), ("dfdc-8k", "dfdc-16k", "dfdc test"),
             ("dfdc-16k", "dfdc-all", "dfdc test"), ("dfdc-8k", "dfdc-all", "dfdc test")]
    cache = {}

    def scores(name, label):
        if (name, label) not in cache:
            if name == "old-default":  # its own 64-px crops of the same test images
                cache[name, label] = _scores(OLD_DEFAULT, Path(args.shared) / "dfdc64", "test", args.limit)
            else:
                root, split = SETS[label]
                cache[name, label] = _scores(Path(args.runs) / name, Path(args.data) / root, split, args.limit)
        return cache[name, label]

    for a, b, label in pairs:
        if not all(n == "old-default" or (Path(args.runs) / n / "model.safetensors").is_file() for n in (a, b)):
            continue
        path = OUT / f"paired_{a}_vs_{b}_{label.split()[0]}.json"
        if path.is_file() and not args.again:  # done before: --again to redo
            continue
        ya, pa, sa, ta = scores(a, label)
        yb, pb, sb, tb = scores(b, label)
        if sa != sb or not np.array_equal(ya, yb):  # the same crops, in the same order: matched by file name
            order = {s: i for i, s in enumerate(sb)}
            idx = [order[s] for s in sa]
            pb, yb = pb[idx], yb[idx]
            assert np.array_equal(ya, yb)
        r = paired(ya, pa, ta, pb, tb, samples=2000)
        out = {"a": a, "b": b, "set": label, **r}
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"{b} - {a} on {label}: ACC {r['acc']['diff']:+.4f} {r['acc']['ci95']}, AUROC {r['auroc']['diff']:+.4f} "
              f"{r['auroc']['ci95']}", flush=True)


# per family of fakes: what the runs that met it trained on, and the sets that test it (families.json, the card)
FAMILIES = {"DFDC face swaps": ("dfdc-full train: 8,045 real + 39,073 fake crops of DFDC videos, 128 px",
                                ("dfdc test", "dfdc test-extra")),
            "GAN faces": ("gan finetune split: faces of a face-generator website (BaseMax/FakeFaces) against UTKFace "
                          "reals, 100 a class held out for validation", ("gan test (faces)",))}
MET_GAN = {"mixed", "mixed-fdftnet"}  # the runs that trained on GAN faces


def families(run: str) -> dict:
    """families.json of a run, from its scores in bench/results/native/<run>.json."""
    res = json.loads((OUT / f"{run}.json").read_text())
    rows = []
    for family, (trained, sets) in FAMILIES.items():
        met = family != "GAN faces" or run in MET_GAN
        rows.append({"family": family, "trained_on": trained if met else None,
                     "tested_on": [{"data": res[s]["data"], "n": res[s]["n"], "acc": res[s]["acc"],
                                    "auroc": res[s]["auroc"]} for s in sets if s in res]})
    return {"families": rows, "source": f"python -m bench.native (run {run})"}


def export(args) -> None:
    """Ship `--export` (an FDFtNet run) and its baseline run as checkpoints/{fdftnet,baseline}-efficientnet_lite0-
    native128: weights, training.json, eval.json (dfdc-full test, as `fdftnet evaluate` scores it), families.json
    and the card; built in a staging folder and swapped in whole (bench.reproduce's export does the same)."""
    import shutil
    import uuid

    from bench.reproduce import _swap_in
    from fdftnet import load_model
    from fdftnet.card import write_model_card
    from fdftnet.checkpoint import write_json
    from fdftnet.inference import evaluate
    from fdftnet.metrics import jsonable
    from fdftnet.models import crop_size_of
    from fdftnet.train import TrainConfig, load_split
    dest = CHECKPOINTS
    fd_run = Path(args.runs) / args.export
    base_run = Path(json.loads((fd_run / "training.json").read_text())["info"]["base_model"])
    staging = dest / f".export-{uuid.uuid4().hex}"
    names = {kind: f"{kind}-efficientnet_lite0-native128" for kind in ("baseline", "fdftnet")}
    data_root = Path(args.data) / "dfdc-full-128"
    try:
        for kind, src in (("baseline", base_run), ("fdftnet", fd_run)):
            out = staging / names[kind]
            out.mkdir(parents=True)
            for f in ("config.json", "model.safetensors"):
                shutil.copy2(src / f, out / f)
            training = json.loads((src / "training.json").read_text())
            if kind == "fdftnet":  # provenance: the shipped baseline, not the runs folder
                training["info"].update(base_model=f"checkpoints/{names['baseline']}", base_model_source="local")
            write_json(out / "training.json", training)
            model = load_model(out)
            m = jsonable(evaluate(model, load_split(TrainConfig(data=str(data_root)), "test", size=crop_size_of(model))))
            write_json(out / "eval.json", {**m, "split": "test", "data": "dfdc-full-128", "run": src.name})
            print(f"{names[kind]}: dfdc-full test ACC {m['acc']:.4f} AUROC {m['auroc']:.4f}", flush=True)
            write_json(out / "families.json", families(src.name))
            write_model_card(out, location=f"checkpoints/{names[kind]}")
        _swap_in(staging, dest, list(names.values()))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if args.make_default:
        write_json(dest / "default.json", names)
    print(f"exported {names} to {dest}" + (" (now the default)" if args.make_default else ""))


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def section() -> str:
    """REPORT.md's section on the native-resolution runs, from bench/results/native/*.json."""
    res = {n: json.loads((OUT / f"{n}.json").read_text()) for n in RUNS if (OUT / f"{n}.json").is_file()}
    if not res:
        return ""
    out = ["## Native resolution and all of dfdc-full (issue #30)", "",
           "EfficientNet-Lite0 from ImageNet, fed 128-px crops built from the sources at that size (`fdftnet "
           "build-data`, [docs/data.md](../../docs/data.md)) instead of 64-px crops upsampled. ACC % / AUROC % at "
           "each model's own threshold; dfdc test = dfdc64/test's 4,000 crops, test-extra = 20,085 other crops of "
           "the held-out videos; gan test = gan64's 1,002 test images, framed as `predict` frames a photo's face "
           "(faces) or whole.", "",
           "| run | what | trained on | " + " | ".join(SETS) + " |", "|---|---|---|" + "---|" * len(SETS)]
    for name, r in res.items():
        what, trained = RUNS[name]
        cells = [f"{_pct(r[s]['acc'])} / {_pct(r[s]['auroc'])}" if s in r else "–" for s in SETS]
        out.append(f"| `{name}` | {what} | {trained} | " + " | ".join(cells) + " |")
    pairs = sorted(OUT.glob("paired_*.json"))
    if pairs:
        out += ["", "Paired bootstraps (2,000 resamples of the same images; b − a in points; `*`: the 95% interval "
                "excludes 0). `old-default` is today's default (FDFtNet on Lite0, 64-px crops) on dfdc64/test, the "
                "same 4,000 crops at 64 px:", "", "| a | b | set | ACC b − a (95% CI) | AUROC b − a (95% CI) |",
                "|---|---|---|---|---|"]
        for path in pairs:
            p = json.loads(path.read_text())
            cell = lambda m: (f"{100 * p[m]['diff']:+.2f} ({100 * p[m]['ci95'][0]:+.2f} to {100 * p[m]['ci95'][1]:+.2f})"  # noqa: E731
                              + (" *" if p[m]["ci95"][0] > 0 or p[m]["ci95"][1] < 0 else ""))
            out.append(f"| `{p['a']}` | `{p['b']}` | {p['set']} | {cell('acc')} | {cell('auroc')} |")
    notes = ROOT / "bench" / "native_discussion.md"
    if notes.is_file():
        out += ["", notes.read_text().strip()]
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="/work/runs/native")
    ap.add_argument("--data", default="/work/data", help="the built sets (dfdc-full-128, gan-faces-128, gan-128)")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"), help="dfdc64 for today's default")
    ap.add_argument("--only-runs", nargs="+", choices=list(RUNS))
    ap.add_argument("--limit", type=int, help="at most N images per class (smoke runs)")
    ap.add_argument("--again", action="store_true", help="re-score sets already in the JSON, redo pairs already made")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--skip-paired", action="store_true")
    ap.add_argument("--export", metavar="RUN", choices=sorted(MET_GAN - {"mixed"}),
                    help="ship this FDFtNet run and its baseline into checkpoints/ (after its scores are in)")
    ap.add_argument("--make-default", action="store_true", help="with --export: point checkpoints/default.json at them")
    args = ap.parse_args(argv)
    if args.export:
        return export(args)
    if not args.report_only:
        evaluate_runs(args)
        if not args.skip_paired:
            paired_runs(args)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "section.md").write_text(section())
    print(f"wrote {OUT / 'section.md'}")


if __name__ == "__main__":
    main()
