"""Build an image-folder dataset at a chosen size from a manifest of source files (`fdftnet build-data`).

A manifest (CSV) names each image's split, label and source file; the sources are the full-size files of a
public repository (shared/data/README.md: dfdc-full's `faces_224/`, gan64's FakeFaces `faces/` and UTKFace
`crop_part1/`). Each source is decoded safely (`images.load_image`), centre-cropped to a square and resized
to SIZE x SIZE with PIL's Lanczos filter (the filter `fdftnet.faces.crop_face` uses on photos, so training
crops and the crops of uploaded photos are made alike), and saved as OUT/SPLIT/LABEL/<source stem>.png.

    report = build_dataset("dfdc-full/manifest.csv", ["src/faces_224"], "data/dfdc-full-128", size=128)

OUT/manifest.csv lists every written file with the SHA-256 of its source file and of its pixels (decoded
uint8, so a PNG encoder of another version gives the same digest); OUT/build.json holds the settings, the
counts and one digest of the whole build (`build_digest`), which `verify_build` recomputes from the files.
A source file missing from every --source folder is a one-line DataError before anything is written.

faces=True frames each image the way the product frames an uploaded photo: `fdftnet.faces.find_faces`'s
largest face, cut from the source straight to SIZE (a source that already is a tight face crop is used
whole, as an upload would be); sources with no face found are left out and listed in build.json.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from .images import DataError, load_image
from .loader import CLASS_NAMES

__all__ = ["read_manifest", "build_dataset", "verify_build", "pixels_sha256"]

_THREADS = min(4, os.cpu_count() or 1)  # PIL releases the GIL while decoding, resizing and encoding
_SOURCE_COLUMN = "source"


def read_manifest(path: str | os.PathLike, splits: Iterable[str] | None = None,
                  where: dict[str, str] | None = None) -> list[dict]:
    """The manifest's rows (split, label, source, ...) as dicts, filtered to `splits` and to rows whose
    columns equal `where`'s values; DataError (one line) for a missing file, column or an unknown label."""
    path = os.fspath(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise DataError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    if not rows:
        raise DataError(f"{path}: the manifest has no rows")
    need = ["split", "label", _SOURCE_COLUMN, *(where or {})]
    missing = [c for c in need if c not in rows[0]]
    if missing:
        raise DataError(f"{path}: the manifest has no column {', '.join(missing)} (columns: {', '.join(rows[0])})")
    bad = next((r for r in rows if r["label"] not in CLASS_NAMES), None)
    if bad is not None:
        raise DataError(f"{path}: label {bad['label']!r} of {bad[_SOURCE_COLUMN]} is not real or fake")
    wanted = set(splits) if splits else None
    if wanted:
        unknown = wanted - {r["split"] for r in rows}
        if unknown:
            raise DataError(f"{path}: no split {', '.join(sorted(unknown))} in the manifest "
                            f"(it has {', '.join(sorted({r['split'] for r in rows}))})")
    return [r for r in rows if (wanted is None or r["split"] in wanted)
            and all(r[k] == v for k, v in (where or {}).items())]


def _locate(rows: list[dict], sources: list[str]) -> list[str]:
    """The path of each row's source file: the first --source folder that holds it (a missing one: DataError)."""
    listings = []
    for folder in sources:
        if not os.path.isdir(folder):
            raise DataError(f"{folder}: no such source folder")
        listings.append(set(os.listdir(folder)))
    out = []
    for r in rows:
        name = r[_SOURCE_COLUMN]
        if os.path.basename(name) != name or name in ("", ".", ".."):
            raise DataError(f"manifest source {name!r} is not a plain file name")
        hit = next((os.path.join(d, name) for d, names in zip(sources, listings) if name in names), None)
        if hit is None:
            raise DataError(f"source file {name} ({r['split']}/{r['label']}) is in none of the source folders "
                            f"{', '.join(sources)}: fetch the source repository (docs/data.md)")
        out.append(hit)
    return out


def pixels_sha256(rgb: np.ndarray) -> str:
    """SHA-256 of an (H, W, 3) uint8 image's shape and pixels: the same for any lossless encoding of it."""
    h = hashlib.sha256(f"{rgb.shape[0]}x{rgb.shape[1]}x{rgb.shape[2]}:".encode())
    h.update(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    return h.hexdigest()


def square_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) uint8 -> its centre square resized to (size, size, 3) with Lanczos (unchanged if already so)."""
    h, w = rgb.shape[:2]
    if h == size and w == size:
        return rgb
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    out = Image.fromarray(np.ascontiguousarray(rgb)).resize(
        (size, size), Image.Resampling.LANCZOS, box=(left, top, left + s, top + s))
    return np.asarray(out, dtype=np.uint8)


def _out_name(row: dict) -> str:
    return os.path.join(row["split"], row["label"], os.path.splitext(row[_SOURCE_COLUMN])[0] + ".png")


def build_digest(entries: Iterable[tuple[str, str]]) -> str:
    """One digest of a build: SHA-256 over its sorted "file pixels_sha256" lines."""
    h = hashlib.sha256()
    for name, digest in sorted(entries):
        h.update(f"{name} {digest}\n".encode())
    return h.hexdigest()


def build_dataset(manifest: str | os.PathLike, sources: list[str], out: str | os.PathLike, size: int,
                  splits: Iterable[str] | None = None, where: dict[str, str] | None = None,
                  progress: Callable[[int, int], None] | None = None, faces: bool = False) -> dict:
    """Write OUT/SPLIT/{real,fake}/*.png at `size` px from the manifest's source files; returns build.json's dict.

    Args:
        manifest: CSV with columns split, label, source (a file name in one of `sources`); other columns
            (group, original_width, ...) are copied into OUT/manifest.csv.
        sources: folders holding the source files (searched in order).
        size: output side in px (32..1024).
        splits: build only these splits (default: every split of the manifest).
        where: keep only rows whose columns have these values, e.g. {"in_dfdc64": "1"}.
        progress: called as progress(done, total) after each image.
        faces: crop each source's largest face as the product crops photos (fdftnet.faces), not its centre square.
    Raises DataError before writing anything for a bad manifest or a missing source file, and during the build
    for a source that does not decode (naming it). Existing files of the same name are replaced.
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 1024:
        raise DataError(f"size must be a whole number of pixels in 32..1024, got {size!r}")
    rows = read_manifest(manifest, splits, where)
    if not rows:
        raise DataError(f"{manifest}: no rows match {where}")
    names = [_out_name(r) for r in rows]
    dup = len(names) - len(set(names))
    if dup:
        raise DataError(f"{manifest}: {dup} rows would write the same output file (same split, label and source)")
    paths = _locate(rows, [os.fspath(s) for s in sources])
    out = os.fspath(out)
    for split, label in sorted({(r["split"], r["label"]) for r in rows}):
        os.makedirs(os.path.join(out, split, label), exist_ok=True)

    def one(i: int) -> tuple[str, str, bool] | str:
        with open(paths[i], "rb") as f:
            raw = f.read()
        rgb = load_image(raw, size=None, name=paths[i])  # every decoding guard, EXIF orientation, RGB
        if faces:
            from ..faces import FaceError, largest_face
            try:
                face = largest_face(rgb, size=size)[0]
            except FaceError as e:
                return str(e)
            small, side = face.crop, face.box[2] - face.box[0]
        else:
            small, side = square_resize(rgb, size), min(rgb.shape[:2])
        Image.fromarray(small).save(os.path.join(out, names[i]), optimize=False)
        return hashlib.sha256(raw).hexdigest(), pixels_sha256(small), side < size

    results, no_face = [], {}
    with ThreadPoolExecutor(1 if faces else _THREADS) as pool:  # one detector, one thread
        for done, res in enumerate(pool.map(one, range(len(rows))), 1):
            results.append(res)
            if progress is not None:
                progress(done, len(rows))
    if faces:
        no_face = {rows[i][_SOURCE_COLUMN]: r for i, r in enumerate(results) if isinstance(r, str)}
        kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
        rows, names, results = [rows[i] for i in kept], [names[i] for i in kept], [results[i] for i in kept]
    extra = [c for c in rows[0] if c not in ("split", "label", "file", _SOURCE_COLUMN)]
    with open(os.path.join(out, "manifest.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["split", "label", "file", _SOURCE_COLUMN, *extra, "source_sha256", "sha256", "upscaled"])
        for r, name, (src_sha, px_sha, up) in zip(rows, names, results):
            w.writerow([r["split"], r["label"], name, r[_SOURCE_COLUMN], *(r[c] for c in extra), src_sha, px_sha,
                        int(up)])
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r["split"], {"real": 0, "fake": 0})[r["label"]] += 1
    info = {"manifest": os.path.abspath(os.fspath(manifest)), "sources": [os.path.abspath(s) for s in sources],
            "size": size, "filter": "largest face as fdftnet.faces frames a photo, PIL Lanczos" if faces else
            "centre square, PIL Lanczos", "where": where or {}, "images": len(rows),
            "upscaled": sum(up for _, _, up in results), "counts": counts, "no_face": no_face,
            "build_digest": build_digest(zip(names, (px for _, px, _ in results)))}
    with open(os.path.join(out, "build.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    return info


def verify_build(out: str | os.PathLike, progress: Callable[[int, int], None] | None = None) -> dict:
    """Re-read every file OUT/manifest.csv lists and compare its pixels' SHA-256 with the recorded one.

    Returns {"images", "build_digest", "matches_build_json", "bad": [files that differ or are missing]}."""
    out = os.fspath(out)
    rows = read_manifest(os.path.join(out, "manifest.csv"))
    try:
        with open(os.path.join(out, "build.json"), encoding="utf-8") as f:
            recorded = json.load(f).get("build_digest")
    except (OSError, ValueError):
        recorded = None

    def one(r: dict) -> str | None:
        try:
            return pixels_sha256(load_image(os.path.join(out, r["file"]), size=None))
        except DataError:
            return None

    bad, entries = [], []
    with ThreadPoolExecutor(_THREADS) as pool:
        for done, (r, got) in enumerate(zip(rows, pool.map(one, rows)), 1):
            if got != r["sha256"]:
                bad.append(r["file"])
            entries.append((r["file"], got or ""))
            if progress is not None:
                progress(done, len(rows))
    digest = build_digest(entries)
    return {"images": len(rows), "build_digest": digest, "matches_build_json": digest == recorded, "bad": bad}
