"""Hostile uploads: a table of known-bad (and tricky-but-valid) files, then bounded fuzzing.

Whatever arrives, `load_image` and the zip extractors either succeed correctly or raise our own
one-line `DataError`; nothing is ever written outside the destination folder. Builders live in
bench/_hostile.py (shared with bench/robustness.py).
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` without an install

from bench import _hostile as H  # noqa: E402
from fdftnet.archive import extract_images_zip, extract_labelled_zip  # noqa: E402
from fdftnet.data import DataError, load_image  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _one_line(e: Exception) -> None:
    msg = str(e)
    assert msg and "\n" not in msg and "Traceback" not in msg, repr(msg)


@pytest.mark.parametrize("kind", sorted(H.IMAGE_CASES))
@pytest.mark.parametrize("as_path", [False, True], ids=["bytes", "file"])
def test_hostile_image(kind, as_path, tmp_path):
    data, expect = H.IMAGE_CASES[kind]()
    src = data
    if as_path:
        src = tmp_path / f"{kind}.png"  # every file claims to be a PNG; the decoder must not trust that
        src.write_bytes(data)
    if expect == "error":
        with pytest.raises(DataError) as err:
            load_image(src, name=kind)
        _one_line(err.value)
        assert kind in str(err.value)  # the message names the file
    else:
        arr = load_image(src, name=kind)
        assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8
        expect(arr)


@pytest.mark.parametrize("kind", sorted(H.ZIP_CASES))
def test_hostile_zip(kind, tmp_path):
    up = tmp_path / "upload"
    up.mkdir()
    z = H.ZIP_CASES[kind](up / f"{kind}.zip")
    assert z.stat().st_size < 4 * 2**20  # the bombs stay small on disk
    with pytest.raises(DataError) as err:
        extract_labelled_zip(z, tmp_path / "labelled")
    _one_line(err.value)
    if kind in H.DECODED_LATER:  # extracted as files; the bad one fails when Detect decodes it
        paths = extract_images_zip(z, tmp_path / "images")
        bad = 0
        for path, name in paths:
            try:
                load_image(path, name=name)
            except DataError as e:
                _one_line(e)
                bad += 1
        assert bad == 1
    else:
        with pytest.raises(DataError) as err:
            extract_images_zip(z, tmp_path / "images")
        _one_line(err.value)
    # nothing escaped: only the upload and the two destinations exist, and no file is bigger than 1 MiB
    assert {p.name for p in tmp_path.iterdir()} <= {"upload", "labelled", "images"}
    assert all(p.stat().st_size <= 2**20 for p in tmp_path.rglob("*") if p.is_file() and p != z)
    assert not Path("/tmp/fdftnet-evil.png").exists()


def test_valid_zip_still_extracts(tmp_path):
    z = H.labelled_zip(tmp_path / "ok.zip", wrapper="set/", extra={"README.txt": b"hello", "__MACOSX/._x": b"x"})
    assert extract_labelled_zip(z, tmp_path / "out") == {"real": 4, "fake": 4}
    assert len(extract_images_zip(z, tmp_path / "img")) == 8


# ----------------------------------------------------------------------------------------------
# fuzzing (bounded: derandomized, 150 examples each)

_SEEDS = H.seed_images()
_OPS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.integers(0, 2**16)), min_size=1, max_size=6)


def _check_decode(data: bytes) -> None:
    try:
        arr = load_image(data)
    except DataError as e:
        _one_line(e)
        return
    assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data):
    _check_decode(data)


@FUZZ
@given(st.sampled_from(range(len(_SEEDS))), _OPS)
def test_fuzz_mutated_images(i, ops):
    _check_decode(H.mutate(_SEEDS[i], ops))


_ZIP_SEED = None


def _zip_seed() -> bytes:
    global _ZIP_SEED
    if _ZIP_SEED is None:
        with tempfile.TemporaryDirectory() as d:
            _ZIP_SEED = H.labelled_zip(Path(d) / "s.zip", n=4, size=8, wrapper="w/").read_bytes()
    return _ZIP_SEED


@FUZZ
@given(_OPS)
def test_fuzz_mutated_zip(ops):
    data = H.mutate(_zip_seed(), ops)
    with tempfile.TemporaryDirectory() as d:
        parent = Path(d)
        (parent / "in.zip").write_bytes(data)
        dest = parent / "sub" / "dest"
        for extract in (extract_labelled_zip, extract_images_zip):
            try:
                extract(parent / "in.zip", dest / extract.__name__)
            except DataError as e:
                _one_line(e)
        # nothing outside the destination: the parent holds only the upload and sub/dest/...
        assert all(p == "in.zip" or p in ("sub", "sub/dest") or p.startswith("sub/dest/")
                   for p in H.tree_snapshot(parent)), H.tree_snapshot(parent)
