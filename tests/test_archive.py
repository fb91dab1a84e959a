"""fdftnet.archive: safe zip extraction, labelled uploads, the hold-out split, checkpoint zips."""
import io
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from fdftnet.archive import (
    collect_labelled, extract_images_zip, extract_labelled_zip, holdout_split, zip_dir,
)
from fdftnet.data import DataError


def png_bytes(seed: int = 0, size: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_zip(path, members: dict) -> str:
    """members: name -> bytes, or name -> ("symlink", target)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            if isinstance(data, tuple):
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, data[1])
            else:
                zf.writestr(name, data)
    return str(path)


def labelled(n_real=5, n_fake=5, prefix="") -> dict:
    m = {f"{prefix}real/r{i}.png": png_bytes(i) for i in range(n_real)}
    m.update({f"{prefix}fake/f{i}.png": png_bytes(100 + i) for i in range(n_fake)})
    return m


# ----------------------------------------------------------------------------------------------
# labelled zips


def test_labelled_zip_extracts_and_ignores_junk(tmp_path):
    members = {**labelled(), "README.txt": b"hello", "__MACOSX/real/._r0.png": b"junk", ".DS_Store": b"x"}
    counts = extract_labelled_zip(make_zip(tmp_path / "a.zip", members), tmp_path / "out")
    assert counts == {"real": 5, "fake": 5}
    assert len(list((tmp_path / "out" / "real").iterdir())) == 5
    assert len(list((tmp_path / "out" / "fake").iterdir())) == 5


def test_labelled_zip_accepts_one_wrapper_folder_and_any_case(tmp_path):
    members = {f"set/Real/r{i}.png": png_bytes(i) for i in range(4)}
    members.update({f"set/FAKE/sub/f{i}.png": png_bytes(9 + i) for i in range(4)})
    assert extract_labelled_zip(make_zip(tmp_path / "a.zip", members), tmp_path / "o") == {"real": 4, "fake": 4}


@pytest.mark.parametrize("name, match", [
    ("../x.png", r"outside"), ("real/../../x.png", r"outside"), ("/etc/x.png", r"absolute"),
    ("C:/x.png", r"absolute"), ("real/inner.zip", r"archive inside"), ("fake/a.tar.gz", r"archive inside"),
])
def test_labelled_zip_refuses_unsafe_members(tmp_path, name, match):
    path = make_zip(tmp_path / "a.zip", {**labelled(), name: png_bytes(50)})
    with pytest.raises(DataError, match=match):
        extract_labelled_zip(path, tmp_path / "out")
    assert not (tmp_path / "x.png").exists()


def test_labelled_zip_refuses_symlinks(tmp_path):
    path = make_zip(tmp_path / "a.zip", {**labelled(), "real/link.png": ("symlink", "/etc/passwd")})
    with pytest.raises(DataError, match="symbolic link"):
        extract_labelled_zip(path, tmp_path / "out")


def test_labelled_zip_limits(tmp_path):
    path = make_zip(tmp_path / "a.zip", labelled())
    with pytest.raises(DataError, match="more than the limit of 5"):
        extract_labelled_zip(path, tmp_path / "o1", max_files=5)
    with pytest.raises(DataError, match="MiB uncompressed"):
        extract_labelled_zip(path, tmp_path / "o2", max_total_bytes=1000)
    bomb = make_zip(tmp_path / "bomb.zip", {**labelled(), "real/big.png": bytes(2 * 2**20)})
    with pytest.raises(DataError, match="zip bomb"):
        extract_labelled_zip(bomb, tmp_path / "o3")


@pytest.mark.parametrize("members, match", [
    (labelled(5, 0), r"only real images"),
    ({"a/real/r.png": png_bytes(), "b/fake/f.png": png_bytes(1)}, r"not inside a real/ or fake/"),
    (labelled(5, 3), r"too few images \(fake has 3\)"),
    ({"notes.txt": b"no images"}, r"no images"),
    ({**labelled(), "fake/broken.png": b"\x89PNG\r\n\x1a\nnot really"}, r"fake/broken.png"),
    ({**labelled(), "real/tiny.png": png_bytes(size=1)}, r"real/tiny.png: image too small"),
])
def test_labelled_zip_refuses_bad_sets(tmp_path, members, match):
    with pytest.raises(DataError, match=match):
        extract_labelled_zip(make_zip(tmp_path / "a.zip", members), tmp_path / "out")


def test_not_a_zip_and_empty_upload(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"this is not a zip")
    (tmp_path / "empty.zip").write_bytes(b"")
    with pytest.raises(DataError, match="not a zip"):
        extract_labelled_zip(tmp_path / "x.zip", tmp_path / "o")
    with pytest.raises(DataError, match="empty"):
        extract_images_zip(tmp_path / "empty.zip", tmp_path / "o")


# ----------------------------------------------------------------------------------------------
# unlabelled zips, file drops, hold-out, checkpoint zips


def test_images_zip_any_layout(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"b/x.png": png_bytes(1), "a.jpg.txt": b"no", "c.png": png_bytes(2)})
    out = extract_images_zip(path, tmp_path / "o")
    assert [name for _, name in out] == ["b/x.png", "c.png"]
    with pytest.raises(DataError, match="no images"):
        extract_images_zip(make_zip(tmp_path / "n.zip", {"a.txt": b"x"}), tmp_path / "o2")
    with pytest.raises(DataError, match="outside"):
        extract_images_zip(make_zip(tmp_path / "e.zip", {"../evil.png": png_bytes()}), tmp_path / "o3")


def test_collect_labelled(tmp_path):
    files = {}
    for cls in ("real", "fake"):
        files[cls] = []
        for i in range(4):
            p = tmp_path / f"{cls}{i}.png"
            p.write_bytes(png_bytes(i + (10 if cls == "fake" else 0)))
            files[cls].append(str(p))
    assert collect_labelled(files, tmp_path / "o") == {"real": 4, "fake": 4}
    with pytest.raises(DataError, match="only fake images"):
        collect_labelled({"real": [], "fake": files["fake"]}, tmp_path / "o2")
    (tmp_path / "t.txt").write_text("hi")
    with pytest.raises(DataError, match="real: t.txt: not an image"):
        collect_labelled({"real": files["real"] + [str(tmp_path / "t.txt")], "fake": files["fake"]}, tmp_path / "o3")


def test_holdout_split_is_seeded_and_keeps_both_sides(tmp_path):
    def run(name):
        extract_labelled_zip(make_zip(tmp_path / f"{name}.zip", labelled(8, 5)), tmp_path / name / "up")
        split = holdout_split(tmp_path / name / "up", tmp_path / name / "data", holdout=0.25, seed=0)
        held = sorted(p.name for p in (tmp_path / name / "data" / "validation" / "real").iterdir())
        return split, held
    (s1, h1), (s2, h2) = run("a"), run("b")
    assert s1 == {"finetune": {"real": 6, "fake": 3}, "validation": {"real": 2, "fake": 2}}
    assert h1 == h2 and s1 == s2
    with pytest.raises(DataError, match="cannot give"):
        extract_labelled_zip(make_zip(tmp_path / "c.zip", labelled(4, 4)), tmp_path / "c")
        holdout_split(tmp_path / "c", tmp_path / "cd", min_holdout=3)


def test_zip_dir_leaves_out_resume_state(tmp_path):
    ck = tmp_path / "ck"
    (ck / "last").mkdir(parents=True)
    (ck / "config.json").write_text("{}")
    (ck / "model.safetensors").write_bytes(b"w")
    (ck / "last" / "optimizer.pt").write_bytes(b"o")
    (ck / ".tmp-x").write_text("t")
    with zipfile.ZipFile(zip_dir(ck, tmp_path / "ck.zip")) as zf:
        assert sorted(zf.namelist()) == ["config.json", "model.safetensors"]
