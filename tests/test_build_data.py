"""fdftnet.data.build and `fdftnet build-data`: image folders at a chosen size from a manifest of source files.

The tests make their own sources (random JPEGs of two sizes, like gan64's 256-px fakes and 200-px reals) and
a manifest naming them; a face source for --faces is skimage's astronaut (public domain).
"""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from fdftnet.cli import main
from fdftnet.data import DataError, load_image, load_image_folder
from fdftnet.data.build import build_dataset, pixels_sha256, read_manifest, verify_build


def _sources(tmp_path, n=3):
    """Two source folders (fakes 120 px, reals 100 px, as JPEG) and a manifest: train and test, 2 classes."""
    rng = np.random.default_rng(0)
    fakes, reals = tmp_path / "fakes", tmp_path / "reals"
    fakes.mkdir()
    reals.mkdir()
    rows = []
    for split in ("train", "test"):
        for i in range(n):
            for label, folder, side in (("fake", fakes, 120), ("real", reals, 100)):
                name = f"{split}{i}_{label}.jpg"
                Image.fromarray(rng.integers(0, 256, (side, side + 10, 3), np.uint8)).save(folder / name, quality=90)
                rows.append({"split": split, "label": label, "source": name, "group": f"g{i}", "in_small": i % 2})
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return manifest, [str(fakes), str(reals)]


def test_builds_every_split_at_the_size_with_checksums(tmp_path):
    manifest, sources = _sources(tmp_path)
    info = build_dataset(manifest, sources, tmp_path / "out", size=48)
    assert info["counts"] == {"train": {"real": 3, "fake": 3}, "test": {"real": 3, "fake": 3}}
    assert info["images"] == 12 and info["upscaled"] == 0
    data = load_image_folder(tmp_path / "out", "train", size=48)
    assert data.images.shape == (6, 3, 48, 48) and data.counts() == {"real": 3, "fake": 3}
    # each output is the source's centre square (100 x 100 of the 100 x 110 real), Lanczos-resized
    src = np.asarray(Image.open(tmp_path / "reals" / "train0_real.jpg").convert("RGB"))
    want = np.asarray(Image.fromarray(src).resize((48, 48), Image.Resampling.LANCZOS, box=(5, 0, 105, 100)))
    got = load_image(tmp_path / "out" / "train" / "real" / "train0_real.png", size=None)
    assert np.array_equal(got, want)
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    assert set(rows[0]) >= {"split", "label", "file", "source", "group", "source_sha256", "sha256", "upscaled"}
    assert next(r for r in rows if r["source"] == "train0_real.jpg")["sha256"] == pixels_sha256(got)
    assert json.loads((tmp_path / "out" / "build.json").read_text())["build_digest"] == info["build_digest"]
    # the same build twice gives the same digest; a changed pixel is found by verify
    again = build_dataset(manifest, sources, tmp_path / "again", size=48)
    assert again["build_digest"] == info["build_digest"]
    ok = verify_build(tmp_path / "out")
    assert ok["bad"] == [] and ok["matches_build_json"]
    bad = got.copy()
    bad[0, 0, 0] ^= 1
    Image.fromarray(bad).save(tmp_path / "out" / "train" / "real" / "train0_real.png")
    checked = verify_build(tmp_path / "out")
    assert checked["bad"] == ["train/real/train0_real.png"] and not checked["matches_build_json"]


def test_splits_where_and_upscaling(tmp_path):
    manifest, sources = _sources(tmp_path)
    info = build_dataset(manifest, sources, tmp_path / "out", size=110, splits=["test"], where={"in_small": "1"})
    assert info["counts"] == {"test": {"real": 1, "fake": 1}}
    assert info["upscaled"] == 1  # the 100-px real is upscaled to 110; the 120-px fake is not
    assert not (tmp_path / "out" / "train").exists()


def test_a_missing_source_is_one_line_before_anything_is_written(tmp_path):
    manifest, sources = _sources(tmp_path)
    (tmp_path / "reals" / "test2_real.jpg").unlink()
    with pytest.raises(DataError, match=r"^source file test2_real\.jpg \(test/real\) is in none of the source "
                                        r"folders") as e:
        build_dataset(manifest, sources, tmp_path / "out", size=48)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, words", [
    ("split,label\ntrain,real\n", "no column source"),
    ("split,label,source\ntrain,maybe,a.jpg\n", "is not real or fake"),
    ("split,label,source\ntrain,real,../a.jpg\n", "not a plain file name"),
    ("split,label,source\n", "has no rows"),
])
def test_bad_manifests_are_one_line(tmp_path, text, words):
    (tmp_path / "m.csv").write_text(text)
    (tmp_path / "src").mkdir()
    with pytest.raises(DataError, match=words):
        build_dataset(tmp_path / "m.csv", [str(tmp_path / "src")], tmp_path / "out", size=48)


def test_unknown_split_is_named(tmp_path):
    manifest, _ = _sources(tmp_path)
    with pytest.raises(DataError, match="no split nope"):
        read_manifest(manifest, splits=["nope"])


def test_cli_builds_verifies_and_refuses_in_one_line(tmp_path, capsys):
    manifest, (fakes, reals) = _sources(tmp_path)
    out = tmp_path / "built"
    assert main(["build-data", "--manifest", str(manifest), "--source", fakes, "--source", reals, "--out", str(out),
                 "--size", "40", "--splits", "train"]) == 0
    printed = capsys.readouterr().out
    assert "6 images at 40 px" in printed and "train: 3 real + 3 fake" in printed and "build digest" in printed
    assert main(["build-data", "--verify", str(out)]) == 0
    assert "0 differ" in capsys.readouterr().out
    assert main(["build-data", "--manifest", str(manifest), "--source", fakes, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fdftnet: error: source file") and "\n" not in err
    assert main(["build-data", "--manifest", str(manifest), "--source", fakes, "--out", str(out),
                 "--where", "nonsense"]) == 2
    assert "COLUMN=VALUE" in capsys.readouterr().err


def test_faces_mode_frames_faces_as_predict_does(tmp_path):
    """--faces: each source's largest face, cut straight to the size with the face path's framing; a source
    without a face is left out and named."""
    pytest.importorskip("facenet_pytorch")
    skdata = pytest.importorskip("skimage.data")
    from fdftnet import faces

    src = tmp_path / "src"
    src.mkdir()
    photo = np.full((700, 900, 3), 128, np.uint8)
    photo[100:612, 200:712] = skdata.astronaut()
    Image.fromarray(photo).save(src / "astro.png")
    Image.fromarray(np.full((300, 300, 3), 90, np.uint8)).save(src / "blank.png")
    (tmp_path / "m.csv").write_text("split,label,source\ntrain,real,astro.png\ntrain,fake,blank.png\n")
    info = build_dataset(tmp_path / "m.csv", [str(src)], tmp_path / "out", size=96, faces=True)
    assert info["counts"] == {"train": {"real": 1, "fake": 0}} and info["no_face"] == {"blank.png": "no face found"}
    got = load_image(tmp_path / "out" / "train" / "real" / "astro.png", size=None)
    assert np.array_equal(got, faces.find_faces(photo, size=96).faces[0].crop)
