"""torch.distributed helpers: one process or many (torchrun), the same training code.

    torchrun --standalone --nproc-per-node 2 -m fdftnet pretrain --data ROOT --backbone squeezenet --out runs/sq

`setup()` joins the process group torchrun describes in the environment (nccl on GPU, gloo on CPU);
everything else degrades to the single-process case when no group exists.

Failure in one rank: the CLI's `cleanup()` skips its barrier while an exception is in flight, so the
failing rank exits at once (status 2, one line on stderr); torchrun then stops the other ranks, which
would otherwise wait in their next collective. Without torchrun, a collective waits at most
FDFTNET_DIST_TIMEOUT seconds (default: torch's, 10 min for nccl, 30 min for gloo).

FDFTNET_DEBUG_SAMPLES=DIR (tests, debugging): `SampleLog` writes what each rank trained on to
DIR/rank{R}.json: per epoch, a short hash of every image as the model received it (uint8 pixels, so
equal to a hash of the stored image when augmentation is off) and the number of batches.
"""
import hashlib
import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["setup", "cleanup", "rank", "world_size", "is_main", "barrier", "all_reduce_sum", "all_gather_objects",
           "SampleLog", "image_hash"]


def setup(device: str | None = None) -> str:
    """Join the torchrun process group if WORLD_SIZE > 1; returns the device this rank should use."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(local_rank)
            device = f"cuda:{local_rank}"
        timeout = os.environ.get("FDFTNET_DIST_TIMEOUT")
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=float(timeout)) if timeout else None)
    elif world > 1 and device.startswith("cuda"):
        device = f"cuda:{local_rank}"
    return device


def cleanup(failed: bool | None = None) -> None:
    """Leave the process group; a barrier first, because gloo can abort when the group dies mid-collective.

    failed: skip the barrier (the other ranks are not coming: they are in another collective, or dead).
    None = failed when called while an exception propagates (e.g. from a `finally:` block).
    """
    if not dist.is_initialized():
        return
    if failed is None:
        failed = sys.exc_info()[0] is not None
    if failed:
        # no destroy either: with a peer stuck mid-collective it can block; exiting frees the group,
        # and torchrun stops the other ranks once this one has exited non-zero
        return
    dist.barrier()
    dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], device: str = "cpu") -> list[float]:
    """Element-wise sum of a list of floats over all ranks."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_objects(obj) -> list:
    """Every rank's `obj`, in rank order."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def image_hash(x) -> str:
    """Short hash of one image (3, H, W): uint8 as is, float in [0, 1] scaled back to uint8."""
    x = x.detach().cpu()
    if x.is_floating_point():
        x = (x.float() * 255).round().clamp(0, 255).to(torch.uint8)
    return hashlib.sha1(x.contiguous().numpy().tobytes()).hexdigest()[:16]


class SampleLog:
    """With FDFTNET_DEBUG_SAMPLES=DIR, record this rank's training images per epoch in DIR/rank{R}.json.

    A no-op (one dict lookup) when the variable is unset. JSON: {"rank", "world_size",
    "epochs": {"0": [hash, ...], ...}, "batches": {"0": n, ...}}; rewritten after each epoch.
    """

    def __init__(self):
        self.dir = os.environ.get("FDFTNET_DEBUG_SAMPLES")
        self.epochs: dict[str, list[str]] = {}
        self.batches: dict[str, int] = {}

    def add(self, epoch: int, x) -> None:
        if self.dir:
            self.epochs.setdefault(str(epoch), []).extend(image_hash(img) for img in x)
            self.batches[str(epoch)] = self.batches.get(str(epoch), 0) + 1

    def write(self) -> None:
        if self.dir:
            os.makedirs(self.dir, exist_ok=True)
            path = os.path.join(self.dir, f"rank{rank()}.json")
            with open(path + ".tmp", "w") as f:
                json.dump({"rank": rank(), "world_size": world_size(), "epochs": self.epochs,
                           "batches": self.batches}, f)
            os.replace(path + ".tmp", path)
