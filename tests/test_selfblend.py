"""Self-blended pseudo-fakes (fdftnet/data/selfblend.py) and reals-only training, on generated faces."""
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import make_face, make_image_folder
from fdftnet import load_model
from fdftnet.cli import main as cli_main
from fdftnet.data import (FAKE, REAL, AugmentConfig, Batches, ImageSet, PseudoFakeBatches, SelfBlendConfig, face_mask,
                          load_image_folder, pseudo_fake_set, self_blend, self_blend_arrays)
from fdftnet.data.images import DataError
from fdftnet.inference import evaluate
from fdftnet.train import TrainConfig, load_data, pretrain


def _faces(n=8, seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([make_face(rng) for _ in range(n)])).permute(0, 3, 1, 2).contiguous()


def _gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_same_seed_same_pseudo_fakes_other_seed_other():
    x = _faces()
    a, b, c = (self_blend(x, generator=_gen(s)) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_shapes_dtypes_and_range(dtype):
    x = _faces(5)
    x = x if dtype == torch.uint8 else x.float() / 255
    out, mask = self_blend(x, generator=_gen(), return_mask=True)
    assert out.shape == (5, 3, 64, 64) and out.dtype == torch.float32
    assert mask.shape == (5, 1, 64, 64) and mask.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1 and out.device == x.device


def test_uint8_and_float_inputs_give_the_same_fakes():
    x = _faces(4)
    assert torch.allclose(self_blend(x, generator=_gen()), self_blend(x.float() / 255, generator=_gen()), atol=1e-6)


def test_mask_is_inside_the_image_and_soft():
    m = face_mask(64, 64, 64, generator=_gen())
    assert m.min() >= 0 and m.max() <= 1
    corners = torch.stack([m[..., :6, :6], m[..., :6, -6:], m[..., -6:, :6], m[..., -6:, -6:]])
    assert corners.max() < 1e-3  # a face, not the frame
    centre = m[..., 24:40, 24:40].mean((1, 2, 3))  # (B,)
    ratios = torch.tensor(SelfBlendConfig().blend_ratios)
    assert (centre > 0.2).all() and torch.isin(m.amax((1, 2, 3)).round(decimals=2), ratios).all()
    soft = ((m > 0.02) & (m < m.amax((1, 2, 3), keepdim=True) - 0.02)).float().mean()
    assert 0.03 < soft < 0.5  # a blurred edge: neither a hard step nor a blur over everything
    assert 0.2 < (m > 0.01).float().mean() < 0.8  # an ellipse, not a dot and not the whole crop


def test_blend_changes_the_image_mostly_inside_the_mask():
    x = _faces(16)
    out, mask = self_blend(x, generator=_gen(), return_mask=True)
    diff = (out - x.float() / 255).abs().mean(1, keepdim=True)  # (B, 1, H, W)
    # where the target was left as is (the source was the changed copy), every change lies in the mask
    outside = diff[mask < 1e-3]
    inside = diff[mask > 0.5]
    assert inside.mean() > 2 * outside.mean()
    per_image_out = (diff * (mask < 1e-3)).sum((1, 2, 3)) / (mask < 1e-3).sum((1, 2, 3))
    assert (per_image_out < 1e-4).sum() >= 3  # about half the images keep their outside (up to the 1e-3 mask tail)
    assert (diff.mean((1, 2, 3)) > 1e-3).all()  # and every image is changed somewhere


def test_landmarks_place_the_mask():
    B = 4
    left = torch.tensor([[10.0, 12], [22, 12], [16, 18], [11, 24], [21, 24]]).expand(B, 5, 2)
    m = face_mask(B, 64, 64, generator=_gen(), landmarks=left)
    cols = m.sum((1, 2))  # (B, W)
    centre_x = (cols * torch.arange(64)).sum(1) / cols.sum(1)
    assert (centre_x < 28).all()  # follows the landmarks to the left, away from the default centre 32


def test_arrays_for_display():
    rng = np.random.default_rng(0)
    reals = [make_face(rng) for _ in range(3)]
    fakes = self_blend_arrays(reals, n=7, seed=3)
    assert len(fakes) == 7 and all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in fakes)
    again = self_blend_arrays(reals, n=7, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(fakes, again))
    with pytest.raises(ValueError, match="no real images"):
        self_blend_arrays([], n=2)


def test_config_is_json_able_and_checked():
    cfg = SelfBlendConfig(blend_ratios=[1.0], edge_sigma=[1, 2])
    d = json.loads(json.dumps(cfg.to_dict()))
    assert SelfBlendConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown self-blend settings"):
        SelfBlendConfig.from_dict({"blur": 1})
    with pytest.raises(ValueError):
        SelfBlendConfig(blend_ratios=(0.0,))


def _set(n_real, n_fake) -> ImageSet:
    x = _faces(n_real + n_fake)
    y = torch.tensor([REAL] * n_real + [FAKE] * n_fake)
    return ImageSet(x, y, [f"i{i}" for i in range(len(y))])


def test_reals_only_batches_pair_each_real_with_a_self_blend():
    data = _set(12, 4)
    wrapped = PseudoFakeBatches(Batches(data, 8, seed=0), reals_only=True, seed=0)
    seen = []
    for x, y in wrapped:
        n = len(y) // 2
        assert (y[:n] == REAL).all() and (y[n:] == FAKE).all() and x.shape[0] == 2 * n
        seen.append(n)
    assert sum(seen) == 12  # every real, no real fake
    wrapped.set_epoch(0)
    first = [x for x, _ in wrapped]
    wrapped.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(first, (x for x, _ in wrapped)))


def test_training_blends_lie_on_the_8bit_grid_of_the_reals():
    # off-grid values would tell every pseudo-fake from every real (and validation's blends are saved as uint8)
    # nor would reals resampled off it by a zoom: every image of the batch is rounded
    zoom = AugmentConfig(shift_px=0, zoom=0.2, cutout_holes=0)
    zoomed, _ = next(iter(Batches(_set(16, 16), 8, augment=zoom, seed=0)))
    assert not torch.equal(zoomed * 255, (zoomed * 255).round())
    for reals_only in (True, False):
        for aug in (None, zoom):
            for x, y in PseudoFakeBatches(Batches(_set(16, 16), 8, augment=aug, seed=0), reals_only=reals_only,
                                          ratio=1.0, seed=0):
                assert torch.equal(x * 255, (x * 255).round()) and len(x) == len(y)


def test_mixed_batches_replace_a_share_of_the_fakes():
    data = _set(64, 64)
    plain = list(Batches(data, 32, seed=0))
    mixed = list(PseudoFakeBatches(Batches(data, 32, seed=0), reals_only=False, ratio=0.5, seed=0))
    replaced = total = 0
    for (xa, ya), (xb, yb) in zip(plain, mixed):
        assert torch.equal(ya, yb) and torch.equal(xa[ya == REAL], xb[yb == REAL])  # reals untouched
        fake = ya == FAKE
        replaced += (xa[fake] != xb[fake]).flatten(1).any(1).sum().item()
        total += fake.sum().item()
    assert 0.3 < replaced / total < 0.7


def test_pseudo_validation_set_is_fixed():
    reals = _set(6, 0)
    a, b = pseudo_fake_set(reals, seed=5), pseudo_fake_set(reals, seed=5)
    assert a.counts() == {"real": 6, "fake": 6} and torch.equal(a.images, b.images)
    assert all(p.startswith("self-blend:") for p in a.paths[6:])


@pytest.fixture(scope="module")
def reals_only_folder(tmp_path_factory):
    """train/ and validation/ with real/ only; test/ with both (tests score on real fakes)."""
    root = make_image_folder(tmp_path_factory.mktemp("realsonly"), {"train": 24, "validation": 8, "test": 8})
    for split in ("train", "validation"):
        shutil.rmtree(root / split / "fake")
    return root


def test_a_split_with_only_real_loads_when_asked(reals_only_folder):
    with pytest.raises(DataError, match="missing fake"):
        load_image_folder(reals_only_folder, "train")
    data = load_image_folder(reals_only_folder, "train", require_fake=False)
    assert data.counts() == {"real": 24, "fake": 0}


def test_reals_only_pretrain_writes_a_checkpoint_that_loads_and_evaluates(reals_only_folder, tmp_path, capsys):
    out = tmp_path / "sbi"
    code = cli_main(["pretrain", "--data", str(reals_only_folder), "--backbone", "shallownetv3", "--reals-only",
                     "--pseudo-fakes", "self-blend", "--out", str(out), "--epochs", "2", "--batch-size", "8",
                     "--precise-bn", "0", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "validation split validation has no fakes" in printed and "self-blended" in printed
    model = load_model(out, expect="baseline")
    m = evaluate(model, load_image_folder(reals_only_folder, "test"))
    assert m["n"] == 16 and 0 <= m["auroc"] <= 1
    record = json.loads((out / "training.json").read_text())
    assert record["train_config"]["reals_only"] and record["train_config"]["pseudo_fakes"] == "self-blend"
    assert record["info"]["pseudo_validation"] and record["info"]["train_counts"] == {"real": 24, "fake": 0}
    assert record["info"]["val_counts"] == {"real": 8, "fake": 8}
    card = (out / "README.md").read_text()  # the model card says what its fakes and validation were
    assert "| pseudo-fakes | self-blend: the whole fake class (reals only) |" in card
    assert "self-blended pseudo-fakes made once" in card


def test_reals_only_ignores_real_fakes_and_holds_out_reals(synthetic_images):
    cfg = TrainConfig(stage="pretrain", data=str(synthetic_images), pseudo_fakes="self-blend", reals_only=True,
                      holdout=10, val_split=None, shots=20)
    train, val = load_data(cfg)
    assert train.counts() == {"real": 20, "fake": 0}
    assert val.counts() == {"real": 10, "fake": 10} and all(p.startswith("self-blend:") for p in val.paths[10:])
    mixed = TrainConfig(stage="pretrain", data=str(synthetic_images), pseudo_fakes="self-blend")
    _, val = load_data(mixed)
    assert not any(p.startswith("self-blend:") for p in val.paths)  # real fakes exist: validated on them


@pytest.mark.parametrize("argv, words", [
    (["--reals-only"], "needs pseudo-fakes"),
    (["--pseudo-ratio", "0.3"], "--pseudo-ratio"),
    (["--pseudo-fakes", "self-blend", "--reals-only", "--pseudo-ratio", "0.3"], "--pseudo-ratio"),
    (["--pseudo-fakes", "self-blend", "--pseudo-ratio", "1.5"], "pseudo_ratio must be in [0, 1]"),
])
def test_bad_flag_combinations_are_one_line(reals_only_folder, tmp_path, capsys, argv, words):
    code = cli_main(["pretrain", "--data", str(reals_only_folder), "--backbone", "shallownetv3",
                     "--out", str(tmp_path / "x"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err, err


def test_pseudo_fakes_need_fakes_or_reals_only(reals_only_folder, tmp_path, capsys):
    code = cli_main(["pretrain", "--data", str(reals_only_folder), "--backbone", "shallownetv3",
                     "--pseudo-fakes", "self-blend", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "missing fake" in err
