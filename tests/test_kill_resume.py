"""SIGKILL a CLI fine-tune at seeded random points: after every kill the checkpoint directory loads (or is
not there yet), the resume state reads without raising, temp files are never taken for checkpoint files,
and `--resume` then finishes the run. The kill loop lives in bench/_hostile.py (bench/robustness.py runs
it with more kills).
"""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` without an install

from bench import _hostile as H  # noqa: E402
from conftest import make_image_folder  # noqa: E402
from fdftnet import BaselineDetector  # noqa: E402
from fdftnet.checkpoint import read_json, save_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("killresume")
    data = make_image_folder(root / "data", {"finetune": 16, "validation": 8})
    torch.manual_seed(0)
    # an untrained squeezenet baseline is enough to fine-tune on (and costs no pretraining here)
    base = save_checkpoint(BaselineDetector(backbone="squeezenet"), root / "base")
    return root, data, base


def test_sigkill_then_resume(tiny_run):
    root, data, base = tiny_run
    out = root / "out"
    # 3 kills alternating: just after an epoch's state lands (mid-epoch / mid-save), at a random time after launch
    stats = H.kill_resume_run(data, base, out, kills=3, epochs=6, seed=7, timeout=600,  # a hang guard only
                              log=root / "train.log")
    log = (root / "train.log").read_text()[-3000:]
    assert stats["kills"] >= 1, (stats, log)
    assert stats["checkpoint_load_failures"] == 0 and stats["regressions"] == 0, (stats, log)
    assert stats["resumed_to_completion"] and stats["final_epoch"] == 6, (stats, log)
    record = read_json(out / "training.json")
    assert record["history"] and all(h["epoch"] <= 6 for h in record["history"])
    assert not (out / "last.new").exists() and not (out / "last.old").exists()


def test_checker_flags_a_broken_checkpoint(tmp_path):
    """The check itself is not vacuous: a truncated model file or a stray non-temp file is reported."""
    out = save_checkpoint(BaselineDetector(backbone="squeezenet"), tmp_path / "ck")
    assert H.check_checkpoint_dir(out) == []
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (out / "model.safetensors.partial").write_bytes(b"x")
    problems = H.check_checkpoint_dir(out)
    assert any("load_model" in p for p in problems) and any("non-temp" in p for p in problems)
