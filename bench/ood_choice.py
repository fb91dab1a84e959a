"""Which out-of-distribution signal (issue #32): the held-out-family check for each candidate.

A detector that never met a family of fakes should flag most of that family's faces (uncertain, or called fake)
while flagging few of its own test faces. For one model this scores every candidate OOD distance of fdftnet.trust
(the model's own features or ImageNet EfficientNet-Lite0's; kNN or Mahalanobis; threshold at the 95th percentile of
the validation faces' distances, bank of up to 4,096 training faces; the encoders of fdftnet.trust.REFERENCE_ENCODERS)
and the full verdict (calibration, band, OOD):

    python -m bench.ood_choice --model /work/runs/native/dfdc-all --val DATA/dfdc-full-128:validation \
        --bank DATA/dfdc-full-128:train --own DATA/dfdc-full-128:test --held-out DATA/gan-faces-128:test \
        --save bench/results/trust/ood_choice_dfdc-all.json

Target (issue #32): >= 80% of the held-out family flagged or called fake, <= 10% of the model's own test faces flagged.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fdftnet import load_model
from fdftnet.data import sample_shots
from fdftnet.models import crop_size_of
from fdftnet.trust import MAX_BANK, OODScorer, embed, fit_trust, load_sets, reference_features


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--val", required=True, action="append", metavar="ROOT:SPLIT")
    ap.add_argument("--bank", required=True, action="append", metavar="ROOT:SPLIT")
    ap.add_argument("--own", required=True, metavar="ROOT:SPLIT", help="the model's own kind of test faces")
    ap.add_argument("--held-out", required=True, metavar="ROOT:SPLIT", help="a family the model never trained on")
    ap.add_argument("--limit", type=int, help="at most N images per class per split (smoke runs)")
    ap.add_argument("--save")
    args = ap.parse_args(argv)
    model = load_model(args.model)
    size = crop_size_of(model)
    val, own, held = (load_sets(e, size, args.limit) for e in (args.val, [args.own], [args.held_out]))
    bank = load_sets(args.bank, size, args.limit)
    per = min(MAX_BANK // 2, *bank.counts().values())
    bank = bank.subset(sample_shots(bank.labels, per, seed=0))
    feats = {}
    for name, data in (("val", val), ("own", own), ("held", held), ("bank", bank)):
        logits, f = embed(model, data.images)
        feats[name] = {"model": f, "imagenet": reference_features(data.images),
                       "imagenet-early": reference_features(data.images, early=True), "logits": logits}
    out = {"model": args.model, "val": args.val, "bank": args.bank, "own": args.own, "held_out": args.held_out,
           "n": {k: len(d) for k, d in (("val", val), ("own", own), ("held_out", held), ("bank", bank))},
           "candidates": {}}
    for encoder in ("model", "imagenet", "imagenet-early"):
        for method in ("knn", "mahalanobis"):
            scorer = OODScorer(method, feats["bank"][encoder], bank.labels)
            thr = float(np.quantile(scorer(feats["val"][encoder]), 0.95))
            trust = fit_trust(model, val, None)
            trust.ood, trust.ood_threshold = scorer, thr
            row = {}
            for name, data in (("own", own), ("held_out", held)):
                d = scorer(feats["own" if name == "own" else "held"][encoder])
                verdicts = trust.verdicts(feats["own" if name == "own" else "held"]["logits"],
                                          feats["own" if name == "own" else "held"][encoder])
                v = np.array([r["verdict"] for r in verdicts])
                row[name] = {"ood_flagged": float((d > thr).mean()), "uncertain": float((v == "uncertain").mean()),
                             "flagged_or_called_fake": float((v != "real").mean())}
            row["meets_target"] = bool(row["held_out"]["flagged_or_called_fake"] >= 0.8
                                       and row["own"]["ood_flagged"] <= 0.1)
            out["candidates"][f"{encoder}/{method}"] = row
            print(f"{encoder}/{method}: own flagged {row['own']['ood_flagged']:.1%}, held-out flagged "
                  f"{row['held_out']['ood_flagged']:.1%}, held-out not called real "
                  f"{row['held_out']['flagged_or_called_fake']:.1%}", flush=True)
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
