"""Uploaded image sets: safe zip extraction, labelled real/fake folders, a hold-out split, checkpoint zips.

An uploaded zip is untrusted: every member name is checked before anything is written (no absolute
paths, no `..`, no symlinks, no nested archives), the member count, the total uncompressed size and
each member's compression ratio are bounded from the central directory *before* extraction, and the
bytes actually written are counted again (a lying header cannot write more). Every image is then
decoded with `load_image`, so a file that is not a usable image is a DataError naming it.

    counts = extract_labelled_zip("set.zip", "tmp/upload")          # {"real": 12, "fake": 12}
    split = holdout_split("tmp/upload", "tmp/data", holdout=0.25)    # tmp/data/{finetune,validation}/{real,fake}
    paths = extract_images_zip("faces.zip", "tmp/detect")            # any layout, images only
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from .data import CLASS_NAMES, IMAGE_EXTENSIONS, DataError, load_image

__all__ = [
    "MAX_FILES", "MAX_TOTAL_BYTES", "MAX_RATIO", "MIN_PER_CLASS", "extract_labelled_zip",
    "extract_images_zip", "collect_labelled", "holdout_split", "zip_dir",
]

MAX_FILES = 2000  # a few-shot set is tens to hundreds of images
MAX_TOTAL_BYTES = 200 * 2**20  # 200 MiB uncompressed
MAX_RATIO = 100  # deflate rarely beats 100:1 on real images; bombs reach 1000:1 and more
RATIO_MIN_BYTES = 2**20  # the ratio test only applies to members above 1 MiB (a flat 64x64 BMP is 120:1)
MIN_PER_CLASS = 4  # 2 to train on + 2 held out, the least that still gives a metric
ARCHIVE_EXTENSIONS = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".jar")
_JUNK = ("__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini")


# ----------------------------------------------------------------------------------------------
# checks on the central directory, before anything is extracted


def _member_parts(name: str) -> tuple[str, ...]:
    """The path parts of a zip member name, or DataError if it could leave the target folder."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise DataError(f"zip: absolute path {name!r} is not allowed")
    parts = tuple(p for p in PurePosixPath(clean).parts if p not in ("", "."))
    if ".." in parts:
        raise DataError(f"zip: path {name!r} points outside the archive ('..')")
    return parts


def _is_junk(parts: tuple[str, ...]) -> bool:
    """macOS/Windows metadata and hidden files: never images, silently ignored."""
    return any(p in _JUNK or p.startswith(".") for p in parts)


def _checked_members(zf: zipfile.ZipFile, max_files: int, max_total_bytes: int, max_ratio: float
                     ) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """(info, parts) of every file member worth extracting, after all the safety checks."""
    out, total = [], 0
    infos = zf.infolist()
    n_files = sum(not i.is_dir() for i in infos)
    if n_files > max_files:
        raise DataError(f"zip: {n_files} files, more than the limit of {max_files}")
    for info in infos:
        parts = _member_parts(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"zip: {info.filename!r} is a symbolic link; links are not allowed")
        if info.is_dir() or not parts or _is_junk(parts):
            continue
        if info.filename.lower().endswith(ARCHIVE_EXTENSIONS):
            raise DataError(f"zip: {info.filename!r} is an archive inside the archive; upload images only")
        if info.flag_bits & 0x1:
            raise DataError(f"zip: {info.filename!r} is encrypted")
        total += info.file_size
        if total > max_total_bytes:
            raise DataError(f"zip: more than {max_total_bytes // 2**20} MiB uncompressed")
        if info.file_size > RATIO_MIN_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
            raise DataError(f"zip: {info.filename!r} compresses {info.file_size // max(info.compress_size, 1)}:1 "
                            f"(limit {max_ratio}:1), which looks like a zip bomb")
        out.append((info, parts))
    return out


def _open_zip(zip_path) -> zipfile.ZipFile:
    name = os.path.basename(os.fspath(zip_path))
    if not os.path.isfile(zip_path) or os.path.getsize(zip_path) == 0:
        raise DataError(f"{name}: empty or missing upload")
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise DataError(f"{name}: not a zip archive ({e})") from None


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Write one member, refusing more bytes than its header declared (zipfile also checks the CRC)."""
    left = info.file_size
    try:
        with zf.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                left -= len(chunk)
                if left < 0:
                    raise DataError(f"zip: {info.filename!r} is larger than its header says")
                dst.write(chunk)
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError, ValueError, zlib.error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"zip: cannot extract {info.filename!r} ({reason})") from None


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _check_image(path: Path, name: str) -> None:
    load_image(path, name=name)  # DataError naming the member when it is not a usable image


# ----------------------------------------------------------------------------------------------
# public API


def extract_images_zip(zip_path, dest, max_files: int = MAX_FILES, max_total_bytes: int = MAX_TOTAL_BYTES,
                       max_ratio: float = MAX_RATIO) -> list[tuple[str, str]]:
    """Extract the image files of a zip (any layout) -> [(path on disk, name in the archive)], sorted.

    Non-image files are ignored; images are not decoded here (callers decode them one by one and
    report the bad ones). DataError for an unsafe archive or one without images.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    with _open_zip(zip_path) as zf:
        members = [(i, p) for i, p in _checked_members(zf, max_files, max_total_bytes, max_ratio)
                   if _is_image_name(p[-1])]
        for k, (info, parts) in enumerate(sorted(members, key=lambda m: m[1])):
            target = dest / f"{k:05d}_{parts[-1]}"
            _copy_member(zf, info, target)
            out.append((str(target), "/".join(parts)))
    if not out:
        raise DataError(f"{os.path.basename(os.fspath(zip_path))}: no images inside "
                        f"(extensions: {' '.join(IMAGE_EXTENSIONS)})")
    return out


def _class_of(parts: tuple[str, ...], strip: int) -> str | None:
    """'real' / 'fake' for a member under real/ or fake/ (after `strip` wrapper folders), else None."""
    rest = parts[strip:]
    return rest[0].lower() if len(rest) >= 2 and rest[0].lower() in CLASS_NAMES else None


def extract_labelled_zip(zip_path, dest, max_files: int = MAX_FILES, max_total_bytes: int = MAX_TOTAL_BYTES,
                         max_ratio: float = MAX_RATIO, min_per_class: int = MIN_PER_CLASS) -> dict[str, int]:
    """Extract a zip holding real/ and fake/ folders into dest/real and dest/fake -> {"real": n, "fake": m}.

    Args:
        zip_path: the uploaded archive. One top-level folder wrapping real/ and fake/ is accepted;
            class folders match case-insensitively and may hold subfolders.
        dest: an empty or new folder.
        max_files, max_total_bytes, max_ratio: limits checked before extraction.
        min_per_class: fewer images in a class is a DataError.
    Every image is decoded once to check it; the first bad one is a DataError naming it. Non-image
    files (a README, say) are ignored; an image outside real/ and fake/ is an error.
    """
    name = os.path.basename(os.fspath(zip_path))
    dest = Path(dest)
    with _open_zip(zip_path) as zf:
        members = _checked_members(zf, max_files, max_total_bytes, max_ratio)
        images = [(i, p) for i, p in members if _is_image_name(p[-1])]
        if not images:
            raise DataError(f"{name}: no images inside (expected real/ and fake/ folders of images)")
        tops = {p[0] for _, p in images}
        strip = 1 if len(tops) == 1 and next(iter(tops)).lower() not in CLASS_NAMES else 0
        for info, parts in images:
            if _class_of(parts, strip) is None:
                raise DataError(f"{name}: {info.filename!r} is not inside a real/ or fake/ folder")
        for cls in CLASS_NAMES:
            (dest / cls).mkdir(parents=True, exist_ok=True)
        counts = dict.fromkeys(CLASS_NAMES, 0)
        for k, (info, parts) in enumerate(sorted(images, key=lambda m: m[1])):
            cls = _class_of(parts, strip)
            target = dest / cls / f"{k:05d}_{parts[-1]}"
            _copy_member(zf, info, target)
            _check_image(target, f"{name}: {info.filename}")
            counts[cls] += 1
    _check_counts(counts, name, min_per_class)
    return counts


def collect_labelled(files: dict[str, list], dest, min_per_class: int = MIN_PER_CLASS,
                     max_files: int = MAX_FILES) -> dict[str, int]:
    """Copy uploaded image files {"real": [paths], "fake": [paths]} into dest/real and dest/fake, checked."""
    dest = Path(dest)
    n = sum(len(v or []) for v in files.values())
    if n > max_files:
        raise DataError(f"{n} files uploaded, more than the limit of {max_files}")
    counts = {}
    for cls in CLASS_NAMES:
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for k, src in enumerate(files.get(cls) or []):
            src = os.fspath(src)
            base = os.path.basename(src)
            if base.lower().endswith(ARCHIVE_EXTENSIONS):
                raise DataError(f"{base}: an archive among the {cls} images; upload a zip in the zip field")
            _check_image(Path(src), f"{cls}: {base}")
            shutil.copyfile(src, dest / cls / f"{k:05d}_{base}")
        counts[cls] = len(files.get(cls) or [])
    _check_counts(counts, "upload", min_per_class)
    return counts


def _check_counts(counts: dict[str, int], where: str, min_per_class: int = MIN_PER_CLASS) -> None:
    present = [c for c in CLASS_NAMES if counts.get(c)]
    if len(present) < 2:
        missing = [c for c in CLASS_NAMES if not counts.get(c)]
        only = f"only {present[0]} images" if present else "no images"
        raise DataError(f"{where}: {only}; need both real and fake (missing {', '.join(missing)})")
    few = [f"{c} has {counts[c]}" for c in CLASS_NAMES if counts[c] < min_per_class]
    if few:
        raise DataError(f"{where}: too few images ({', '.join(few)}); need at least {min_per_class} per class")


def holdout_split(src, root, holdout: float = 0.25, min_holdout: int = 2, min_train: int = 2, seed: int = 0,
                  train_split: str = "finetune", val_split: str = "validation") -> dict[str, dict[str, int]]:
    """Move src/{real,fake} into root/TRAIN_SPLIT/{real,fake} and root/VAL_SPLIT/{real,fake}.

    Per class, max(min_holdout, round(holdout * n)) files drawn with `seed` are held out; at least
    `min_train` must stay for training. Returns {"finetune": {"real": n, "fake": m}, "validation": {...}}.
    """
    src, root = Path(src), Path(root)
    rng = np.random.default_rng(seed)
    out = {train_split: {}, val_split: {}}
    for cls in CLASS_NAMES:
        files = sorted(p for p in (src / cls).iterdir() if p.is_file())
        n_val = max(min_holdout, int(round(holdout * len(files))))
        if len(files) - n_val < min_train:
            raise DataError(f"{cls}: {len(files)} images cannot give {n_val} to hold out and {min_train} to train")
        held = set(rng.permutation(len(files))[:n_val].tolist())
        for split in (train_split, val_split):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files):
            split = val_split if i in held else train_split
            shutil.move(str(f), root / split / cls / f.name)
        out[val_split][cls], out[train_split][cls] = n_val, len(files) - n_val
    return out


def zip_dir(src, zip_path, exclude: tuple[str, ...] = ("last", "last.new", "last.old")) -> str:
    """Zip the files of a checkpoint directory (top-level names in `exclude` and dotfiles left out)."""
    src = Path(src)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if path.is_file() and rel.parts[0] not in exclude and not any(p.startswith(".") for p in rel.parts):
                zf.write(path, rel.as_posix())
    return os.fspath(zip_path)
