"""bench.reselect: a finished run's last epoch becomes its checkpoint only when it is best by the new monitor and its
weights are provably that epoch's."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.reselect import reselect
from fdftnet import load_model
from fdftnet.train import TrainConfig, pretrain


@pytest.fixture
def run(synthetic_images, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(stage="pretrain", data=str(synthetic_images), backbone="squeezenet", out=str(out), epochs=2,
                      batch_size=32, patience=5, monitor="val_loss", device="cpu", seed=0, limit=24, precise_bn=0)
    list(pretrain(cfg))
    return out


def _make_last_best(out, key="val_auroc"):
    """Rewrite the run's history so its last epoch is the best by `key` (the weights stay the real ones)."""
    path = out / "last" / "state.json"
    state = json.loads(path.read_text())
    for h in state["history"]:
        h[key] = 0.5
    state["history"][-1][key] = 0.9
    path.write_text(json.dumps(state))


def test_last_epoch_becomes_the_checkpoint(run):
    _make_last_best(run)
    res = reselect(run, "val_auroc")
    assert res["to_epoch"] == 2
    saved, last = load_file(str(run / "model.safetensors")), load_file(str(run / "last" / "model.safetensors"))
    for k, v in last.items():
        if k != "threshold":
            assert torch.equal(saved[k], v)
    training = json.loads((run / "training.json").read_text())
    assert training["best_epoch"] == 2 and training["train_config"]["monitor"] == "val_auroc"
    assert training["reselected"]["from_monitor"] == "val_loss"
    assert abs(float(load_model(run).threshold) - res["threshold"]) < 1e-6


def test_refuses_when_the_last_epoch_is_not_the_best(run):
    state = json.loads((run / "last" / "state.json").read_text())
    for h in state["history"]:
        h["val_auroc"] = 0.5
    state["history"][0]["val_auroc"] = 0.9
    (run / "last" / "state.json").write_text(json.dumps(state))
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="best epoch by val_auroc is 1, not the last"):
        reselect(run, "val_auroc")
    assert (run / "model.safetensors").read_bytes() == before


def test_refuses_weights_that_are_not_the_last_epochs(run):
    _make_last_best(run)
    weights = load_file(str(run / "last" / "model.safetensors"))
    save_file({k: (v + 0.05 if v.is_floating_point() and v.ndim > 1 else v) for k, v in weights.items()},
              str(run / "last" / "model.safetensors"))
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="not re-selected"):
        reselect(run, "val_auroc")
    assert (run / "model.safetensors").read_bytes() == before
