"""fdftnet.faces: detection, framing, the "already a crop" rule, crop_folder and bad input.

Real faces come from skimage.data.astronaut() (512x512, public domain; its face box is about
(182, 62, 267, 175)) pasted into larger canvases. MTCNN's weights ship inside facenet-pytorch.
"""
import io
import os
import threading

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("facenet_pytorch")
skdata = pytest.importorskip("skimage.data")

from fdftnet import faces  # noqa: E402
from fdftnet.data import DataError, list_image_folder, load_image  # noqa: E402

ASTRO_FACE = np.array([182, 62, 267, 175]) / 512  # face box as a fraction of the astronaut picture


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def astro_face(astronaut) -> faces.Face:
    return faces.find_faces(astronaut).faces[0]


def paste(canvas_wh, astronaut, places, fill=128) -> np.ndarray:
    """A (H, W, 3) grey canvas with the astronaut resized to `side` at each (x, y, side)."""
    w, h = canvas_wh
    img = np.full((h, w, 3), fill, np.uint8)
    for x, y, side in places:
        img[y:y + side, x:x + side] = np.asarray(Image.fromarray(astronaut).resize((side, side)))
    return img


def expected_box(x, y, side):
    return np.array([x, y, x, y]) + ASTRO_FACE * side


def png_bytes(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def error_of(fn, *args):
    try:
        fn(*args)
    except DataError as e:
        return str(e)


# ----------------------------------------------------------------------------------------------
# find_faces


def test_two_faces_boxes_and_crops(astronaut):
    places = [(380, 40, 400), (20, 60, 300)]  # the larger one first in the result
    res = faces.find_faces(paste((800, 480), astronaut, places))
    assert res.message is None and not res.is_crop
    assert len(res.faces) == 2
    for face, place in zip(res.faces, places):
        assert np.abs(np.array(face.box) - expected_box(*place)).max() < 0.1 * place[2]
        assert face.score >= faces.MIN_SCORE
        assert face.landmarks.shape == (5, 2)
        x0, y0, x1, y1 = face.box
        assert np.all((face.landmarks >= [x0, y0]) & (face.landmarks <= [x1, y1]))
        assert face.crop.shape == (64, 64, 3) and face.crop.dtype == np.uint8
        assert faces.is_face_crop(face.crop)


def test_blank_photo_no_face():
    res = faces.find_faces(np.full((480, 640, 3), 200, np.uint8))
    assert res.faces == [] and res.message == "no face found" and not res.is_crop
    # a min_size larger than the photo: no detector run, the same answer
    assert faces.find_faces(np.full((300, 400, 3), 200, np.uint8), min_size=500).message == "no face found"


def test_tiny_face_ignored_and_said(astronaut):
    res = faces.find_faces(paste((800, 600), astronaut, [(100, 100, 110)]))  # face ~18 px wide
    assert res.faces == []
    assert res.message == "no face found; 1 face under 20 px ignored"


def test_max_faces_keeps_largest(astronaut):
    places = [(20, 20, 200), (300, 20, 260), (620, 20, 320)]
    res = faces.find_faces(paste((1000, 400), astronaut, places), max_faces=2)
    assert res.message == "more than 2 faces: kept the 2 largest"
    assert len(res.faces) == 2
    widths = [f.box[2] - f.box[0] for f in res.faces]
    assert widths[0] > widths[1]
    assert abs(widths[1] - (ASTRO_FACE[2] - ASTRO_FACE[0]) * 260) < 0.15 * 260  # the middle copy


def test_crop_pads_with_edge_pixels():
    img = np.full((100, 100, 3), 255, np.uint8)
    crop = faces.crop_face(img, (-30, -30, 40, 40), np.full((5, 2), 5.0))  # square mostly outside
    assert crop.shape == (64, 64, 3) and crop.min() == 255  # no black border


# ----------------------------------------------------------------------------------------------
# is_face_crop


def test_is_face_crop_rule(astronaut, astro_face):
    face = astro_face
    assert not faces.is_face_crop(astronaut)  # 512 px square, face 17% of its width: a photo
    assert faces.is_face_crop(face.crop)  # 64 px: small square
    big = np.asarray(Image.fromarray(face.crop).resize((256, 256), Image.Resampling.BICUBIC))
    assert faces.is_face_crop(big)  # 256 px square filled by its face
    assert faces.is_face_crop(np.full((100, 100, 3), 90, np.uint8))  # small square, no face
    assert not faces.is_face_crop(np.full((300, 300, 3), 90, np.uint8))  # bigger square, no face
    assert not faces.is_face_crop(np.full((100, 160, 3), 90, np.uint8))  # not square


def test_crop_input_used_as_is(astro_face):
    crop = astro_face.crop
    res = faces.find_faces(crop)
    assert res.is_crop and len(res.faces) == 1 and res.message == "already a face crop: used as is"
    np.testing.assert_array_equal(res.faces[0].crop, crop)  # 64 px in, the same pixels out
    assert res.faces[0].box == (0.0, 0.0, 64.0, 64.0)
    # a bigger crop is resized exactly as the direct path (load_image) does it
    big = np.asarray(Image.fromarray(crop).resize((200, 200)))
    np.testing.assert_array_equal(faces.find_faces(big).faces[0].crop, load_image(png_bytes(big)))


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("image, words", [
    (np.zeros((40, 400, 3), np.uint8), "extreme aspect ratio"),
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((64, 64), np.uint8), "(H, W, 3)"),
    ("face.png", "got str"),
    (np.zeros((4, 4, 3), np.uint8), "too small"),
])
def test_bad_arrays_one_line_error(image, words):
    with pytest.raises(faces.FaceError) as e:
        faces.find_faces(image)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, DataError)


def test_largest_face_without_face_raises():
    with pytest.raises(faces.FaceError, match="^no face found$"):
        faces.largest_face(np.full((480, 640, 3), 10, np.uint8))


def test_load_photo_full_size_and_load_image_errors(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    assert faces.load_photo(png_bytes(arr)).shape == (200, 300, 3)
    np.testing.assert_array_equal(faces.load_photo(png_bytes(arr)), arr)
    for bad in (b"not an image", png_bytes(arr)[:200], png_bytes(arr[:4, :4])):
        ours, theirs = error_of(faces.load_photo, bad, "x.png"), error_of(load_image, bad, 64, "x.png")
        assert ours is not None and ours == theirs  # load_image's own one-line message
    with pytest.raises(DataError, match="cannot read file"):
        faces.load_photo(tmp_path / "missing.jpg")
    os.mkfifo(tmp_path / "fifo.jpg")  # would block a plain open()
    with pytest.raises(DataError, match="not a regular file"):
        faces.load_photo(tmp_path / "fifo.jpg")
    np.testing.assert_array_equal(faces.load_photo(io.BytesIO(png_bytes(arr))), arr)  # file object


def test_detector_built_once_across_threads():
    got = []
    threads = [threading.Thread(target=lambda: got.append(faces.get_detector())) for _ in range(4)]
    [t.start() for t in threads], [t.join() for t in threads]
    assert len({id(d) for d in got}) == 1 and got[0] is faces.get_detector()


# ----------------------------------------------------------------------------------------------
# crop_folder


def test_crop_folder_tree(tmp_path, astronaut):
    src, out = tmp_path / "photos", tmp_path / "data"
    (src / "Real").mkdir(parents=True), (src / "fake" / "sub").mkdir(parents=True)
    Image.fromarray(paste((400, 300), astronaut, [(100, 20, 250)])).save(src / "Real" / "a.jpg")
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(src / "Real" / "blank.png")
    two = paste((640, 400), astronaut, [(10, 20, 220), (260, 10, 380)])
    Image.fromarray(two).save(src / "fake" / "two.png")
    Image.fromarray(astronaut).save(src / "fake" / "sub" / "astro.jpg")
    (src / "fake" / "broken.png").write_bytes(b"garbage")
    report = faces.crop_folder(src, out)
    assert report["photos"] == 5 and report["faces"] == 3
    assert report["no_face"] == [str(src / "Real" / "blank.png")]
    assert report["unreadable"] == [str(src / "fake" / "broken.png")]
    assert report["counts"] == {"finetune": {"real": 1, "fake": 2}}
    pairs = list_image_folder(out, "finetune")
    assert sorted((p.split("finetune/")[1], y) for p, y in pairs) == [
        ("fake/sub/astro.png", 1), ("fake/two.png", 1), ("real/a.png", 0)]
    # the largest face of two.png is the 380 px copy on the right: same pixels as its own crop
    want = faces.find_faces(two).faces[0].crop
    np.testing.assert_array_equal(np.asarray(Image.open(out / "finetune" / "fake" / "two.png")), want)


def test_crop_folder_keeps_splits(tmp_path, astro_face):
    for split in ("train", "test"):
        for c in ("real", "fake"):
            (tmp_path / "src" / split / c).mkdir(parents=True)
    crop = astro_face.crop
    Image.fromarray(crop).save(tmp_path / "src" / "test" / "fake" / "f.png")
    report = faces.crop_folder(tmp_path / "src", tmp_path / "out")
    assert report["counts"] == {"test": {"real": 0, "fake": 1}, "train": {"real": 0, "fake": 0}}
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out/test/fake/f.png")), crop)


def test_crop_folder_bad_input(tmp_path):
    (tmp_path / "file.jpg").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "cats").mkdir()
    with pytest.raises(faces.FaceError, match="not a folder"):
        faces.crop_folder(tmp_path / "file.jpg", tmp_path / "out")
    with pytest.raises(faces.FaceError, match=r"expects real/ and fake/.*found: cats$") as e:
        faces.crop_folder(tmp_path / "empty", tmp_path / "out")
    assert "\n" not in str(e.value)
