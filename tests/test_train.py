"""Training end to end on generated images: pretrain -> finetune -> evaluate, resume, NaN, events."""
import json
import math

import pytest
import torch

from fdftnet import FDFtNet, load_model
from fdftnet.checkpoint import CheckpointError, read_resume_state
from fdftnet.cli import main as cli_main
from fdftnet.data import load_image_folder
from fdftnet.inference import evaluate
from fdftnet.train import TrainConfig, TrainingError, build_fdftnet, finetune


def _ft_cfg(data, base, out, **kw):
    defaults = dict(stage="finetune", data=str(data), backbone_from=str(base), out=str(out), epochs=8,
                    batch_size=32, patience=8, monitor="val_acc", device="cpu", seed=0, mb_blocks=2)
    return TrainConfig(**{**defaults, **kw})


def test_pretrain_finetune_evaluate_reaches_090(synthetic_images, tiny_baseline_dir, tmp_path):
    test = load_image_folder(synthetic_images, "test")
    base = load_model(tiny_baseline_dir, expect="baseline")
    base_m = evaluate(base, test)
    out = tmp_path / "ft"
    events = list(finetune(_ft_cfg(synthetic_images, tiny_baseline_dir, out, shots=40)))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "step" in kinds
    epochs = [e for e in events if e["type"] == "epoch"]
    assert 1 <= len(epochs) <= 8 and all(math.isfinite(e["train_loss"]) for e in epochs)
    assert events[0]["n_train"] == 80  # 40 shots per class
    model = load_model(out, expect="fdftnet")
    m = evaluate(model, test)
    assert m["acc"] >= 0.9 and m["auroc"] >= 0.9, (m["acc"], m["auroc"], base_m["acc"])
    record = json.loads((out / "training.json").read_text())
    assert record["info"]["base_model"] == str(tiny_baseline_dir)
    assert record["info"]["shots"] == 40 and record["train_config"]["seed"] == 0
    assert record["best_epoch"] == max(epochs, key=lambda e: (e["val_acc"], -e["epoch"]))["epoch"]
    assert 0.0 < model.threshold.item() <= 1.0


def test_finetune_is_reproducible_with_a_seed(synthetic_images, tiny_baseline_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = _ft_cfg(synthetic_images, tiny_baseline_dir, tmp_path / name, epochs=2, shots=16)
        runs.append([e["train_loss"] for e in finetune(cfg) if e["type"] == "epoch"])
    assert runs[0] == runs[1]


def test_resume_continues_where_it_stopped(synthetic_images, tiny_baseline_dir, tmp_path):
    out = tmp_path / "ft"
    run = finetune(_ft_cfg(synthetic_images, tiny_baseline_dir, out, epochs=4, patience=99, shots=16))
    for ev in run:  # cancel after epoch 2 (what the lab's Cancel button does)
        if ev["type"] == "epoch" and ev["epoch"] == 2:
            break
    run.close()
    state, _, _ = read_resume_state(out)
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    with pytest.raises(TrainingError, match="already holds a checkpoint"):
        next(finetune(_ft_cfg(synthetic_images, tiny_baseline_dir, out, epochs=4, shots=16)))
    resumed = list(finetune(_ft_cfg(synthetic_images, tiny_baseline_dir, out, epochs=4, patience=99,
                                    shots=16, resume=True)))
    assert resumed[0]["start_epoch"] == 2
    assert [e["epoch"] for e in resumed if e["type"] == "epoch"] == [3, 4]
    seconds = [h["seconds"] for h in state["history"]] + [e["seconds"] for e in resumed if e["type"] == "epoch"]
    assert resumed[-1]["train_seconds"] == pytest.approx(sum(seconds))  # the epochs before the resume count too
    full = list(finetune(_ft_cfg(synthetic_images, tiny_baseline_dir, tmp_path / "full", epochs=4,
                                 patience=99, shots=16)))
    loss = lambda evs: [round(e["train_loss"], 5) for e in evs if e["type"] == "epoch"][-2:]  # noqa: E731
    assert loss(resumed) == loss(full)  # same batches, same augmentation, same weights


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(synthetic_images, tiny_baseline_dir, tmp_path):
    out = tmp_path / "ft"
    list(finetune(_ft_cfg(synthetic_images, tiny_baseline_dir, out, epochs=1, shots=8)))
    before = (out / "model.safetensors").read_bytes()
    cfg = _ft_cfg(synthetic_images, tiny_baseline_dir, out, epochs=3, shots=8, lr=float("inf"), overwrite=True,
                  optimizer="sgd")
    with pytest.raises(TrainingError, match="became nan"):
        list(finetune(cfg))
    assert (out / "model.safetensors").read_bytes() == before
    assert isinstance(load_model(out), FDFtNet)


def test_finetune_needs_a_baseline_checkpoint(synthetic_images, tiny_baseline_dir, tmp_path):
    ft = tmp_path / "ft"
    list(finetune(_ft_cfg(synthetic_images, tiny_baseline_dir, ft, epochs=1, shots=8)))
    with pytest.raises(Exception, match="needs a baseline"):
        next(finetune(_ft_cfg(synthetic_images, ft, tmp_path / "x", epochs=1)))


def test_config_validation():
    with pytest.raises(ValueError, match="exactly one of data"):
        TrainConfig()
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(data="x", optimizer="rmsprop")
    cfg = TrainConfig(data="x", stage="pretrain", optimizer="sgd")
    assert cfg.train_split == "train" and cfg.lr == 0.3 and cfg.augment is False
    assert TrainConfig(data="x").train_split == "finetune" and TrainConfig(data="x").cutout is True
    with pytest.raises(ValueError, match="backbone_lr is a finetune setting"):
        TrainConfig(data="x", stage="pretrain", backbone_lr=1e-4)


def test_backbone_lr_moves_the_backbone_at_its_own_rate(synthetic_images, tiny_baseline_dir, tmp_path):
    # backbone lr 0: the unfrozen backbone's weights stay those of the baseline while the new layers train
    out = tmp_path / "ft"
    args = ["finetune", "--data", str(synthetic_images), "--backbone-from", str(tiny_baseline_dir), "--no-freeze",
            "--backbone-lr", "0", "--lr", "1e-2", "--epochs", "1", "--shots", "8", "--batch-size", "8",
            "--mb-blocks", "2", "--device", "cpu", "--out", str(out)]
    assert cli_main(args) == 0
    base = load_model(tiny_baseline_dir, expect="baseline").state_dict()
    model = load_model(out, expect="fdftnet")
    assert not model.freeze_backbone and json.loads((out / "training.json").read_text())["train_config"]["backbone_lr"] == 0
    card = (out / "README.md").read_text()
    assert "| backbone learning rate | `0.0` |" in card and "| best epoch | 1 of at most 1 |" in card
    params = dict(model.named_parameters())
    bb = {k: v for k, v in params.items() if k.startswith("backbone.")}
    assert bb and all(torch.equal(v, base[k]) for k, v in bb.items())
    start = dict(build_fdftnet(_ft_cfg(synthetic_images, tiny_baseline_dir, tmp_path / "x"))[0].named_parameters())
    assert any(not torch.equal(v, start[k]) for k, v in params.items() if k.startswith("head."))
    # without it the backbone trains at --lr (the optimizer has one group)
    list(finetune(_ft_cfg(synthetic_images, tiny_baseline_dir, tmp_path / "all", freeze_backbone=False, lr=1e-2,
                          epochs=1, shots=8, batch_size=8)))
    moved = load_model(tmp_path / "all", expect="fdftnet").state_dict()
    assert any(not torch.equal(moved[k], base[k]) for k in bb)


def test_finetune_can_continue_from_a_trained_fdftnet(synthetic_images, tiny_baseline_dir, tmp_path, capsys):
    first = tmp_path / "first"
    list(finetune(_ft_cfg(synthetic_images, tiny_baseline_dir, first, epochs=2, shots=16)))
    weights = (first / "model.safetensors").read_bytes()
    src = load_model(first, expect="fdftnet")
    # architecture settings given for the new run are overridden by the checkpoint's (mb_blocks 2, not 4)
    cfg = _ft_cfg(synthetic_images, None, tmp_path / "second", backbone_from=None, init_from=str(first),
                  freeze_backbone=False, mb_blocks=4, epochs=1, shots=8, seed=3)
    model, info = build_fdftnet(cfg)
    assert info["init_from"] == str(first) and info["base_model"] == str(first)
    assert not model.freeze_backbone and all(p.requires_grad for p in model.backbone.parameters())
    start = model.state_dict()
    assert all(torch.equal(start[k], v) for k, v in src.state_dict().items())  # FTT, MBblockV3, threshold too
    list(finetune(cfg))
    out = load_model(tmp_path / "second", expect="fdftnet")
    record = json.loads((tmp_path / "second" / "training.json").read_text())
    assert out.config["mb_blocks"] == 2 and record["train_config"]["mb_blocks"] == 2
    assert record["train_config"]["init_from"] == str(first) and out.freeze_backbone is False
    changed = [k for k, v in out.state_dict().items() if not torch.equal(v, start[k])]
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("ftt.") for k in changed)
    assert (first / "model.safetensors").read_bytes() == weights  # the starting checkpoint is left as it was
    card = (tmp_path / "second" / "README.md").read_text()
    assert f"fine-tuned further from the FDFtNet `{first}`" in card and "pretrained backbone" not in card
    assert f"fdftnet finetune --init-from {tmp_path / 'second'}" in card

    # the same from the command line; a baseline given to --init-from is a one-line error
    args = ["finetune", "--data", str(synthetic_images), "--epochs", "1", "--shots", "4", "--batch-size", "8",
            "--device", "cpu", "--init-from"]
    assert cli_main(args + [str(tmp_path / "second"), "--out", str(tmp_path / "third")]) == 0
    assert load_model(tmp_path / "third", expect="fdftnet").config["mb_blocks"] == 2
    capsys.readouterr()
    assert cli_main(args + [str(tiny_baseline_dir), "--out", str(tmp_path / "fourth")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs an FDFtNet" in err and len(err.splitlines()) == 1


def test_finetune_needs_exactly_one_starting_checkpoint(synthetic_images, tiny_baseline_dir, tmp_path):
    with pytest.raises(ValueError, match="one starting checkpoint"):
        build_fdftnet(_ft_cfg(synthetic_images, tiny_baseline_dir, tmp_path, init_from=str(tiny_baseline_dir)))
    with pytest.raises(ValueError, match="one starting checkpoint"):
        build_fdftnet(_ft_cfg(synthetic_images, None, tmp_path, backbone_from=None))
    with pytest.raises(CheckpointError, match="needs an FDFtNet"):
        build_fdftnet(_ft_cfg(synthetic_images, None, tmp_path, backbone_from=None, init_from=str(tiny_baseline_dir)))


def test_cpu_training_flushes_subnormal_floats_in_its_thread_and_later_threads(synthetic_images, tiny_baseline_dir,
                                                                               tmp_path):
    import threading

    def survives() -> bool:  # 1e-39 is subnormal in float32: x86 computes it many times slower than a normal float
        return (torch.tensor([1e-39]) * 1.0).item() != 0.0

    torch.set_flush_denormal(False)
    assert survives()
    run = finetune(_ft_cfg(synthetic_images, tiny_baseline_dir, tmp_path / "ft", epochs=1, shots=8))
    assert next(run)["type"] == "start" and not survives()  # set as fit starts, before the first step
    list(run)
    seen = []
    worker = threading.Thread(target=lambda: seen.append(survives()))
    worker.start()
    worker.join()
    assert seen == [False]  # a thread started afterwards (the lab's fine-tunes) inherits it
