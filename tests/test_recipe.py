"""Training-recipe options of issue #23: layer-wise lr decay, a frozen warm-up, an EMA of the weights, mixup/cutmix."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from fdftnet import BaselineDetector, FDFtNet, load_model
from fdftnet.card import write_model_card
from fdftnet.cli import main as cli_main
from fdftnet.optim import layer_depths, make_optimizer, param_groups
from fdftnet.train import TrainConfig, finetune, pretrain


def _cfg(data, out, **kw):
    defaults = dict(stage="pretrain", data=str(data), backbone="squeezenet", out=str(out), epochs=2, batch_size=16,
                    limit=16, precise_bn=0, device="cpu", seed=0, patience=9)
    return TrainConfig(**{**defaults, **kw})


def test_layer_decay_gives_each_layer_of_a_timm_backbone_its_lr():
    model = BaselineDetector(backbone="efficientnet_lite0")
    cfg = TrainConfig(stage="pretrain", data="x", backbone="efficientnet_lite0", lr=1e-3, layer_decay=0.5)
    groups = param_groups(model, cfg)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # every parameter exactly once
    head = {id(p) for p in model.backbone.fc.parameters()}
    assert {id(p) for p in groups[0]["params"]} == head and "lr" not in groups[0]  # the classifier at cfg.lr
    lr_of = {id(p): g.get("lr", cfg.lr) for g in groups for p in g["params"]}
    depth, n = layer_depths(model.backbone)
    assert n == 17 and lr_of[id(model.backbone.body.conv_head.weight)] == pytest.approx(1e-3 * 0.5)
    assert lr_of[id(model.backbone.body.conv_stem.weight)] == pytest.approx(1e-3 * 0.5 ** 17)
    assert all(lr_of[i] == pytest.approx(1e-3 * 0.5 ** d) for i, d in depth.items())
    opt, sched = make_optimizer(model, TrainConfig(**{**cfg.__dict__, "optimizer": "adamw", "schedule": "onecycle",
                                                      "epochs": 2}), steps_per_epoch=3)
    assert [g["max_lr"] for g in opt.param_groups] == [g.get("lr", cfg.lr) for g in groups]  # one-cycle keeps them
    with pytest.raises(ValueError, match="layer_decay needs a backbone built by timm"):
        param_groups(BaselineDetector(backbone="squeezenet"), TrainConfig(data="x", layer_decay=0.8))
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        TrainConfig(data="x", layer_decay=0.0)


def test_layer_decay_under_fdftnet_starts_from_the_backbone_lr():
    model = FDFtNet.from_baseline(BaselineDetector(backbone="efficientnet_lite0"), freeze_backbone=False, mb_blocks=1)
    cfg = TrainConfig(data="x", lr=1e-3, backbone_lr=1e-4, layer_decay=0.8, freeze_backbone=False)
    groups = param_groups(model, cfg)
    backbone = {id(p) for p in model.backbone.parameters()}
    assert not any(id(p) in backbone for p in groups[0]["params"])  # FTT, MBblockV3 and classifier at cfg.lr
    lr_of = {id(p): g["lr"] for g in groups[1:] for p in g["params"]}
    assert set(lr_of) == backbone
    assert lr_of[id(model.backbone.body.conv_head.weight)] == pytest.approx(1e-4 * 0.8)
    assert lr_of[id(model.backbone.body.conv_stem.weight)] == pytest.approx(1e-4 * 0.8 ** 17)


def test_frozen_warmup_trains_the_backbone_only_after_its_epochs(synthetic_images, tiny_baseline_dir, tmp_path):
    out = tmp_path / "warm"
    cfg = TrainConfig(stage="finetune", data=str(synthetic_images), backbone_from=str(tiny_baseline_dir),
                      out=str(out), epochs=2, batch_size=16, limit=16, device="cpu", seed=0, mb_blocks=1,
                      freeze_backbone=False, frozen_epochs=1, precise_bn=0)
    start = {k: v.clone() for k, v in load_model(tiny_baseline_dir, expect="baseline").state_dict().items()}
    name = next(k for k in start if k.startswith("backbone.") and k.endswith("weight") and start[k].ndim == 4)
    moved = []
    for e in finetune(cfg):
        if e["type"] == "epoch":
            live = load_file(str(out / "last" / "model.safetensors"))
            moved.append(not torch.equal(live[name], start[name]))
    assert moved == [False, True]  # the backbone: fixed in epoch 1 (FTT and MBblockV3 training), trained in epoch 2
    assert load_model(out, expect="fdftnet").config["freeze_backbone"] is False
    with pytest.raises(ValueError, match="frozen_epochs is a warm-up before the backbone trains"):
        TrainConfig(stage="finetune", data="x", frozen_epochs=1, epochs=3)  # a frozen backbone never trains
    with pytest.raises(ValueError, match="frozen_epochs must be 0..epochs-1"):
        TrainConfig(stage="pretrain", data="x", frozen_epochs=3, epochs=3)


def test_frozen_warmup_of_a_baseline_keeps_features_and_bn_statistics(synthetic_images, tmp_path):
    out = tmp_path / "b"
    torch.manual_seed(0)
    cfg = _cfg(synthetic_images, out, backbone="efficientnet_lite0", input_size=64, frozen_epochs=1, epochs=2)
    seen = []
    for e in pretrain(cfg):
        if e["type"] == "epoch":
            seen.append(load_file(str(out / "last" / "model.safetensors")))
    bn, stem, head = "backbone.body.bn1.running_mean", "backbone.body.conv_stem.weight", "backbone.fc.weight"
    first, second = seen
    torch.manual_seed(0)
    init = BaselineDetector(backbone="efficientnet_lite0", input_size=64).state_dict()  # new_baseline's draw
    assert torch.equal(first[stem], init[stem]) and torch.equal(first[bn], init[bn])  # frozen: weights and BN
    assert not torch.equal(first[head], init[head])  # the head trained
    assert not torch.equal(second[stem], first[stem]) and not torch.equal(second[bn], first[bn])


def test_ema_weights_are_validated_saved_and_resumed(synthetic_images, tmp_path):
    straight = tmp_path / "straight"
    list(pretrain(_cfg(synthetic_images, straight, ema=0.9, epochs=2, monitor="val_acc", patience=9)))
    opt = torch.load(straight / "last" / "optimizer.pt", map_location="cpu", weights_only=True)
    live = load_file(str(straight / "last" / "model.safetensors"))
    assert set(opt["ema"]) == set(live)
    assert any(not torch.equal(opt["ema"][k], live[k]) for k in live if live[k].is_floating_point())
    record = json.loads((straight / "training.json").read_text())
    if record["best_epoch"] == 2:  # the checkpoint holds the average, not the live weights
        saved = load_model(straight, expect="baseline").state_dict()
        assert all(torch.equal(saved[k], opt["ema"][k]) for k in saved)
    # resumed after epoch 1, the average goes on from its saved state: the same weights as the straight run
    part = tmp_path / "part"
    list(pretrain(_cfg(synthetic_images, part, ema=0.9, epochs=1, monitor="val_acc", patience=9)))
    list(pretrain(_cfg(synthetic_images, part, ema=0.9, epochs=2, monitor="val_acc", patience=9, resume=True)))
    resumed = torch.load(part / "last" / "optimizer.pt", map_location="cpu", weights_only=True)["ema"]
    assert all(torch.allclose(resumed[k].float(), opt["ema"][k].float(), atol=1e-6) for k in resumed)
    with pytest.raises(ValueError, match=r"ema \(a decay\) must be in \[0, 1\)"):
        TrainConfig(data="x", ema=1.0)


@pytest.mark.parametrize("mix", [dict(mixup=0.4), dict(cutmix=1.0), dict(mixup=0.4, cutmix=1.0)])
def test_mixup_and_cutmix_train_on_soft_labels(synthetic_images, tmp_path, mix):
    events = list(pretrain(_cfg(synthetic_images, tmp_path / "m", augment=True, epochs=1, **mix)))
    epoch = next(e for e in events if e["type"] == "epoch")
    assert math.isfinite(epoch["train_loss"]) and 0 <= epoch["train_acc"] <= 1
    assert epoch["train_loss"] > 0.05  # mixed labels: the loss cannot reach 0 as a hard label's can
    with pytest.raises(ValueError, match="mixup and cutmix are Beta alphas"):
        TrainConfig(data="x", mixup=-1)


def test_cli_recipe_flags_reach_the_run_and_its_card(synthetic_images, tmp_path):
    out = tmp_path / "cli"
    assert cli_main(["pretrain", "--data", str(synthetic_images), "--backbone", "efficientnet_lite0", "--pretrained",
                     "--input-size", "64", "--optimizer", "adamw", "--layer-decay", "0.7", "--ema", "0.99",
                     "--frozen-epochs", "1", "--mixup", "0.2", "--cutmix", "1.0", "--augment", "--epochs", "2",
                     "--batch-size", "16", "--limit", "16", "--precise-bn", "0", "--device", "cpu",
                     "--out", str(out)]) == 0
    cfg = json.loads((out / "training.json").read_text())["train_config"]
    assert (cfg["layer_decay"], cfg["ema"], cfg["frozen_epochs"], cfg["mixup"], cfg["cutmix"]) == (0.7, 0.99, 1, 0.2, 1.0)
    write_model_card(out)
    card = (out / "README.md").read_text()
    for row in ("layer-wise lr decay | `0.7`", "weights averaged (EMA decay) | `0.99`", "mixup alpha | `0.2`"):
        assert row in card


def test_cut_blocks_builds_fdftnet_on_an_earlier_stage_of_a_lite_baseline(synthetic_images, tiny_baseline_dir, tmp_path):
    base_dir = tmp_path / "lite"
    list(pretrain(_cfg(synthetic_images, base_dir, backbone="efficientnet_lite0", input_size=64, epochs=1)))
    out = tmp_path / "cut"
    cfg = TrainConfig(stage="finetune", data=str(synthetic_images), backbone_from=str(base_dir), out=str(out),
                      epochs=1, batch_size=16, limit=16, device="cpu", seed=0, mb_blocks=1, precise_bn=0,
                      freeze_backbone=False, backbone_lr=1e-4, cut_blocks=5)
    list(finetune(cfg))
    model = load_model(out, expect="fdftnet")
    assert model.config["backbone_args"] == {"feature_blocks": 5}
    assert model.backbone.feature_channels == 112  # Lite0's stride-16 stage, not the 1280-channel head input
    base = load_model(base_dir, expect="baseline").backbone.state_dict()
    assert torch.equal(model.backbone.state_dict()["body.conv_head.weight"], base["body.conv_head.weight"])  # unused
    assert json.loads((out / "training.json").read_text())["train_config"]["cut_blocks"] == 5
    assert "the backbone's first 5 block stages" in (out / "README.md").read_text()
    with pytest.raises(ValueError, match="--cut-blocks needs an EfficientNet-Lite baseline"):
        list(finetune(TrainConfig(**{**cfg.__dict__, "backbone_from": str(tiny_baseline_dir),
                                     "out": str(tmp_path / "x")})))
    with pytest.raises(ValueError, match="cut_blocks .* is a finetune setting"):
        TrainConfig(stage="pretrain", data="x", cut_blocks=5)
    with pytest.raises(ValueError, match="feature_blocks must be 1..7"):
        list(finetune(TrainConfig(**{**cfg.__dict__, "cut_blocks": 8, "out": str(tmp_path / "y")})))
