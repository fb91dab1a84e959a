"""Labelled image sets: ROOT/SPLIT/{real,fake} folders or Hugging Face datasets, decoded once.

Every image is decoded (safely, see `images.load_image`) into one uint8 tensor (N, 3, 64, 64)
kept in memory: 8,000 faces take 98 MB, and an epoch then costs no decoding at all.
Labels follow the paper's convention REAL = 0, FAKE = 1, mapped by *name*, never by index.

    train = load_image_folder("data/pggan", "finetune", limit=1000)   # 1,000 real + 1,000 fake
    test = load_hf_dataset("data/pggan", "test")                      # same tree via `datasets`
    idx = sample_shots(train.labels, shots=100, seed=0)               # 100 per class
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import numpy as np

from .images import IMAGE_EXTENSIONS, DataError, decode_all, load_image
from .loader import CLASS_NAMES, FAKE, REAL, ImageSet, make_imageset, seeded_subset

__all__ = [
    "list_image_folder", "load_image_folder", "load_hf_dataset", "iter_hf_dataset", "split_dir",
]

# ----------------------------------------------------------------------------------------------
# ROOT/SPLIT/{real,fake}


def _subdirs(path: str) -> list[str]:
    """Visible subfolder names of `path`, sorted."""
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def split_dir(root: str | os.PathLike, split: str) -> str:
    """ROOT/SPLIT, or a DataError that lists the splits that do exist."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DataError(f"no dataset folder {root}")
    path = os.path.join(root, split)
    if not os.path.isdir(path):
        found = ", ".join(_subdirs(root)) or "(none)"
        raise DataError(f"no folder {path}; found splits: {found}")
    return path


def _image_files(folder: str) -> list[str]:
    """Image files under `folder`, sorted (recursive, extensions case-insensitive, no dotfiles)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out += [os.path.join(dirpath, f) for f in filenames
                # "._x.png" are macOS resource forks, not images
                if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(out)


def list_image_folder(root: str | os.PathLike, split: str, limit: int | None = None,
                      seed: int = 0, require_fake: bool = True) -> list[tuple[str, int]]:
    """(path, label) pairs for ROOT/SPLIT/real (label 0) then ROOT/SPLIT/fake (label 1).

    Args:
        root, split: the dataset folder and split name (e.g. "train", "finetune", "test").
        limit: at most this many images PER CLASS. They are a seeded random sample (seed 0 by
            default) of the sorted file list, not its first `limit` files: files are usually named
            by video, so a prefix would hold only a few videos. Same files on every call.
        require_fake: False lets fake/ be absent or empty (a reals-only split, for self-blended
            pseudo-fakes); real/ is always required.
    Class folders are matched case-insensitively and searched recursively.
    """
    base = split_dir(root, split)
    found = {d.lower(): d for d in reversed(_subdirs(base))}  # exact lower-case name wins
    needed = CLASS_NAMES if require_fake else CLASS_NAMES[:1]
    missing = [c for c in needed if c not in found]
    if missing:
        raise DataError(f"expects {base}/real and {base}/fake; missing {', '.join(missing)} "
                        f"(found: {', '.join(_subdirs(base)) or 'nothing'})")
    pairs = []
    for label, cls in enumerate(CLASS_NAMES):
        if cls not in found:
            continue
        folder = os.path.join(base, found[cls])
        files = _image_files(folder)
        if not files and cls not in needed:
            continue
        if not files:
            raise DataError(f"no images in {folder} (extensions: {' '.join(IMAGE_EXTENSIONS)})")
        pairs += [(files[i], label) for i in seeded_subset(len(files), limit, seed)]
    return pairs


def load_image_folder(root: str | os.PathLike, split: str, limit: int | None = None,
                      size: int = 64, on_error: str = "raise", seed: int = 0,
                      require_fake: bool = True) -> ImageSet:
    """Decode ROOT/SPLIT/{real,fake} into an ImageSet (see `list_image_folder` for `limit`).

    Args:
        on_error: "raise" -> the first unreadable file raises DataError naming it;
            "skip" -> it is left out and listed in `ImageSet.skipped`.
    """
    pairs = list_image_folder(root, split, limit=limit, seed=seed, require_fake=require_fake)
    paths = [p for p, _ in pairs]
    arrays, kept, skipped = decode_all(paths, paths, size=size, on_error=on_error)
    return make_imageset(arrays, [pairs[i][1] for i in kept], [paths[i] for i in kept], skipped,
                         os.path.join(os.fspath(root), split), require_fake=require_fake)


# ----------------------------------------------------------------------------------------------
# Hugging Face datasets (imported lazily: `import datasets` costs about a second)


def _open_hf(name_or_dir, split: str, streaming: bool, cache_dir):
    """load_dataset(...) for a Hub name or a local ROOT/SPLIT/{real,fake} tree."""
    import datasets

    name = os.fspath(name_or_dir)
    try:
        if os.path.isdir(name):
            # RECIPES: imagefolder only sees train/validation/test folders unless data_files maps
            # the split explicitly; "finetune/" would otherwise be silently ignored.
            files = {split: os.path.join(split_dir(name, split), "**")}
            return datasets.load_dataset("imagefolder", data_files=files, split=split,
                                         streaming=streaming, cache_dir=cache_dir)
        return datasets.load_dataset(name, split=split, streaming=streaming, cache_dir=cache_dir)
    except (FileNotFoundError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"cannot load dataset {name} split {split}: {reason}") from None


def _prepare(ds, image_column: str, label_column: str, where: str):
    """Check columns, switch the image column to raw bytes/paths (we decode it safely ourselves)."""
    import datasets

    cols = ds.column_names  # None for some streamed datasets without metadata
    for col in (image_column, label_column):
        if cols is not None and col not in cols:
            raise DataError(f"{where} has no column {col!r}; columns: {', '.join(cols)}")
    feats = ds.features or {}
    if isinstance(feats.get(image_column), datasets.Image):
        ds = ds.cast_column(image_column, datasets.Image(decode=False))
    label_feat = feats.get(label_column)
    names = list(label_feat.names) if isinstance(label_feat, datasets.ClassLabel) else None
    return ds, names


def _label_mapper(names: list[str] | None, real_label, fake_label, where: str,
                  values: list | None = None) -> Callable[[Any], int]:
    """raw label -> REAL/FAKE, by ClassLabel name or by raw value (strings case-insensitively).

    Errors list the ClassLabel names, else the distinct `values` (all labels, when known up
    front), else the unknown values met so far.
    """
    norm = lambda v: v.lower() if isinstance(v, str) else v  # noqa: E731
    want = {norm(real_label): REAL, norm(fake_label): FAKE}
    if len(want) != 2:
        raise ValueError(f"real_label and fake_label must differ, got {real_label!r} twice")
    seen: set = set()

    def to_label(v) -> int:
        if names is not None and isinstance(v, int) and 0 <= v < len(names):
            if norm(names[v]) in want:  # ClassLabel int -> its name (imagefolder: fake=0, real=1)
                return want[norm(names[v])]
        if isinstance(v, (str, int, bool)) and norm(v) in want:
            return want[norm(v)]
        seen.add(str(v))
        found = names if names is not None else sorted(set(map(str, values or [])) or seen)
        found = ", ".join(found[:20]) + (", ..." if len(found) > 20 else "")
        raise DataError(f"{where}: label {v!r} is neither real ({real_label!r}) nor fake "
                        f"({fake_label!r}); found: {found}")

    return to_label


def _source(value, fallback: str) -> tuple[Any, str]:
    """An image cell (Image(decode=False) dict, path, bytes, PIL, array) -> (src, name)."""
    if isinstance(value, dict):
        name = value.get("path") or fallback
        if value.get("bytes"):
            return value["bytes"], name
        if value.get("path"):
            return value["path"], name
        return b"", fallback  # load_image reports it as an empty file (on_error applies)
    if isinstance(value, (str, os.PathLike)):
        return value, os.fspath(value)
    if isinstance(value, (list, np.ndarray)):
        from PIL import Image

        return Image.fromarray(np.asarray(value, dtype=np.uint8)), fallback
    return value, fallback  # bytes or PIL.Image


def load_hf_dataset(name_or_dir: str | os.PathLike, split: str, image_column: str = "image",
                    label_column: str = "label", real_label: Any = "real", fake_label: Any = "fake",
                    limit: int | None = None, size: int = 64, streaming: bool = False,
                    cache_dir: str | None = None, on_error: str = "raise", seed: int = 0,
                    require_fake: bool = True) -> ImageSet:
    """Decode a Hugging Face dataset split (Hub name or local imagefolder tree) into an ImageSet.

    Args:
        name_or_dir: a Hub dataset id, or a local ROOT holding ROOT/SPLIT/{real,fake}/ (read by
            the "imagefolder" builder, which labels each file by its parent folder's name, so
            images must sit directly in real/ and fake/, unlike `load_image_folder`).
        image_column, label_column: where the images and labels are.
        real_label, fake_label: the label values meaning real / fake: ClassLabel names (default),
            raw strings (case-insensitive) or raw ints. Other values raise DataError.
        limit: at most this many per class; a seeded sample (`seed`) without streaming, the first
            ones met when streaming.
        streaming: read row by row (`iter_hf_dataset`) instead of preparing the Arrow cache.
        on_error: "raise" or "skip" for unreadable images, as in `load_image_folder`.
        require_fake: False accepts a split with no fake rows (reals only, for pseudo-fakes).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    where = f"{os.fspath(name_or_dir)} [{split}]"
    if streaming:
        arrays, labels, paths, skipped = [], [], [], []
        for arr, label, name in _stream(name_or_dir, split, image_column, label_column,
                                        real_label, fake_label, limit, size, cache_dir, 1, 0):
            if isinstance(arr, DataError):
                if on_error == "raise":
                    raise arr
                skipped.append(name)
                continue
            arrays.append(arr), labels.append(label), paths.append(name)
        stack = np.stack(arrays) if arrays else np.empty((0, size, size, 3), np.uint8)
        return make_imageset(stack, labels, paths, skipped, where, require_fake=require_fake)
    ds, names = _prepare(_open_hf(name_or_dir, split, False, cache_dir), image_column,
                         label_column, where)
    raw = list(ds[label_column])  # reads the label column only
    to_label = _label_mapper(names, real_label, fake_label, where, raw)
    labels = [to_label(v) for v in raw]
    idx = []
    for c in (REAL, FAKE):
        members = [i for i, lab in enumerate(labels) if lab == c]
        idx += [members[j] for j in seeded_subset(len(members), limit, seed)]
    idx.sort()
    cells = ds.select(idx)[image_column] if idx else []
    sources = [_source(v, f"{where} row {i}") for v, i in zip(cells, idx)]
    arrays, kept, skipped = decode_all([s for s, _ in sources], [n for _, n in sources],
                                       size=size, on_error=on_error)
    return make_imageset(arrays, [labels[idx[k]] for k in kept], [sources[k][1] for k in kept],
                         skipped, where, require_fake=require_fake)


def _stream(name_or_dir, split, image_column, label_column, real_label, fake_label, limit, size,
            cache_dir, num_shards, shard_index) -> Iterator[tuple[Any, int, str]]:
    """(array or DataError, label, name) per streamed row of this shard."""
    from datasets.distributed import split_dataset_by_node

    where = f"{os.fspath(name_or_dir)} [{split}]"
    ds = _open_hf(name_or_dir, split, True, cache_dir)
    ds, names = _prepare(ds, image_column, label_column, where)
    if num_shards > 1:  # DDP: each rank reads its own files (or every num_shards-th row)
        ds = split_dataset_by_node(ds, rank=shard_index, world_size=num_shards)
    to_label = _label_mapper(names, real_label, fake_label, where)
    taken = [0, 0]
    for i, row in enumerate(ds):
        if i == 0 and not {image_column, label_column} <= set(row):
            raise DataError(f"{where} has no column {image_column!r} or {label_column!r}; "
                            f"columns: {', '.join(row)}")
        label = to_label(row[label_column])
        if limit is not None and taken[label] >= limit:
            if min(taken) >= limit:
                return
            continue
        src, name = _source(row[image_column], f"{where} row {i}")
        try:
            result = load_image(src, size=size, name=name)
            taken[label] += 1
        except DataError as e:
            result = e
        yield result, label, name


def iter_hf_dataset(name_or_dir: str | os.PathLike, split: str, image_column: str = "image",
                    label_column: str = "label", real_label: Any = "real",
                    fake_label: Any = "fake", limit: int | None = None, size: int = 64,
                    cache_dir: str | None = None, num_shards: int = 1, shard_index: int = 0,
                    on_error: str = "raise") -> Iterator[tuple[np.ndarray, int]]:
    """Stream (image (size, size, 3) uint8, label) pairs; arguments as in `load_hf_dataset`.

    num_shards/shard_index: read only shard `shard_index` of `num_shards` (one per DDP rank),
    through `datasets.distributed.split_dataset_by_node`. `limit` counts per class in this shard.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    for result, label, _ in _stream(name_or_dir, split, image_column, label_column, real_label,
                                     fake_label, limit, size, cache_dir, num_shards, shard_index):
        if isinstance(result, DataError):
            if on_error == "raise":
                raise result
            continue
        yield result, label
