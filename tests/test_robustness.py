"""fdftnet.robustness: corruptions on uint8 batches and the AUROC sweep (tiny, hand-checkable cases)."""
import pytest
import torch
import torch.nn as nn

from fdftnet import BaselineDetector
from fdftnet.data import ImageSet
from fdftnet.robustness import CORRUPTIONS, LEVELS, corrupt, sweep


class BrightnessDetector(nn.Module):
    """P(fake) grows with mean brightness: an oracle for sets where fakes are brighter."""

    def __init__(self):
        super().__init__()
        self.register_buffer("threshold", torch.tensor(0.5))
        self.w = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):  # (B, 3, H, W) in [0, 1] -> (B, 2) logits
        m = x.mean((1, 2, 3))
        return torch.stack([torch.zeros_like(m), self.w * (m - 0.5)], 1)


def textured_set(n: int = 6, size: int = 32) -> ImageSet:
    """n dark 'real' and n bright 'fake' images with texture, so every corruption changes pixels."""
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 120, (2 * n, 3, size, size), generator=g)
    base[n:] += 120  # fakes are brighter
    return ImageSet(base.to(torch.uint8), torch.tensor([0] * n + [1] * n), [f"i{i}" for i in range(2 * n)])


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corruptions_keep_shape_and_dtype_and_change_pixels(kind):
    x = textured_set().images
    y = corrupt(x, kind, LEVELS[kind][-1], seed=0)
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert (y.int() - x.int()).abs().float().mean() > 1.0  # the strongest level visibly changes the images
    assert torch.equal(y, corrupt(x, kind, LEVELS[kind][-1], seed=0))  # reproducible


def test_identity_levels_and_blur_smooths():
    x = textured_set().images
    assert torch.equal(corrupt(x, "blur", 0), x)
    assert torch.equal(corrupt(x, "downscale", 1), x)
    assert torch.equal(corrupt(x, "noise", 0), x)
    # a blur keeps the mean (up to rounding) and lowers each image's pixel variance
    b = corrupt(x, "blur", 2.0).float()
    assert abs(b.mean() - x.float().mean()) < 1.0
    assert b.var((2, 3)).mean() < 0.5 * x.float().var((2, 3)).mean()
    # a bright dot spreads into a symmetric blob with the same total (up to uint8 rounding)
    dot = torch.zeros(1, 3, 15, 15, dtype=torch.uint8)
    dot[..., 7, 7] = 255
    blob = corrupt(dot, "blur", 1.0)[0, 0].float()
    assert torch.equal(blob, blob.flip(0)) and torch.equal(blob, blob.T) and abs(blob.sum() - 255) < 15
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(x, "sepia", 1)


def test_sweep_on_a_brightness_oracle():
    data = textured_set()
    calls = []
    res = sweep({"oracle": BrightnessDetector(), "untrained": BaselineDetector(backbone="squeezenet").eval()}, data,
                kinds=["blur", "noise"], levels={"blur": [1.0, 3.0], "noise": [10.0]},
                callback=lambda d, t: calls.append((d, t)))
    assert res["n"] == 12 and res["counts"] == {"real": 6, "fake": 6}
    assert list(res["kinds"]) == ["blur", "noise"]
    blur = res["kinds"]["blur"]
    assert blur["levels"] == [None, 1.0, 3.0] and len(blur["auroc"]["untrained"]) == 3
    # brightness survives blur and mild noise, so the oracle stays perfect at every level
    assert blur["auroc"]["oracle"] == [1.0, 1.0, 1.0] and res["kinds"]["noise"]["auroc"]["oracle"] == [1.0, 1.0]
    assert calls[-1] == (4, 4) and len(calls) == 4  # clean + 2 blur + 1 noise


def test_sweep_refuses_bad_arguments():
    data = textured_set(2)
    with pytest.raises(ValueError, match="at least one model"):
        sweep({}, data)
    with pytest.raises(ValueError, match="unknown corruption"):
        sweep({"m": BrightnessDetector()}, data, kinds=["fog"])
    one_class = ImageSet(data.images[:2], torch.tensor([0, 0]), ["a", "b"])
    with pytest.raises(ValueError, match="real and fake"):
        sweep({"m": BrightnessDetector()}, one_class)
