"""fdftnet.mtcnn: MTCNN's stages with caps on candidates and a time budget (issue #31, failure 1).

Below the caps it must give facenet-pytorch's own result, box for box; on a PNG tiling hundreds of faces the
work R-Net and O-Net see is bounded by the caps (counted, not timed), and a spent Deadline stops it in one line.
"""
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("facenet_pytorch")
skdata = pytest.importorskip("skimage.data")

from fdftnet import faces, mtcnn  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiled() -> np.ndarray:
    """676 copies of the astronaut's face at 40 px in a 1040-px square: the audit's many-face PNG."""
    face = Image.fromarray(skdata.astronaut()).crop((150, 30, 300, 200)).resize((40, 40))
    return np.tile(np.asarray(face), (26, 26, 1))


@pytest.mark.parametrize("which", ["astronaut", "two", "coffee"])
def test_same_result_as_facenet_below_the_caps(which):
    astro = skdata.astronaut()
    image = {"astronaut": astro, "coffee": skdata.coffee()}.get(which)
    if image is None:
        image = np.full((600, 1200, 3), 128, np.uint8)
        image[44:556, 40:552] = image[44:556, 640:1152] = astro
    det = faces.get_detector()
    want_boxes, want_probs, want_points = det.detect(image, landmarks=True)
    boxes, probs, points, capped = mtcnn.detect(det, image, 12)
    assert not capped
    if want_boxes is None:
        assert len(boxes) == 0
        return
    want = [np.asarray(a, dtype=np.float64) for a in (want_boxes, want_probs, want_points)]
    assert all(np.allclose(got, w) for got, w in zip((boxes, probs, points), want))


def test_caps_bound_what_each_stage_sees(tiled):
    det = faces.get_detector()
    seen = {}
    hooks = [getattr(det, name).register_forward_pre_hook(lambda m, args, _name=name: seen.update({_name: len(args[0])}))
             for name in ("rnet", "onet")]
    try:
        boxes, probs, _, capped = mtcnn.detect(det, tiled, 12, caps=(400, 150, 30))
    finally:
        for h in hooks:
            h.remove()
    assert capped and seen["rnet"] <= 150 and seen["onet"] <= 30
    assert 0 < len(boxes) <= 30 and (probs > 0.7).all()


def test_a_spent_deadline_stops_detection_in_one_line(tiled):
    with pytest.raises(mtcnn.DetectionTimeout) as e:
        faces.find_faces(tiled, deadline=mtcnn.Deadline(0.0))
    assert "budget" in str(e.value) and "\n" not in str(e.value)


def test_find_faces_says_when_the_caps_were_reached(tiled, monkeypatch):
    monkeypatch.setattr(mtcnn, "CAPS", (400, 150, 30))
    monkeypatch.setattr(mtcnn.detect, "__defaults__", (12.0, (400, 150, 30), None))
    res = faces.find_faces(tiled, size=64)
    assert 0 < len(res.faces) <= faces.MAX_FACES
    assert "only the most likely candidates were examined" in res.message
