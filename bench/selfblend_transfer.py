"""How far each kind of fake carries to the other: detectors trained on real DFDC fakes or on self-blends, each
scored on a split's reals against (1) its real fakes and (2) one fixed self-blend of each of those reals.

    python -m bench.selfblend_transfer --data ../shared/data/dfdc64 --split test \
        --model baseline=checkpoints/baseline-efficientnet_lite0-dfdc64 \
        --model reals-only=bench/runs/dfdc64/efficientnet_lite0/selfblend/reals-only-all \
        --json bench/results/selfblend/transfer_dfdc64_test.json

A detector of self-blends that scores well on column (2) and near chance on (1) has learnt the blend well and
found little of it in the real fakes; a detector of real fakes near chance on (2) says the same from the other
side. The self-blends are made with the run's own SelfBlendConfig (its training.json) where it has one, else the
defaults, under a fixed seed, so every model meets the same pseudo-fakes when the configs agree.
"""
import argparse
import json
from pathlib import Path

from fdftnet.checkpoint import load_model
from fdftnet.data import ImageSet, SelfBlendConfig, load_image_folder, pseudo_fake_set
from fdftnet.inference import evaluate

SEED = 20_221_204  # the blends' seed: fixed, and apart from any training or validation seed


def _self_blend_config(model_dir: Path) -> SelfBlendConfig:
    f = model_dir / "training.json"
    tc = json.loads(f.read_text()).get("train_config", {}) if f.exists() else {}
    return SelfBlendConfig.from_dict(tc.get("self_blend") or {})


def transfer(models: dict[str, str], data: ImageSet, seed: int = SEED) -> dict:
    """{name: {"real_fakes": metrics, "self_blends": metrics, "self_blend_config": dict}} for each checkpoint."""
    out = {}
    for name, path in models.items():
        model = load_model(path)
        cfg = _self_blend_config(Path(path))
        out[name] = {"model": str(path), "self_blend_config": cfg.to_dict(),
                     "real_fakes": _brief(evaluate(model, data)),
                     # pseudo_fake_set takes the split's reals (its fakes are left out) and one blend of each
                     "self_blends": _brief(evaluate(model, pseudo_fake_set(data, cfg, seed=seed)))}
    return out


def _brief(m: dict) -> dict:
    return {k: m[k] for k in ("n", "n_real", "n_fake", "auroc", "ap", "acc", "acc_best") if k in m}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="an image folder with SPLIT/real and SPLIT/fake")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=DIR", help="a checkpoint (repeatable)")
    ap.add_argument("--limit", type=int, help="at most this many images of the split (a quick look)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    models = {}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error(f"--model takes NAME=DIR, got {spec!r}")
        models[name] = path
    data = load_image_folder(args.data, args.split, limit=args.limit)
    res = {"data": args.data, "split": args.split, "seed": SEED, "models": transfer(models, data)}
    for name, r in res["models"].items():
        print(f"{name:>16}: AUROC real fakes {r['real_fakes']['auroc']:.4f}   self-blends {r['self_blends']['auroc']:.4f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
