"""A streamed Hugging Face training split: images decoded on the fly, sharded per DDP rank.

For a training set larger than the disk (or the RAM): rows are read with `datasets` streaming,
shuffled per epoch (seeded shard order + shuffle buffer, the same on every rank), split between
ranks with `split_dataset_by_node`, decoded safely (`images.load_image`) in a background thread,
batched, and augmented on the device like `Batches`.

    train = StreamBatches("user/faces", "train", limit=None)           # or a local imagefolder ROOT
    batches = train.configure(batch_size=128, device="cuda", rank=r, world_size=w)
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        for x, y in batches: ...          # (B, 3, 64, 64) float32 in [0, 1], (B,) int64 (REAL=0/FAKE=1)

The number of batches is not known in advance (no `__len__`). Under DDP every rank must run the same
number of steps, so when a process group is up each step all-reduces a "have a batch" flag (MIN):
the epoch ends for all ranks when any rank's shard runs out. The few images a longer shard still
holds then are left out of that epoch (with the shuffle, different ones each epoch). Shards are
balanced when the dataset's file count is a multiple of the world size, or when it is not (datasets
then gives each rank every world-th row).

`limit` keeps at most `limit` images per class per rank, the first met in each epoch's shuffled order
(a fresh sample each epoch, not the fixed seeded subset of `load_hf_dataset`).
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Any, Iterator

import numpy as np
import torch

from .augment import AugmentConfig, augment_batch
from .folders import _label_mapper, _open_hf, _prepare, _source
from .images import DataError, load_image
from .loader import epoch_seed

__all__ = ["StreamBatches"]


class StreamBatches:
    """Shuffled, augmented mini-batches streamed from a Hugging Face dataset split (one DDP shard).

    Args:
        name_or_dir, split, image_column, label_column, real_label, fake_label, limit, size,
            cache_dir, on_error: as in `load_hf_dataset` (limit: see the module docstring).
        shuffle: shuffle each epoch (shard order and a `buffer_size`-row buffer, seeded by
            (seed, epoch)); False streams rows in the dataset's order.
        prefetch: decoded batches kept ready by a background thread (0: decode in the caller).
    Call `configure(...)` (fit() does) for the batch size, augmentation, seed, device and shard.
    """

    def __init__(self, name_or_dir: str | os.PathLike, split: str, image_column: str = "image",
                 label_column: str = "label", real_label: Any = "real", fake_label: Any = "fake",
                 limit: int | None = None, size: int = 64, cache_dir: str | None = None,
                 on_error: str = "raise", shuffle: bool = True, buffer_size: int = 1000,
                 prefetch: int = 2):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        if buffer_size < 1 or prefetch < 0:
            raise ValueError(f"need buffer_size >= 1 and prefetch >= 0, got {buffer_size}, {prefetch}")
        self.name, self.split = os.fspath(name_or_dir), split
        self.image_column, self.label_column = image_column, label_column
        self.real_label, self.fake_label = real_label, fake_label
        self.limit, self.size, self.cache_dir, self.on_error = limit, size, cache_dir, on_error
        self.shuffle, self.buffer_size, self.prefetch = shuffle, buffer_size, prefetch
        self.where = f"{self.name} [{split}]"
        self._open()  # fail now, on every rank alike, for a missing dataset, split or column
        self.configure(batch_size=128)
        self.epoch = 0
        self.skipped: list[str] = []  # unreadable images left out (on_error="skip")

    def configure(self, batch_size: int, augment: AugmentConfig | None = None, cutout: bool = False,
                  seed: int = 0, device: str | torch.device = "cpu", rank: int = 0,
                  world_size: int = 1) -> "StreamBatches":
        """Set batching, augmentation (as `Batches`), seed and this process's shard; returns self."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if cutout and augment is None:
            raise ValueError("cutout=True needs an AugmentConfig (it holds cutout_holes/scale)")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank} of {world_size}")
        self.batch_size, self.augment, self.cutout, self.seed = batch_size, augment, cutout, seed
        self.device, self.rank, self.world_size = torch.device(device), rank, world_size
        return self

    def set_epoch(self, epoch: int) -> None:
        """Use `epoch`'s order and augmentation for the next iteration (like DistributedSampler)."""
        self.epoch = epoch

    # ------------------------------------------------------------------ rows

    def _open(self):
        return _prepare(_open_hf(self.name, self.split, True, self.cache_dir), self.image_column,
                        self.label_column, self.where)

    def samples(self, epoch: int = 0) -> Iterator[tuple[np.ndarray, int]]:
        """This rank's (image (size, size, 3) uint8, label) pairs of `epoch`, in order."""
        from datasets.distributed import split_dataset_by_node

        ds, names = self._open()
        if self.shuffle:  # the same seed on every rank: shards are permuted alike, then split
            ds = ds.shuffle(seed=self.seed, buffer_size=self.buffer_size)
            ds.set_epoch(epoch)
        if self.world_size > 1:
            ds = split_dataset_by_node(ds, rank=self.rank, world_size=self.world_size)
        to_label = _label_mapper(names, self.real_label, self.fake_label, self.where)
        taken = [0, 0]
        for i, row in enumerate(ds):
            label = to_label(row[self.label_column])
            if self.limit is not None and taken[label] >= self.limit:
                if min(taken) >= self.limit:
                    return
                continue
            src, name = _source(row[self.image_column], f"{self.where} rank {self.rank} row {i}")
            try:
                arr = load_image(src, size=self.size, name=name)
            except DataError:
                if self.on_error == "raise":
                    raise
                self.skipped.append(name)
                continue
            taken[label] += 1
            yield arr, label

    def _cpu_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 (B, 3, H, W) and int64 (B,) CPU batches; the last one may be short."""
        xs, ys = [], []
        for arr, label in self.samples(epoch):
            xs.append(arr)
            ys.append(label)
            if len(xs) == self.batch_size:
                yield _to_batch(xs, ys)
                xs, ys = [], []
        if xs:
            yield _to_batch(xs, ys)

    # ------------------------------------------------------------------ batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch.distributed as tdist

        epoch = self.epoch
        self.epoch += 1
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch) + 1_000_003 * self.rank)
        sync = self.world_size > 1 and tdist.is_available() and tdist.is_initialized()
        cuda = self.device.type == "cuda"
        source = _prefetched(lambda: self._cpu_batches(epoch), self.prefetch)
        try:
            for step in range(1 << 62):
                batch = next(source, None)
                if sync:  # every rank takes the same number of steps: stop when any shard is done
                    have = torch.tensor([int(batch is not None)], device=self.device)
                    tdist.all_reduce(have, op=tdist.ReduceOp.MIN)
                    go = bool(have.item())
                else:
                    go = batch is not None
                if not go:
                    if step == 0:
                        raise DataError(f"{self.where}: no training images for rank {self.rank} of "
                                        f"{self.world_size} in epoch {epoch + 1} (is the split empty, "
                                        f"or smaller than the number of processes?)")
                    return
                x, y = batch
                if cuda:
                    x, y = x.pin_memory(), y.pin_memory()
                x = x.to(self.device, non_blocking=cuda)
                y = y.to(self.device, non_blocking=cuda)
                yield augment_batch(x, self.augment, g, cutout=self.cutout), y
        finally:
            source.close()


def _to_batch(xs: list[np.ndarray], ys: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()  # (B, H, W, 3) -> (B, 3, H, W)
    return x, torch.tensor(ys, dtype=torch.long)


def _prefetched(make, depth: int) -> Iterator:
    """Iterate make() in a daemon thread, `depth` items ahead; its errors re-raise here."""
    if depth <= 0:
        yield from make()
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def work():
        it = None
        try:
            it = make()
            for item in it:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(("error", e))
        finally:
            if it is not None:
                it.close()

    thread = threading.Thread(target=work, name="fdftnet-stream", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)
