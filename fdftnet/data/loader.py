"""In-memory labelled image sets, few-shot subsets, and fast batching with augmentation.

An ImageSet holds every decoded image as one uint8 tensor (N, 3, 64, 64): 8,000 faces take 98 MB,
so an epoch costs no decoding. `Batches` shuffles it and augments each batch as a tensor on the
target device (see `augment.py`); one epoch over 2,000 images takes well under a second on CPU.
Labels follow the paper: REAL = 0, FAKE = 1.

    idx = sample_shots(train.labels, shots=100, seed=0)          # 100 real + 100 fake
    loader = Batches(train.subset(idx), 32, shuffle=True, augment=AugmentConfig(), cutout=True)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader: ...                                  # (B, 3, 64, 64) float, (B,) int64
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from .augment import AugmentConfig, augment_batch
from .images import DataError

__all__ = [
    "REAL", "FAKE", "CLASS_NAMES", "ImageSet", "sample_shots", "seeded_subset", "Batches",
]

REAL, FAKE = 0, 1
CLASS_NAMES = ("real", "fake")  # index = label


@dataclass
class ImageSet:
    """An in-memory labelled image set."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64, REAL=0 / FAKE=1
    paths: list[str]  # (N,) file path or dataset row id, for error reports and predictions
    skipped: list[str] = field(default_factory=list)  # unreadable files left out (on_error="skip")
    groups: torch.Tensor | None = None  # (N,) int64 source of each image (0: main set, i: extra set i); None: all 0

    def __post_init__(self):
        n = len(self.paths)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[0] != n:
            raise ValueError(f"images must be uint8 (N={n}, 3, H, W), got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(self.labels.shape)}")
        self.labels = self.labels.long()
        if self.groups is not None and self.groups.shape != (n,):
            raise ValueError(f"groups must have shape ({n},), got {tuple(self.groups.shape)}")

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> "ImageSet":
        """A new ImageSet with the rows `indices` (tensor data is copied)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long).reshape(-1)
        return ImageSet(self.images[idx], self.labels[idx], [self.paths[i] for i in idx.tolist()],
                        list(self.skipped), None if self.groups is None else self.groups[idx])

    def with_groups(self, group: int) -> "ImageSet":
        """The same images, every one in source `group` (for balanced epochs over several sources)."""
        return ImageSet(self.images, self.labels, self.paths, self.skipped, torch.full((len(self),), group))

    def group_ids(self) -> torch.Tensor:
        """(N,) int64 source of each image; all 0 when the set has one source."""
        return self.groups if self.groups is not None else torch.zeros(len(self), dtype=torch.long)

    @staticmethod
    def concat(sets: Sequence["ImageSet"]) -> "ImageSet":
        """One ImageSet of several of the same image size, in order; their groups kept (0 where unset)."""
        shapes = {tuple(s.images.shape[1:]) for s in sets}
        if len(shapes) > 1:
            raise DataError(f"cannot join image sets of different sizes: {sorted(shapes)}")
        return ImageSet(torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets]),
                        [p for s in sets for p in s.paths], [p for s in sets for p in s.skipped],
                        torch.cat([s.group_ids() for s in sets]))

    def counts(self) -> dict[str, int]:
        """Images per class name, e.g. {"real": 1000, "fake": 1000}."""
        bins = torch.bincount(self.labels, minlength=len(CLASS_NAMES)).tolist()
        return {name: int(bins[i]) for i, name in enumerate(CLASS_NAMES)}


def seeded_subset(n: int, limit: int | None, seed: int = 0) -> list[int]:
    """`limit` of range(n) drawn without replacement with `seed`, ascending (all if None)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=limit, replace=False).tolist())


def make_imageset(arrays: np.ndarray, labels: Sequence[int], paths: list[str],
                  skipped: list[str], where: str, require_fake: bool = True) -> ImageSet:
    """Wrap decoded arrays; a class left empty (everything skipped) is a DataError, except the fake
    class when require_fake is False (a reals-only split)."""
    labels_t = torch.as_tensor(list(labels), dtype=torch.long)
    imgs = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) -> (N, 3, H, W)
    data = ImageSet(imgs, labels_t, paths, skipped)
    empty = [name for name, n in data.counts().items() if n == 0 and (require_fake or name != "fake")]
    if empty:
        note = f" ({len(skipped)} unreadable skipped)" if skipped else ""
        raise DataError(f"no {' or '.join(empty)} images in {where}{note}")
    return data


def sample_shots(labels: torch.Tensor, shots: int | None, seed: int) -> torch.Tensor:
    """`shots` indices per class (REAL and FAKE) drawn with torch.Generator(seed), ascending.

    shots=None returns every index. Fewer than `shots` images in a class is a DataError.
    """
    labels = torch.as_tensor(labels).reshape(-1)
    if shots is None:
        return torch.arange(len(labels))
    if shots < 1:
        raise ValueError(f"shots must be >= 1 or None, got {shots}")
    g = torch.Generator().manual_seed(seed)
    picked = []
    for label, name in enumerate(CLASS_NAMES):
        idx = torch.nonzero(labels == label).flatten()  # (n_c,)
        if len(idx) < shots:
            raise DataError(f"asked for {shots} shots per class but {name} has only {len(idx)}")
        picked.append(idx[torch.randperm(len(idx), generator=g)[:shots]])
    return torch.cat(picked).sort().values


# ----------------------------------------------------------------------------------------------
# batching


def balanced_indices(labels: torch.Tensor, groups: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per group, every image of its smaller class and as many of its larger class drawn without replacement;
    ascending. A group with one class only is kept whole."""
    picked = []
    for grp in torch.unique(groups).tolist():
        real = torch.nonzero((groups == grp) & (labels == REAL)).flatten()
        fake = torch.nonzero((groups == grp) & (labels == FAKE)).flatten()
        n = min(len(real), len(fake)) or max(len(real), len(fake))
        for idx in (real, fake):
            picked.append(idx if len(idx) <= n else idx[torch.randperm(len(idx), generator=generator)[:n]])
    return torch.cat(picked).sort().values


def balanced_len(labels: torch.Tensor, groups: torch.Tensor) -> int:
    """len(balanced_indices(labels, groups, ...)): the same every epoch."""
    n = 0
    for grp in torch.unique(groups).tolist():
        r = int(((groups == grp) & (labels == REAL)).sum())
        f = int(((groups == grp) & (labels == FAKE)).sum())
        n += 2 * min(r, f) if min(r, f) else max(r, f)
    return n


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for (seed, epoch). Not seed + epoch: that would make run seed=1 epoch 0
    replay run seed=0 epoch 1, correlating the few-shot repeats we average over."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint64)[0] >> 1)


class Batches:
    """Shuffled, augmented mini-batches over an ImageSet, reproducible per (seed, epoch).

    Yields (x float32 (B, 3, H, W) in [0, 1] on `device`, y int64 (B,) on `device`). Each epoch
    draws its order and augmentation from a generator seeded by (seed, epoch). `set_epoch(e)`
    picks the epoch (like DistributedSampler); without it, each new iteration advances by one.
    The uint8 batch is moved first (4x fewer bytes than float) and augmented on the device.
    balance=True: each epoch runs over `balanced_indices` of the set (per source group, the larger class
    subsampled afresh to the smaller one's count) instead of all of it.
    """

    def __init__(
            self,
            data: "ImageSet",
            batch_size: int,
            shuffle: bool = True,
            augment: AugmentConfig | None = None,
            cutout: bool = False,
            seed: int = 0,
            device: str | torch.device = "cpu",
            drop_last: bool = False,
            rank: int = 0,
            world_size: int = 1,
            balance: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if cutout and augment is None:  # α/β live in AugmentConfig (zero the rest: Cutout only)
            raise ValueError("cutout=True needs an AugmentConfig (it holds cutout_holes/scale)")
        self.data, self.batch_size, self.shuffle = data, batch_size, shuffle
        self.augment, self.cutout, self.seed = augment, cutout, seed
        self.device, self.drop_last = torch.device(device), drop_last
        self.rank, self.world_size = rank, world_size  # DDP: this process's shard of every epoch
        self.balance = balance
        self.epoch_len = balanced_len(data.labels, data.group_ids()) if balance else len(data)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use `epoch`'s order and augmentation for the next iteration."""
        self.epoch = epoch

    def _shard_len(self) -> int:
        return self.epoch_len // self.world_size if self.world_size > 1 else self.epoch_len

    def __len__(self) -> int:
        n = self._shard_len()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        if self.balance:  # this epoch's images, drawn from their own generator: the order's draws stay as they were
            keep = balanced_indices(self.data.labels, self.data.group_ids(),
                                    torch.Generator().manual_seed(epoch_seed(self.seed + 1, self.epoch)))
        else:
            keep = torch.arange(len(self.data))
        n = len(keep)
        order = keep[torch.randperm(n, generator=g)] if self.shuffle else keep
        if self.world_size > 1:
            # DistributedSampler semantics: every rank gets an equal shard, rank r takes every world-th
            # sample of the shared order; augmentation then draws from a rank-specific generator
            order = order[: self._shard_len() * self.world_size][self.rank::self.world_size]
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch) + 1_000_003 * self.rank)
        self.epoch += 1
        cuda = self.device.type == "cuda"
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]  # (B,)
            x, y = self.data.images[idx], self.data.labels[idx]  # (B, 3, H, W) uint8, (B,)
            if cuda:  # pinned host memory lets the copy overlap with compute
                x, y = x.pin_memory(), y.pin_memory()
            x = x.to(self.device, non_blocking=cuda)
            y = y.to(self.device, non_blocking=cuda)
            yield augment_batch(x, self.augment, g, cutout=self.cutout), y
