"""Tests for fdftnet.data: decoding, folders, Hugging Face datasets, shots, augmentation, batching.

All data is built in tmp_path with PIL; no network (HF_*_OFFLINE=1). Runs in a few seconds on CPU.
"""
import io
import os
import struct
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile

from fdftnet.data import (
    CLASS_NAMES, FAKE, REAL, AugmentConfig, Batches, DataError, ImageSet, augment_batch, cutout,
    iter_hf_dataset, list_image_folder, load_hf_dataset, load_image, load_image_folder,
    random_affine, sample_cutout_boxes, sample_shots, to_tensor,
)


def solid(value, size=64):
    """A size x size RGB image whose pixels are all `value` (an int or an RGB tuple)."""
    rgb = (value,) * 3 if isinstance(value, int) else value
    return Image.new("RGB", (size, size), rgb)


def make_tree(root, split, n_real, n_fake, start=0):
    """ROOT/SPLIT/{real,fake}/NNN.png, each image a distinct solid gray; returns {path: value}."""
    values = {}
    v = start
    for cls, n in (("real", n_real), ("fake", n_fake)):
        os.makedirs(root / split / cls, exist_ok=True)
        for i in range(n):
            path = root / split / cls / f"{i:03d}.png"
            solid(v).save(path)
            values[str(path)] = v
            v += 1
    return values


def png_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# load_image


def test_load_image_sources_and_resize(tmp_path):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8))
    path = tmp_path / "a.png"
    img.save(path)
    a = load_image(path)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    for src in (str(path), path.read_bytes(), img):
        np.testing.assert_array_equal(load_image(src), a)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_image(f), a)
        assert not f.closed  # the caller's file stays open
    same = np.asarray(solid((1, 2, 3)))
    np.testing.assert_array_equal(load_image(Image.fromarray(same)), same)  # no resampling
    x = to_tensor(a[None])
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32 and float(x.max()) <= 1


def test_load_image_modes(tmp_path):
    la = Image.new("LA", (16, 16), (200, 255))
    la.paste((200, 0), (0, 0, 8, 16))  # left half fully transparent
    out = load_image(png_bytes(la), size=16)
    assert (out[:, :8] == 0).all() and (out[:, 8:] == 200).all()  # composited on black

    assert (load_image(Image.new("L", (16, 16), 100), size=16) == 100).all()

    rgba = Image.new("RGBA", (16, 16), (10, 20, 30, 255))
    rgba.paste((250, 250, 250, 0), (0, 0, 16, 8))
    out = load_image(png_bytes(rgba), size=16)
    assert (out[:8] == 0).all() and (out[8:] == (10, 20, 30)).all()

    p = Image.new("P", (16, 16), 1)
    p.putpalette([255, 255, 255, 255, 0, 0] + [0] * 762)  # index 0 white (transparent), 1 red
    p.paste(0, (0, 0, 16, 4))
    out = load_image(png_bytes(p, transparency=0), size=16)
    assert (out[:4] == 0).all() and (out[4:] == (255, 0, 0)).all()

    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(cmyk, quality=95)
    r, g, b = load_image(cmyk, size=16).reshape(-1, 3).mean(0)
    assert r > 230 and g < 25 and b < 25

    ramp = np.linspace(0, 65535, 256).round().reshape(16, 16)
    i16 = Image.fromarray(ramp.astype(np.uint16))  # I;16, 0..65535
    path16 = tmp_path / "i16.png"
    i16.save(path16)
    with Image.open(path16) as im:
        assert im.mode == "I;16"
    out = load_image(path16, size=16)
    assert out.max() == 255 and out.min() == 0 and (out[..., 0] == out[..., 2]).all()
    np.testing.assert_array_equal(out[..., 0], np.rint(ramp / 257).astype(np.uint8))

    gif = tmp_path / "anim.gif"
    solid((255, 0, 0), 16).save(gif, save_all=True, append_images=[solid((0, 0, 255), 16)],
                                duration=100, loop=0)
    r, g, b = load_image(gif, size=16).reshape(-1, 3).mean(0)
    assert r > 240 and b < 15  # first frame


def test_load_image_exif_orientation(tmp_path):
    # stored 48 wide x 24 tall: red | green | blue thirds. Orientation 6 = rotate 90° CW to
    # display, so red ends on top; the centre square crop then has red rows at the top.
    a = np.zeros((24, 48, 3), np.uint8)
    a[:, :16, 0] = a[:, 16:32, 1] = a[:, 32:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(a).save(path, exif=exif.tobytes(), quality=95)
    out = load_image(path, size=24).astype(int)
    assert out[0, 12, 0] > 200 and out[0, 12, 1] < 60  # top middle: red
    assert out[23, 12, 2] > 200  # bottom middle: blue
    assert out[12, 0, 1] > 200 and out[12, 0, 0] < 60  # left middle: green (not red: rotated)


def test_load_image_rejects_bad_input(tmp_path, monkeypatch):
    decoded = []  # ImageFile.load calls: a file refused from its header must never reach the decoder
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self))
    cases = {
        "tiny.png": (png_bytes(solid(0, 1)), "too small"),
        "empty.png": (b"", "empty"),
        "noise.png": (np.random.default_rng(0).bytes(2000), "not an image"),
        "page.png": (b"<!DOCTYPE html><html><body>404</body></html>", "not an image"),
    }
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)
    big = png_bytes(Image.fromarray(noise))
    cases["cut.png"] = (big[: len(big) * 6 // 10], "corrupt or truncated")
    for w, h in ((30000, 30000), (7000, 7000)):  # PIL's own bomb error, and our 40 MP check
        ihdr = struct.pack(">II", w, h) + big[24:29]  # width, height, then depth/colour/...
        crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        cases[f"bomb{w}.png"] = (big[:16] + ihdr + crc + big[33:], "too many pixels")
    for name, (data, msg) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        decoded.clear()
        with pytest.raises(DataError, match=msg) as e:
            load_image(path)
        assert name in str(e.value) and "\n" not in str(e.value)
        assert bool(decoded) == (name == "cut.png"), name  # only the truncated file gets as far as decoding


# ----------------------------------------------------------------------------------------------
# folders


def test_image_folder_round_trip(tmp_path):
    values = make_tree(tmp_path, "train", 3, 2)
    data = load_image_folder(tmp_path, "train")
    assert len(data) == 5 and data.labels.tolist() == [REAL] * 3 + [FAKE] * 2
    assert data.images.shape == (5, 3, 64, 64) and data.images.dtype == torch.uint8
    for img, path in zip(data.images, data.paths):
        assert (img == values[path]).all()
    assert data.counts() == {"real": 3, "fake": 2} and CLASS_NAMES == ("real", "fake")
    sub = data.subset([4, 0])
    assert sub.labels.tolist() == [FAKE, REAL] and sub.paths == [data.paths[4], data.paths[0]]


def test_image_folder_limit(tmp_path):
    make_tree(tmp_path, "train", 6, 5)
    pairs = list_image_folder(tmp_path, "train", limit=2)
    assert [lab for _, lab in pairs] == [REAL, REAL, FAKE, FAKE]
    assert pairs == list_image_folder(tmp_path, "train", limit=2)  # deterministic
    assert pairs != list_image_folder(tmp_path, "train", limit=2, seed=1)
    assert len(list_image_folder(tmp_path, "train", limit=100)) == 11


def test_image_folder_errors(tmp_path):
    make_tree(tmp_path, "train", 2, 2)
    with pytest.raises(DataError, match="no folder .*test; found splits: train"):
        list_image_folder(tmp_path, "test")
    with pytest.raises(DataError, match="no dataset folder"):
        list_image_folder(tmp_path / "nope", "train")
    os.makedirs(tmp_path / "val" / "real")
    solid(0).save(tmp_path / "val" / "real" / "a.png")
    with pytest.raises(DataError, match="expects .*real and .*fake; missing fake"):
        list_image_folder(tmp_path, "val")
    os.makedirs(tmp_path / "val" / "fake")
    (tmp_path / "val" / "fake" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images in .*fake"):
        list_image_folder(tmp_path, "val")

    bad = tmp_path / "train" / "fake" / "zz_bad.png"
    bad.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(DataError, match="zz_bad.png: not an image"):
        load_image_folder(tmp_path, "train")
    data = load_image_folder(tmp_path, "train", on_error="skip")
    assert len(data) == 4 and data.skipped == [str(bad)]


# ----------------------------------------------------------------------------------------------
# Hugging Face datasets


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_hf_imagefolder_matches_folder(tmp_path, offline):
    root, cache = tmp_path / "ds", str(tmp_path / "cache")
    make_tree(root, "finetune", 3, 4)
    ref = load_image_folder(root, "finetune")
    hf = load_hf_dataset(root, "finetune", cache_dir=cache)  # non-standard split name
    key = lambda d: sorted((p, int(lab), d.images[i].sum().item())  # noqa: E731
                           for i, (p, lab) in enumerate(zip(d.paths, d.labels)))
    assert key(hf) == key(ref)

    streamed = sorted((int(a[0, 0, 0]), lab) for a, lab in
                      iter_hf_dataset(root, "finetune", cache_dir=cache))
    assert streamed == sorted((int(img[0, 0, 0]), int(lab)) for img, lab in
                              zip(ref.images, ref.labels))
    halves = [list(iter_hf_dataset(root, "finetune", cache_dir=cache, num_shards=2,
                                   shard_index=k)) for k in (0, 1)]
    assert sorted(int(a[0, 0, 0]) for h in halves for a, _ in h) == [v for v, _ in streamed]
    assert load_hf_dataset(root, "finetune", limit=2, cache_dir=cache).counts() == \
        {"real": 2, "fake": 2}
    assert load_hf_dataset(root, "finetune", streaming=True, cache_dir=cache).counts() == \
        {"real": 3, "fake": 4}

    with pytest.raises(DataError, match="no column 'target'; columns: image, label"):
        load_hf_dataset(root, "finetune", label_column="target", cache_dir=cache)
    with pytest.raises(DataError, match="neither real .*found: fake, real"):
        load_hf_dataset(root, "finetune", real_label="genuine", cache_dir=cache)
    with pytest.raises(DataError, match="found splits: finetune"):
        load_hf_dataset(root, "test", cache_dir=cache)


# ----------------------------------------------------------------------------------------------
# few-shot sampling


def test_sample_shots():
    labels = torch.tensor([REAL] * 30 + [FAKE] * 12)
    idx = sample_shots(labels, 10, seed=0)
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    assert (labels[idx] == REAL).sum() == 10 and (labels[idx] == FAKE).sum() == 10
    assert torch.equal(idx, sample_shots(labels, 10, seed=0))
    assert not torch.equal(idx, sample_shots(labels, 10, seed=1))
    assert torch.equal(sample_shots(labels, None, seed=0), torch.arange(42))
    with pytest.raises(DataError, match="asked for 13 shots per class but fake has only 12"):
        sample_shots(labels, 13, seed=0)


# ----------------------------------------------------------------------------------------------
# Cutout and augmentation


def test_cutout_boxes_follow_spec():
    B, H, W, alpha, beta = 4000, 32, 32, 3, 10
    boxes = sample_cutout_boxes(B, H, W, alpha, beta, 4, torch.Generator().manual_seed(0))
    raw = sample_cutout_boxes(B, H, W, alpha, beta, 4, torch.Generator().manual_seed(0), clip=False)
    used = raw[..., 2] > raw[..., 0]  # (B, α)
    nonempty = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    assert torch.equal(used, nonempty)  # clipped holes never vanish: centres are inside
    counts = used.sum(1)
    assert set(counts.tolist()) == {0, 1, 2, 3}
    assert ((counts == 0).float().mean() - 0.25).abs() < 0.05  # U{0..α}
    side_y, side_x = (raw[..., 2] - raw[..., 0])[used], (raw[..., 3] - raw[..., 1])[used]
    assert torch.equal(side_y, side_x) and set(side_y.tolist()) == set(range(4, 4 * beta + 1, 4))
    assert boxes.min() >= 0 and boxes[..., [2]].max() <= H and boxes[..., [3]].max() <= W

    x = torch.rand(B // 10, 3, H, W) + 0.5  # no zeros before Cutout
    out = cutout(x, alpha, beta, 4, torch.Generator().manual_seed(0))
    b = sample_cutout_boxes(  # the boxes `cutout` drew: same seed, same batch size
        B // 10, H, W, alpha, beta, 4, torch.Generator().manual_seed(0))
    inside = torch.zeros(B // 10, H, W, dtype=torch.bool)
    for i, j in zip(*torch.nonzero(b[..., 2] > b[..., 0], as_tuple=True)):
        y0, x0, y1, x1 = b[i, j].tolist()
        inside[i, y0:y1, x0:x1] = True
    assert (out[inside[:, None].expand_as(out)] == 0).all()
    assert torch.equal(out[~inside[:, None].expand_as(out)], x[~inside[:, None].expand_as(x)])
    assert cutout(x, 0, beta, 4, torch.Generator()) is x  # α = 0: untouched


def test_augment_batch_basics():
    x = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    cfg = AugmentConfig()
    a = augment_batch(x, cfg, torch.Generator().manual_seed(3), cutout=True)
    assert a.shape == x.shape and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, augment_batch(x, cfg, torch.Generator().manual_seed(3), cutout=True))
    assert not torch.equal(a, augment_batch(x, cfg, torch.Generator().manual_seed(4), cutout=True))
    assert torch.equal(augment_batch(x, None, torch.Generator()), x.float() / 255)


def test_degrade_changes_some_images_reproducibly_and_is_off_by_default():
    from fdftnet.data.augment import degrade
    x = torch.rand(16, 3, 64, 64)
    g = torch.Generator().manual_seed(0)
    assert degrade(x, AugmentConfig(), g) is x and torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())
    strong = AugmentConfig(colour_p=0.5, blur_p=0.3, jpeg_p=0.5)
    a = degrade(x, strong, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, degrade(x, strong, torch.Generator().manual_seed(1)))
    changed = (a != x).flatten(1).any(1)
    assert changed.any() and not changed.all()  # each change has its probability: some images are left as they are
    blurred = degrade(x, AugmentConfig(blur_p=1.0, blur_sigma=(1.0, 1.0)), g)
    assert blurred.std() < 0.6 * x.std()  # noise smoothed
    jpeg = degrade(x, AugmentConfig(jpeg_p=1.0, jpeg_quality=(10, 10)), g)
    assert 0.02 < (jpeg - x).abs().mean() < 0.5 and torch.equal(jpeg * 255, (jpeg * 255).round())  # re-quantised
    with pytest.raises(ValueError, match="jpeg_quality"):
        AugmentConfig(jpeg_quality=(0, 50))


def test_hflip_only():
    x = torch.rand(32, 3, 8, 8)
    cfg = AugmentConfig(shift_px=0, rotation_deg=0, zoom=0, hflip=True)
    out = random_affine(x, cfg, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert (same | flipped).all() and same.any() and flipped.any()


def test_rotation_zoom_keep_the_centre():
    x = torch.rand(16, 1, 9, 9)
    cfg = AugmentConfig(shift_px=0, rotation_deg=30, zoom=0.2, hflip=False)
    out = random_affine(x, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out[..., 4, 4], x[..., 4, 4], atol=1e-5)  # both act about the centre
    assert not torch.allclose(out, x, atol=1e-3)


def test_shift_only_moves_at_most_2px():
    x = torch.rand(32, 3, 16, 16)
    cfg = AugmentConfig(shift_px=2, rotation_deg=0, zoom=0, hflip=False)
    out = random_affine(x, cfg, torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")  # edge replication = Keras fill "nearest"
    shifts = set()
    for i in range(len(x)):
        match = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.allclose(out[i], padded[i, :, dy:dy + 16, dx:dx + 16], atol=1e-5)]
        assert len(match) == 1, f"sample {i} is not an integer shift of ≤ 2 px"
        shifts.add(match[0])
    assert len(shifts) > 5  # several different shifts were drawn


# ----------------------------------------------------------------------------------------------
# batching


def toy_set(n=10):
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 3, 8, 8).clone()
    return ImageSet(images, torch.arange(n) % 2, [f"img{i}" for i in range(n)])


def epoch_ids(loader):
    return [int(v) for x, _ in loader for v in (x[:, 0, 0, 0] * 255).round()]


def test_batches_cover_reproduce_and_vary():
    data = toy_set()
    loader = Batches(data, 4, shuffle=True, seed=7)
    assert len(loader) == 3 and len(Batches(data, 4, drop_last=True)) == 2
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    for x, y in batches:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(y, ((x[:, 0, 0, 0] * 255).round().long() % 2))
    loader.set_epoch(0)
    e0 = epoch_ids(loader)  # set_epoch(0) replays the first epoch
    assert e0 == [int(v) for x, _ in batches for v in (x[:, 0, 0, 0] * 255).round()]
    assert sorted(e0) == list(range(10))
    e1 = epoch_ids(loader)  # next iteration = epoch 1
    assert sorted(e1) == list(range(10)) and e1 != e0
    again = Batches(data, 4, shuffle=True, seed=7)
    again.set_epoch(1)
    assert epoch_ids(again) == e1
    assert epoch_ids(Batches(data, 4, shuffle=False)) == list(range(10))

    aug = dict(augment=AugmentConfig(cutout_scale=2), cutout=True, seed=1)
    a, b = Batches(data, 5, **aug), Batches(data, 5, **aug)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))
