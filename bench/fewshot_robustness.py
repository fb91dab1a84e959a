"""The few-shot detectors of bench.reproduce under JPEG, blur, down-scaling and noise, on their own test split.

Clean gan64/test cannot rank the few-shot methods: at k = 100 the fully fine-tuned baseline gets 0-1 of its
1,002 images wrong and an AUROC of 1.0. This scores the same trained models (every method, every seed of one k)
on corrupted copies of that split, the same corrupted images for every model (fdftnet.robustness.sweep), and
writes each model's AUROC and ACC at its calibrated threshold, with the mean and sd over seeds per method:

    python -m bench.fewshot_robustness --data ../shared/data --runs /work/runs --k 100
    # -> bench/results/fewshot_robustness_k100.json; bench.reproduce --report-only renders it in REPORT.md

Nothing is trained. The models are those the few-shot job records in RECORDS/jobs name (--records, default
--results), loaded from RUNS. The report compares each model's clean score with the job of the same key in its own
bench/results/jobs, so a sweep over a re-run of the jobs says so and shows both runs' clean scores.
"""
import argparse
import platform
import time
from pathlib import Path

import torch

from bench.reproduce import gather
from fdftnet.checkpoint import load_model, write_json
from fdftnet.robustness import CORRUPTIONS, sweep
from fdftnet.train import TrainConfig, load_split

LEVELS = {"jpeg": [90, 70, 50, 30], "blur": [0.5, 1.0, 2.0], "downscale": [2.0, 4.0], "noise": [5.0, 10.0, 20.0]}


def fewshot_jobs(results: Path, k: int) -> list[dict]:
    """The finished few-shot job records with k shots per class, sorted by key."""
    return [r for r in gather(results)["runs"] if r["group"] == "fewshot" and r["shots"] == k]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data", help="folder holding the few-shot dataset (gan64/)")
    ap.add_argument("--runs", required=True, help="the runs folder of bench.reproduce (the trained models)")
    ap.add_argument("--results", default="bench/results", help="where the JSON is written")
    ap.add_argument("--records", help="the results folder whose jobs/ name the models (default: --results)")
    ap.add_argument("--k", type=int, default=100, help="shots per class of the jobs to score")
    ap.add_argument("--kinds", default=",".join(CORRUPTIONS), help="corruptions to apply")
    ap.add_argument("--limit", type=int, default=None, help="cap test images per class (smoke runs)")
    args = ap.parse_args(argv)
    results, records = Path(args.results), Path(args.records or args.results)
    jobs = fewshot_jobs(records, args.k)
    if not jobs:
        raise SystemExit(f"no finished few-shot job with k = {args.k} in {records / 'jobs'}")
    datasets = {r["dataset"] for r in jobs}
    if len(datasets) != 1:
        raise SystemExit(f"the k = {args.k} jobs test on several datasets ({', '.join(sorted(datasets))})")
    dataset = datasets.pop()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in CORRUPTIONS]
    if unknown:
        raise SystemExit(f"unknown corruption {unknown[0]!r}; choose from {', '.join(CORRUPTIONS)}")
    test = load_split(TrainConfig(data=str(Path(args.data) / dataset)), "test", args.limit)
    models = {r["key"]: load_model(Path(args.runs) / r["key"], device="cpu") for r in jobs}
    t0 = time.time()
    res = sweep(models, test, kinds=kinds, levels={k: LEVELS[k] for k in kinds})
    out = {
        "dataset": dataset, "split": "test", "k": args.k, "n": res["n"], "counts": res["counts"],
        "records": str(records / "jobs"),
        "models": {r["key"]: {"variant": r["variant"], "seed": r["seed"],
                              "clean_test": {m: r["test"][m] for m in ("acc", "auroc")}} for r in jobs},
        "per_model": res["kinds"],
        "seconds": time.time() - t0, "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": f"cpu ({platform.machine()}, torch {torch.__version__})",
    }
    path = results / f"fewshot_robustness_k{args.k}.json"
    write_json(path, out)
    print(f"{len(models)} models, {res['n']} images, {out['seconds']:.0f}s -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
