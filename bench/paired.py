"""Paired bootstrap: is model B better than model A on the same test images, beyond the test set's sampling noise?

    python -m bench.paired --data ../shared/data/dfdc64 --a RUNS/dfdc64/resnetv2_50/baseline \
        --b RUNS/dfdc64/resnetv2_50/fdftnet-unfrozen-lowlr-no-cutout RUNS/...-s1 RUNS/...-s2 [--save out.json]

Both models score the same split once; then `--samples` bootstrap resamples of the images (the same indices for A
and B) give the distribution of B - A in ACC (each model at its own calibrated threshold) and in AUROC. Prints one
JSON object: per B, the observed differences, their 95% percentile interval and the share of resamples where B
was not better. Because A and B err on many of the same images, this interval is narrower than the one a single
model's ACC has on its own.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from fdftnet import load_model
from fdftnet.data import load_image_folder
from fdftnet.inference import predict_imageset, predict_tensor


def _acc(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    return float(((p >= threshold).astype(int) == y).mean())


def paired(y: np.ndarray, pa: np.ndarray, ta: float, pb: np.ndarray, tb: float, samples: int = 2000,
           seed: int = 0) -> dict:
    """B - A in ACC and AUROC on the images as given, and over `samples` paired bootstrap resamples."""
    rng = np.random.default_rng(seed)
    n = len(y)
    d_acc, d_auc = [], []
    for _ in range(samples):
        i = rng.integers(0, n, n)
        if y[i].min() == y[i].max():  # one class only: AUROC undefined (never at test-set sizes)
            continue
        d_acc.append(_acc(y[i], pb[i], tb) - _acc(y[i], pa[i], ta))
        d_auc.append(roc_auc_score(y[i], pb[i]) - roc_auc_score(y[i], pa[i]))
    out = {"n": n, "samples": len(d_acc)}
    for name, obs, d in (("acc", _acc(y, pb, tb) - _acc(y, pa, ta), d_acc),
                         ("auroc", roc_auc_score(y, pb) - roc_auc_score(y, pa), d_auc)):
        d = np.asarray(d)
        out[name] = {"diff": float(obs), "ci95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))],
                     "p_not_better": float((d <= 0).mean())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="image folders ROOT/SPLIT/{real,fake}")
    ap.add_argument("--split", default="test")
    ap.add_argument("--a", required=True, help="the reference model (e.g. the baseline)")
    ap.add_argument("--b", required=True, nargs="+", help="models compared with it")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--limit", type=int, help="at most N images per class (smoke runs)")
    ap.add_argument("--b-flip", action="store_true",
                    help="score each B as the mean P(fake) of an image and its mirror image (test-time flip; B may "
                         "then be A itself); B's threshold stays its calibrated one")
    ap.add_argument("--save", help="also write the JSON here")
    args = ap.parse_args(argv)
    data = load_image_folder(args.data, args.split, limit=args.limit)
    y = data.labels.numpy()

    def score(path, flip=False):
        model = load_model(path)
        p = predict_imageset(model, data)
        if flip:
            p = (p + predict_tensor(model, torch.flip(data.images, dims=[3]))) / 2
        return p, float(model.threshold)

    pa, ta = score(args.a)
    result = {"data": args.data, "split": args.split, "a": args.a, "samples": args.samples, "b_flip": args.b_flip,
              "b": {}}
    for b in args.b:
        pb, tb = score(b, args.b_flip)
        result["b"][b] = paired(y, pa, ta, pb, tb, args.samples)
    text = json.dumps(result, indent=1)
    print(text)
    if args.save:
        Path(args.save).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
