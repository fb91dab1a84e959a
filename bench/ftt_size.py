"""Where FDFtNet's FTT reads a native crop (issue #30): CPU time of the FTT reading the 128-px crop as is, or
resized to 64 px (`ftt_size`), for inference and for a training step.

FDFtNet on EfficientNet-Lite0 at a 128-px crop (the native default's shape; random weights: time does not depend
on them), on one thread, so a busy machine inflates the figures little: process CPU time, median of --runs runs
after 2 warm-ups.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.ftt_size
Writes bench/results/ftt_size.json.
"""
import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fdftnet.models import BaselineDetector, FDFtNet

OUT = Path(__file__).resolve().parent / "results" / "ftt_size.json"


def cpu_ms(fn, runs: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(runs):
        t = time.process_time()
        fn()
        times.append(1000 * (time.process_time() - t))
    return sorted(times)[len(times) // 2]


def measure(ftt_size, crop: int, runs: int, batch: int) -> dict:
    base = BaselineDetector(backbone="efficientnet_lite0", input_size=crop, crop_size=crop)
    model = FDFtNet.from_baseline(base, ftt_size=ftt_size, freeze_backbone=False)
    x = torch.rand(batch, 3, crop, crop)
    y = torch.randint(0, 2, (batch,))
    model.eval()

    def infer():
        with torch.inference_mode():
            model(x)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        model.eval()

    return {"ftt_size": model.config.get("ftt_size") or crop, "inference_ms_per_face": cpu_ms(infer, runs) / batch,
            "train_ms_per_image": cpu_ms(step, runs) / batch}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = [measure(size, args.crop, args.runs, args.batch) for size in (args.crop, 64)]
    for r in rows:
        print(f"FTT at {r['ftt_size']} px: {r['inference_ms_per_face']:.1f} CPU-ms a face, "
              f"{r['train_ms_per_image']:.1f} CPU-ms a training image", flush=True)
    res = {"crop": args.crop, "batch": args.batch, "runs": args.runs, "rows": rows, "threads": 1,
           "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
           "command": "OMP_NUM_THREADS=1 python -m bench.ftt_size"}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
