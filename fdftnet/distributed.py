"""torch.distributed helpers: one process or many (torchrun), the same training code.

    torchrun --standalone --nproc-per-node 2 -m fdftnet pretrain --data ROOT --backbone squeezenet --out runs/sq

`setup()` joins the process group torchrun describes in the environment (nccl on GPU, gloo on CPU);
everything else degrades to the single-process case when no group exists.
"""
import os

import torch
import torch.distributed as dist

__all__ = ["setup", "cleanup", "rank", "world_size", "is_main", "barrier", "all_reduce_sum", "all_gather_objects"]


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
        dist.init_process_group(backend=backend)
    elif world > 1 and device.startswith("cuda"):
        device = f"cuda:{local_rank}"
    return device


def cleanup() -> None:
    """Leave the process group; a barrier first, because gloo can abort when the group dies mid-collective."""
    if dist.is_initialized():
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
