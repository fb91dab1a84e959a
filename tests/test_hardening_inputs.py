"""Issue #22.2 and #22.7: what a decode may cost, files that lie about their size or are not files, a resume
state that cannot be read, and a push of weights that do not load.
"""
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` without an install

from bench import _hostile as H  # noqa: E402
from fdftnet import BaselineDetector
from fdftnet.checkpoint import read_resume_state, save_checkpoint
from fdftnet.data import DataError, load_image
from fdftnet.data.images import BudgetError, DecodeBudget
from fdftnet.hub import push
from fdftnet.models import CheckpointError


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg and "Traceback" not in msg, repr(msg)
    return msg


def _jpeg(w: int, h: int, seed: int = 0, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG",
                                                                                                   quality=quality)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# 22.7: lying headers, FIFOs and devices


def test_jpeg_whose_header_claims_more_than_its_data_is_refused(tmp_path):
    for src in (H.lying_jpeg(), tmp_path / "lie.jpg"):
        if not isinstance(src, bytes):
            src.write_bytes(H.lying_jpeg())
        with pytest.raises(DataError, match="truncated") as e:
            load_image(src, name="lie.jpg")
        assert "lie.jpg" in _one_line(e.value)


def test_fifo_and_char_device_are_not_regular_files(tmp_path):
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):  # opening the FIFO would block; /dev/zero would never end
        with pytest.raises(DataError, match="not a regular file") as e:
            load_image(path)
        _one_line(e.value)
    with pytest.raises(DataError, match="empty file"):  # a real empty file is still called that
        (tmp_path / "empty.png").write_bytes(b"")
        load_image(tmp_path / "empty.png")


# ----------------------------------------------------------------------------------------------
# 22.2: a per-request decode budget


def test_budget_refuses_a_big_png_from_its_header(tmp_path):
    data = H.huge_png_header(6324, 6324)  # 40 Mpx: under the CLI's cap, over a server's per-image cap
    budget = DecodeBudget(max_pixels=16_000_000)
    with pytest.raises(DataError, match="too many pixels for this server") as e:
        load_image(data, name="big.png", budget=budget)
    _one_line(e.value)
    assert budget.pixels == 0  # refused before anything was decoded or charged


def test_budget_totals_stop_the_request():
    png = io.BytesIO()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(png, "PNG")
    budget = DecodeBudget(total_pixels=25_000, max_images=10)
    load_image(png.getvalue(), budget=budget)
    load_image(png.getvalue(), budget=budget)
    with pytest.raises(BudgetError, match="more than 0.025 Mpx") as e:
        load_image(png.getvalue(), name="third.png", budget=budget)
    _one_line(e.value)
    budget = DecodeBudget(max_images=2)
    for _ in range(2):
        load_image(png.getvalue(), budget=budget)
    with pytest.raises(BudgetError, match="more than 2 images"):
        load_image(png.getvalue(), budget=budget)


def test_big_jpeg_is_decoded_at_the_size_needed():
    data = _jpeg(4000, 3000, quality=75)  # a 12 Mpx phone photo
    budget = DecodeBudget()
    arr = load_image(data, budget=budget)
    assert arr.shape == (64, 64, 3)
    assert budget.pixels <= 500 * 375  # DCT-scaled by 1/8 while decoding, not 12 Mpx
    full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC,
                                                                          box=(500, 0, 3500, 3000)))
    assert np.abs(arr.astype(int) - full.astype(int)).mean() < 8  # the same picture


# ----------------------------------------------------------------------------------------------
# 22.7: --resume with an unreadable last/, push of weights that do not load


def _resume_dir(tmp_path):
    from fdftnet.checkpoint import save_resume_state
    model = BaselineDetector(backbone="squeezenet")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    save_resume_state(tmp_path / "run", model, opt, None, {"epoch": 3, "history": []})
    return tmp_path / "run"


@pytest.mark.parametrize("damage", ["state_json", "weights", "chmod"])
def test_unreadable_resume_state_is_an_error_not_a_restart(damage, tmp_path):
    out = _resume_dir(tmp_path)
    assert read_resume_state(out)[0]["epoch"] == 3
    last = out / "last"
    if damage == "state_json":
        (last / "state.json").write_text("{trunc")
    elif damage == "weights":
        (last / "model.safetensors").write_bytes(b"\0" * 10)
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads any folder")
        last.chmod(0)
    try:
        with pytest.raises(CheckpointError, match="cannot resume") as e:
            read_resume_state(out)
        _one_line(e.value)
    finally:
        last.chmod(0o755)
    assert read_resume_state(tmp_path / "fresh") is None  # no last/ at all: a fresh start, as before


def test_resume_through_training_says_so(synthetic_images, tmp_path):
    from fdftnet.train import TrainConfig, pretrain
    out = tmp_path / "run"
    cfg = dict(stage="pretrain", data=str(synthetic_images), backbone="squeezenet", out=str(out), epochs=1,
               batch_size=32, precise_bn=0)
    list(pretrain(TrainConfig(**cfg)))
    (out / "last" / "state.json").write_text("{trunc")
    with pytest.raises(CheckpointError, match="cannot resume"):
        list(pretrain(TrainConfig(**{**cfg, "resume": True, "epochs": 2})))


def test_push_refuses_weights_that_do_not_load(tmp_path):
    d = save_checkpoint(BaselineDetector(backbone="squeezenet"), tmp_path / "ck")
    good = {k: v.clone() for k, v in load_file(str(d / "model.safetensors")).items()}  # not mmap-backed
    for name, state in (("truncated", None), ("missing_tensor", dict(list(good.items())[1:])),
                        ("nan", {k: v.clone().fill_(float("nan")) if v.is_floating_point() else v
                                 for k, v in good.items()})):
        if state is None:
            (d / "model.safetensors").write_bytes(b"\x08" + b"\0" * 20)
        else:
            save_file(state, str(d / "model.safetensors"))
        with pytest.raises(CheckpointError) as e:
            push(d, "user/model", dry_run=True)
        _one_line(e.value)
    save_file(good, str(d / "model.safetensors"))
    assert json.loads((d / "config.json").read_text())["model_type"] == "baseline"
    assert push(d, "user/model", dry_run=True).files  # the good one still plans

