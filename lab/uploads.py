"""Few-shot uploads: a labelled zip or two image drops -> one 64x64 face crop per photo in ROOT/faces/{real,fake}.

Every model here reads face crops (issue 19), so each uploaded photo gives its largest face, framed like the
training crops (fdftnet.faces.crop_folder); a photo that already is a face crop is used as is; a photo with no
face is skipped and named in the status. Both the single fine-tune and the "compare methods" sweep start here.

    faces, counts, note = prepare_upload(zip_path, None, None, run_dir)   # note: "" or "**2 photos skipped** ..."
"""
import re
import shutil
from pathlib import Path

from fdftnet.archive import MIN_PER_CLASS, collect_labelled, extract_labelled_zip
from fdftnet.data import DataError
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


def prepare_upload(zip_file, real_files, fake_files, root: Path, progress=None) -> tuple[Path, dict, str]:
    """Upload -> (root/faces holding real/ and fake/ crops, {"real": n, "fake": m}, skipped-photos note).

    progress(done, total) is called after each photo. DataError in one line: both or neither upload kind,
    a bad archive or image, too many pixels, or too few faces left in a class after cropping."""
    if zip_file and (real_files or fake_files):
        raise DataError("give either a zip or the two image drops, not both")
    if zip_file:
        extract_labelled_zip(zip_file, root / "upload", max_total_bytes=UPLOAD_BYTES)
    elif real_files or fake_files:
        collect_labelled({"real": real_files, "fake": fake_files}, root / "upload")
    else:
        raise DataError("no training images: upload a zip with real/ and fake/ folders, or drop real and fake images")
    # every photo is decoded to find its face: the whole upload is charged first, from its headers
    charge_headers([p for p in (root / "upload").rglob("*") if p.is_file()],
                   DecodeBudget(max_pixels=16_000_000, total_pixels=400_000_000, max_images=2000))
    report = crop_folder(root / "upload", root / "crops", split="faces", progress=progress)
    note = skipped_note(report, root)
    counts = report["counts"]["faces"]
    shutil.rmtree(root / "upload", ignore_errors=True)  # the photos are no longer needed, only their crops
    few = [f"{c} has {counts[c]}" for c in ("real", "fake") if counts[c] < MIN_PER_CLASS]
    if few:
        raise DataError(f"too few faces after cropping ({', '.join(few)}; need at least {MIN_PER_CLASS} per class)"
                        + (f": {len(report['no_face'])} photos had no face" if report["no_face"] else ""))
    return root / "crops" / "faces", counts, note
