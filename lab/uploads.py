"""Few-shot uploads: a labelled zip or two image drops -> one face crop per photo in ROOT/faces/{real,fake}, at the
crop size of the model the upload will train (`fdftnet.models.crop_size_of`).

Every model here reads face crops (issue 19), so each uploaded photo gives its largest face, framed like the
training crops (fdftnet.faces.crop_folder); a photo that already is a face crop is used as is; a photo with no
face is skipped and named in the status. Both the single fine-tune and the "compare methods" sweep start here.

    faces, counts, note = prepare_upload(zip_path, None, None, run_dir)   # note: "" or "**2 photos skipped** ..."
"""
import re
import shutil
from pathlib import Path

from fdftnet.archive import MAX_FILES, MIN_PER_CLASS, collect_labelled, extract_images_zip, extract_labelled_zip
from fdftnet.data import DataError, load_image
from fdftnet.data.images import DecodeBudget, charge_headers
from fdftnet.faces import crop_folder

UPLOAD_BYTES = 100 * 2**20  # uncompressed bytes of one labelled upload
SHOW_SKIPPED = 8  # names listed in the status; the rest are counted


def _shown(path: str, root: Path) -> str:
    """root/upload/real/00003_me.jpg -> real/me.jpg (the name the visitor gave it)."""
    rel = Path(path).relative_to(root / "upload")
    return f"{rel.parts[0]}/{re.sub(r'^[0-9]{5}_', '', rel.name)}"


def skipped_note(report: dict, root: Path) -> str:
    """crop_folder's report -> a Markdown line naming the skipped photos, or ''."""
    skipped = report["no_face"] + report["unreadable"]
    if not skipped:
        return ""
    names = [f"{_shown(p, root)} ({report['reasons'].get(p, 'no face')})" for p in skipped[:SHOW_SKIPPED]]
    more = f", and {len(skipped) - SHOW_SKIPPED} more" if len(skipped) > SHOW_SKIPPED else ""
    return (f"**{len(skipped)} photo{'s' * (len(skipped) > 1)} skipped** (no face to crop): "
            + "; ".join(names) + more + ".")


def _reals_only(zip_file, real_files, fake_files, dest: Path) -> None:
    """A reals-only upload (issue 21): a zip of real photos in any layout, or the real images drop -> dest/."""
    if fake_files:
        raise DataError("“I only have real photos” is ticked: drop no fake images (or untick it)")
    if zip_file:
        names = [name for _, name in extract_images_zip(zip_file, dest, max_total_bytes=UPLOAD_BYTES)]
        if any("fake" in (p.lower() for p in n.split("/")[:-1]) for n in names):
            raise DataError("“I only have real photos” is ticked, but the zip has a fake/ folder: untick it to use "
                            "those fakes, or zip the real photos alone")
        return
    if len(real_files) > MAX_FILES:
        raise DataError(f"{len(real_files)} files uploaded, more than the limit of {MAX_FILES}")
    dest.mkdir(parents=True, exist_ok=True)
    for k, src in enumerate(real_files):
        name = Path(src).name
        load_image(src, name=f"real: {name}")  # a one-line DataError naming a file that is not an image
        shutil.copyfile(src, dest / f"{k:05d}_{name}")


def prepare_upload(zip_file, real_files, fake_files, root: Path, progress=None,
                   reals_only: bool = False, size: int = 64, need_per_class: int = 0) -> tuple[Path, dict, str]:
    """Upload -> (a folder holding real/ and fake/ crops, {"real": n, "fake": m}, skipped-photos note).

    reals_only: the upload is real photos only (a zip in any layout, or the real images drop); the folder then
    holds real/ alone. size: the crop side (the starting model's crop size). progress(done, total) is called
    after each photo. need_per_class: a class with fewer photos is refused before any face is looked for. DataError in one line: both or neither
    upload kind, a bad archive or image, too many pixels, or too few faces left in a class after cropping."""
    if zip_file and (real_files or fake_files):
        raise DataError("give either a zip or the two image drops, not both")
    if reals_only and (zip_file or real_files):
        _reals_only(zip_file, real_files, fake_files, root / "upload" / "real")
    elif zip_file:
        extract_labelled_zip(zip_file, root / "upload", max_total_bytes=UPLOAD_BYTES)
    elif real_files or fake_files:
        collect_labelled({"real": real_files, "fake": fake_files}, root / "upload")
    else:
        raise DataError("no training images: upload a zip with real/ and fake/ folders, or drop real and fake images")
    if need_per_class:  # counted from the extracted files: refused before the (slow) face finding
        have = {c: sum(1 for p in (root / "upload" / c).rglob("*") if p.is_file()) if (root / "upload" / c).is_dir()
                else 0 for c in ("real", "fake")}
        short = [f"{have[c]} {c}" for c in ("real", "fake") if have[c] < need_per_class]
        if short:
            raise DataError(f"the largest k needs {need_per_class} photos per class (k to train on and 2 held out) "
                            f"and this upload has {' and '.join(short)}: use a smaller k, or leave k on auto")
    # every photo is decoded to find its face: the whole upload is charged first, from its headers
    charge_headers([p for p in (root / "upload").rglob("*") if p.is_file()],
                   DecodeBudget(max_pixels=16_000_000, total_pixels=400_000_000, max_images=2000))
    report = crop_folder(root / "upload", root / "crops", split="faces", progress=progress, size=size)
    note = skipped_note(report, root)
    counts = report["counts"]["faces"]
    shutil.rmtree(root / "upload", ignore_errors=True)  # the photos are no longer needed, only their crops
    few = [f"{c} has {counts[c]}" for c in ("real",) + ("fake",) * (not reals_only) if counts[c] < MIN_PER_CLASS]
    if few:
        raise DataError(f"too few faces after cropping ({', '.join(few)}; need at least {MIN_PER_CLASS} per class)"
                        + (f": {len(report['no_face'])} photos had no face" if report["no_face"] else ""))
    return root / "crops" / "faces", counts, note


def pseudo_fake_examples(zip_file, real_files, n: int = 4, size: int = 64) -> list[tuple]:
    """[(real face crop, caption), (its self-blend, caption), ...] for the first `n` usable photos of a reals-only
    upload: what training will make its fake class from (fdftnet.data.selfblend), shown before it starts."""
    import tempfile

    from fdftnet.data.selfblend import self_blend_arrays
    from fdftnet.faces import MAX_DETECT_SIDE, FaceError, largest_face, load_photo

    crops = []
    with tempfile.TemporaryDirectory(prefix="fdftnet-preview-") as tmp:
        files = [p for p, _ in extract_images_zip(zip_file, tmp, max_total_bytes=UPLOAD_BYTES)] if zip_file else \
            list(real_files or [])
        for f in files[:4 * n]:  # a few photos may have no face
            try:
                # a preview: a big JPEG decodes at a DCT scale keeping what detection looks at, as Detect does
                crops.append(largest_face(load_photo(f, max_side=MAX_DETECT_SIDE), size=size)[0].crop)
            except (FaceError, DataError):
                continue
            if len(crops) == n:
                break
    if not crops:
        raise DataError("no face found in the first photos of the upload")
    fakes = self_blend_arrays(crops, seed=0)
    return [pair for i, (r, f) in enumerate(zip(crops, fakes), 1)
            for pair in ((r, f"real {i}"), (f, f"self-blend {i}"))]
