"""Shared fixtures: seeding, tiny synthetic real/fake image folders, tiny models, a network tripwire."""
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

DEVICE = os.environ.get("TORCH_DEVICE", "cpu")


def make_face(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A smooth random 'face-like' image: a coloured blob on a gradient, uint8 HxWx3."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.2, 0.35)
    blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2)))
    base = rng.uniform(40, 120, 3) + rng.uniform(-40, 40, 3) * yy[..., None]
    img = base + blob[..., None] * rng.uniform(60, 130, 3) + rng.normal(0, 4, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def add_upsampling_artefact(img: np.ndarray, strength: float = 28.0) -> np.ndarray:
    """The 'fake' cue: a periodic grid every 4 px, like the checkerboard of a transposed-conv generator."""
    size = img.shape[0]
    grid = ((np.arange(size) % 4) < 2).astype(np.float32)
    pattern = (grid[:, None] * grid[None, :]) * 2 - 0.5
    return np.clip(img + strength * pattern[..., None], 0, 255).astype(np.uint8)


def make_image_folder(root: Path, splits: dict[str, int], size: int = 64, seed: int = 0, ext: str = ".png") -> Path:
    """ROOT/SPLIT/{real,fake}/*.png with `n` images per class per split; fakes carry the artefact."""
    rng = np.random.default_rng(seed)
    for split, n in splits.items():
        for label in ("real", "fake"):
            d = root / split / label
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = make_face(rng, size)
                if label == "fake":
                    img = add_upsampling_artefact(img)
                Image.fromarray(img).save(d / f"{label}_{i:04d}{ext}")
    return root


@pytest.fixture
def network_attempts(monkeypatch) -> list:
    """Every DNS lookup or connection the test tries, recorded and refused. A test asserts it stays [] to show
    that an answer is quick because nothing reached for the network (so no retries): a count, not a clock."""
    tried = []

    def refuse(*args, **kwargs):
        tried.append(args)
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return tried


@pytest.fixture(scope="module")
def one_torch_thread():
    """MTCNN runs many small ops: on a busy CPU, 2+ OpenMP threads made it 10x slower than 1."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def seed():
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return 0


@pytest.fixture(scope="session")
def synthetic_images(tmp_path_factory) -> Path:
    """A small learnable dataset: train/finetune/validation/test folders (session-wide, read-only)."""
    root = tmp_path_factory.mktemp("synthetic")
    return make_image_folder(root, {"train": 96, "finetune": 48, "validation": 48, "test": 64})


@pytest.fixture(scope="session")
def tiny_baseline_dir(tmp_path_factory, synthetic_images) -> Path:
    """A squeezenet baseline pretrained for a few epochs on the synthetic train split."""
    from fdftnet.train import TrainConfig, pretrain
    out = tmp_path_factory.mktemp("ckpt") / "base"
    cfg = TrainConfig(stage="pretrain", data=str(synthetic_images), backbone="squeezenet", out=str(out),
                      epochs=12, batch_size=32, patience=12, monitor="val_acc", device="cpu", seed=0)
    for _ in pretrain(cfg):
        pass
    return out
