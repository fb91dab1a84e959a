"""The faces a run with `--extra-train ROOT:SPLIT --extra-holdout N` held out of that set, as image folders.

fdftnet.train.load_data moves N images a class of each extra training set to validation (drawn with the run's seed
and the set's group number). `fdftnet calibrate` fits on validation data and measures its OOD distance to training
faces, so it needs the same two parts as folders: OUT/validation (the held-out faces) and OUT/train (the rest),
both symlinks to the built images.

    python -m bench.extra_holdout --set /work/data/gan-faces-128:finetune --holdout 100 --out /work/data/gan-faces-128-holdout
"""
import argparse
import os
from pathlib import Path

from fdftnet.data import load_image_folder
from fdftnet.train import _split_holdout


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", required=True, metavar="ROOT:SPLIT", help="the --extra-train set of the run")
    ap.add_argument("--holdout", type=int, required=True, help="the run's --extra-holdout")
    ap.add_argument("--seed", type=int, default=0, help="the run's --seed")
    ap.add_argument("--group", type=int, default=1, help="the set's place among the run's --extra-train sets (1: first)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    root, split = args.set.rsplit(":", 1)
    data = load_image_folder(root, split, size=64)  # only the paths and labels matter
    rest, held = _split_holdout(data, args.holdout, args.seed + args.group)
    for part, name in ((held, "validation"), (rest, "train")):
        for path, y in zip(part.paths, part.labels.tolist()):
            folder = Path(args.out) / name / ("fake" if y else "real")
            folder.mkdir(parents=True, exist_ok=True)
            dst = folder / Path(path).name
            if not dst.exists():
                os.symlink(Path(path).resolve(), dst)
        print(f"{name}: {len(part)} faces in {Path(args.out) / name}")


if __name__ == "__main__":
    main()
