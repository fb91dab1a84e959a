"""fdftnet.explain: attention / Grad-CAM maps, overlays and verdicts."""
import numpy as np
import pytest
import torch

from fdftnet import BaselineDetector, FDFtNet
from fdftnet.explain import decide, enlarge, grad_cam, heatmap, overlay


@pytest.mark.parametrize("make, method", [
    (lambda: FDFtNet(backbone="squeezenet", mb_blocks=2), "FTT attention"),
    (lambda: FDFtNet(backbone="shallownetv3", mb_blocks=1, use_ftt=False), "Grad-CAM"),
    (lambda: BaselineDetector(backbone="shallownetv3"), "Grad-CAM"),
])
def test_heatmap_shape_range_and_no_parameter_grads(seed, make, method):
    model = make().eval()
    arrays = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    heat, name = heatmap(model, arrays)
    assert name == method and heat.shape == (2, 64, 64) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1 and np.isfinite(heat).all()
    assert all(p.grad is None for p in model.parameters())  # safe on a shared, read-only model


def test_grad_cam_matches_a_hand_computed_case():
    """For a linear head on pooled features, Grad-CAM = ReLU(sum_c w_c * A_c) with w_c = dmargin/dA_c averaged."""
    model = BaselineDetector(backbone="shallownetv3").eval()
    x = torch.rand(1, 3, 64, 64)
    cam = grad_cam(model, x)
    feats = model.backbone.forward_features(x).detach().requires_grad_(True)
    logits = model.backbone.forward_head(feats)
    (g,) = torch.autograd.grad((logits[:, 1] - logits[:, 0]).sum(), feats)
    ref = torch.relu((g.mean((2, 3), keepdim=True) * feats).sum(1)).detach()
    assert torch.allclose(cam, ref, atol=1e-6)


def test_overlay_enlarge_decide():
    img = np.full((4, 4, 3), 100, np.uint8)
    out = overlay(img, np.zeros((4, 4)), alpha=0.5)
    assert out.dtype == np.uint8 and tuple(out[0, 0]) == (50, 50, 114)  # 0 maps to dark blue (0, 0, 127.5)
    assert tuple(overlay(img, np.ones((4, 4)), alpha=1.0)[0, 0]) == (128, 0, 0)  # 1 maps to dark red
    assert enlarge(img, 3).shape == (12, 12, 3)
    assert decide(0.9, 0.4) == ("fake", pytest.approx(5 / 6))
    assert decide(0.1, 0.4) == ("real", pytest.approx(0.75))
    assert decide(0.4, 0.4) == ("fake", 0.0)
    assert decide(1.0, 0.0)[0] == "fake" and decide(0.0, 1.0)[0] == "real"


def test_tags_of_overlapping_faces_do_not_cover_each_other():
    """A group photo's boxes 4 and 5 overlapped and their numbers could not be read (issue #32.2)."""
    from fdftnet.explain import draw_boxes, tag_places
    boxes = [(100, 100, 200, 200), (110, 105, 210, 205), (120, 95, 215, 195), (0, 0, 60, 60)]
    sizes = [(30, 20)] * 4
    rects = [(x, y, x + 30, y + 20) for x, y in tag_places(boxes, sizes, (400, 300))]
    for i, a in enumerate(rects):
        assert 0 <= a[0] and a[2] <= 400 and 0 <= a[1] and a[3] <= 300  # in the picture
        for b in rects[i + 1:]:
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]), (a, b)
    shown = draw_boxes(np.full((300, 400, 3), 128, np.uint8), boxes, ["1", "2", "3", "4"], [(200, 0, 0)] * 4)
    assert shown.shape == (300, 400, 3)
