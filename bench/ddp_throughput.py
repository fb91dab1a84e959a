"""Training throughput (images/s) on synthetic 64x64 batches: 1 process, and N processes with DDP via torchrun.

    python -m bench.ddp_throughput --backbone xception --batch-size 128 --nproc 1 --save          # 1 GPU
    python -m bench.ddp_throughput --backbone xception --nproc 1 2 4 8 --save                     # 8-GPU box
    python -m bench.ddp_throughput --backbone squeezenet --batch-size 16 --steps 5 --nproc 1 2    # CPU smoke

Each step is what `fdftnet.train.fit` does: a uint8 batch copied from (pinned) host memory, scaled to
[0, 1], forward under bf16 autocast on GPU (`--no-amp` for fp32), cross-entropy, backward (DDP all-reduces
the gradients when N > 1), Adam step. `--model fdftnet` times FDFtNet (frozen backbone, as fine-tuning)
instead of the baseline backbone. The batch size is per process, so N processes train N x batch images
per step. After `--warmup` steps, `--steps` steps are timed on every rank; the slowest rank's time counts.
Backend: nccl on GPU, gloo on CPU (`fdftnet.distributed.setup`). Prints one JSON object;
`--save` also writes it to bench/results/ddp_<device>_<model>_<backbone>.json (device: "cpu" or the GPU name,
slugged), one file per model, so that runs of several models on one machine are all kept.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="squeezenet")
    p.add_argument("--model", choices=["baseline", "fdftnet"], default="baseline")
    p.add_argument("--batch-size", type=int, default=128, help="per process")
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on GPU (default: bf16 autocast)")
    p.add_argument("--nproc", type=int, nargs="+", default=[1], help="process counts to time (N > 1: torchrun)")
    p.add_argument("--threads", type=int, help="CPU: torch threads per process (default: cores / N)")
    p.add_argument("--save", action="store_true", help="write bench/results/ddp_<device>_<model>_<backbone>.json")
    p.add_argument("--timeout", type=float, default=600, help="seconds per torchrun launch")
    p.add_argument("--worker", metavar="JSON_OUT", help=argparse.SUPPRESS)  # internal: one (torchrun) process
    return p


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def _build(args):
    from fdftnet.models import BaselineDetector, FDFtNet
    if args.model == "fdftnet":
        return FDFtNet(backbone=args.backbone, freeze_backbone=True)
    return BaselineDetector(backbone=args.backbone)


def worker(args) -> dict:
    """One process (rank) of the measurement; rank 0 returns (and writes) the result."""
    import torch
    import torch.nn as nn

    from fdftnet import distributed as dist
    from fdftnet.train import forward_loss
    device = dist.setup(args.device)
    world, rank = dist.world_size(), dist.rank()
    cuda = device.startswith("cuda")
    if not cuda:  # N processes share the cores; more threads than cores makes every process crawl
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world))
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model = _build(args).to(device).train()
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[torch.device(device).index] if cuda else None)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(rank)
    pool = [(torch.randint(0, 256, (args.batch_size, 3, 64, 64), dtype=torch.uint8, generator=g),
             torch.randint(0, 2, (args.batch_size,), generator=g)) for _ in range(4)]
    if cuda:
        pool = [(x.pin_memory(), y.pin_memory()) for x, y in pool]
    use_amp = args.amp and cuda

    def step(i: int) -> None:
        x, y = pool[i % len(pool)]
        x = x.to(device, non_blocking=cuda).float().div_(255)
        y = y.to(device, non_blocking=cuda)
        _, loss = forward_loss(net, x, y, use_amp)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()
        dist.barrier()

    try:
        for i in range(args.warmup):
            step(i)
        sync()
        t0 = time.perf_counter()
        for i in range(args.steps):
            step(i)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        slowest = max(dist.all_gather_objects(seconds))
        images = args.steps * args.batch_size * world
        result = {
            "nproc": world,
            "images_per_s": images / slowest,
            "images_per_s_per_process": images / slowest / world,
            "step_ms": 1000 * slowest / args.steps,
            "global_batch": args.batch_size * world,
            "threads_per_process": torch.get_num_threads(),
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None,
        }
        if rank == 0 and args.worker:
            Path(args.worker).write_text(json.dumps(result))
        dist.cleanup(failed=False)
        return result
    finally:
        dist.cleanup()  # a no-op after the clean exit above; skips the barrier on error


def _device_info(device: str) -> dict:
    import torch
    if device in ("auto", None):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        return {"device": "cuda", "device_name": name, "gpus_visible": torch.cuda.device_count(), "slug": _slug(name)}
    return {"device": "cpu", "device_name": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "slug": "cpu"}


def _launch(args, nproc: int) -> dict:
    """torchrun --standalone --nproc-per-node N -m bench.ddp_throughput --worker FILE ..."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "bench.ddp_throughput", "--worker", str(out), "--backbone", args.backbone, "--model", args.model,
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--device", args.device] + ([] if args.amp else ["--no-amp"]) + \
              ([f"--threads={args.threads}"] if args.threads else [])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=args.timeout, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise SystemExit(f"ddp_throughput: {nproc} processes failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:  # one process of a torchrun launch
        worker(args)
        return 0
    import torch
    info = _device_info(args.device)
    if info["device"] == "cuda" and max(args.nproc) > info["gpus_visible"]:
        raise SystemExit(f"ddp_throughput: {max(args.nproc)} processes need as many GPUs; "
                         f"{info['gpus_visible']} visible")
    runs = []
    for n in args.nproc:
        runs.append(worker(args) if n == 1 else _launch(args, n))
        print(f"{n} process(es): {runs[-1]['images_per_s']:.1f} images/s", file=sys.stderr, flush=True)
    base = next((r["images_per_s"] for r in runs if r["nproc"] == 1), None)
    for r in runs:
        r["scaling_vs_1"] = r["images_per_s"] / base if base else None
    result = {"benchmark": "ddp_throughput", "model": args.model, "backbone": args.backbone,
              "batch_size_per_process": args.batch_size, "steps": args.steps, "warmup": args.warmup,
              "amp_bf16": bool(args.amp and info["device"] == "cuda"),
              "backend": "nccl" if info["device"] == "cuda" else "gloo",
              **{k: v for k, v in info.items() if k != "slug"},
              "torch": torch.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": runs}
    text = json.dumps(result, indent=2)
    print(text)
    if args.save:
        out = ROOT / "bench" / "results" / f"ddp_{info['slug']}_{args.model}_{args.backbone}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
