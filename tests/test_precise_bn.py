"""Precise BN: trainable BatchNorm statistics re-estimated on clean training images after each epoch."""
import torch
import torch.nn as nn

from fdftnet import FDFtNet, load_model
from fdftnet.inference import to_input
from fdftnet.precise_bn import recalibrate_bn, trainable_bn_layers
from fdftnet.train import TrainConfig, load_data, finetune


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=g)


def test_frozen_backbone_bn_is_left_alone(seed):
    model = FDFtNet(backbone="squeezenet", mb_blocks=2, freeze_backbone=True)
    layers = trainable_bn_layers(model)
    backbone_bn = [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    head_bn = [m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and not n.startswith("backbone")]
    assert head_bn and set(map(id, layers)) == set(map(id, head_bn))
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    recalibrate_bn(model, _images(40), batch_size=16)
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in before.items())
    assert not model.training and all(m.momentum == 0.1 for m in layers)  # eval mode, momentum put back
    unfrozen = FDFtNet(backbone="squeezenet", mb_blocks=2, freeze_backbone=False)
    assert len(trainable_bn_layers(unfrozen)) == len(head_bn) + len(backbone_bn)


def test_statistics_are_the_average_over_the_batches(seed):
    """One BN layer's running mean/var become the mean of its per-batch mean / unbiased variance."""
    model = FDFtNet(backbone="squeezenet", mb_blocks=2).train()
    bn = model.head.embed[1]
    seen = []
    hook = bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().float()))
    images = _images(48)
    used = recalibrate_bn(model, images, batch_size=16, max_images=48, seed=3)
    hook.remove()
    assert used == 48 and len(seen) == 3
    mean = torch.stack([x.mean((0, 2, 3)) for x in seen]).mean(0)
    var = torch.stack([x.var((0, 2, 3), unbiased=True) for x in seen]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-4, atol=1e-5)


def test_fixes_the_few_step_failure(seed):
    """The failure it exists for: after a few steps the running variance still holds its start value (1),
    so eval-mode outputs differ from the normalised ones training saw; after recalibration they agree."""
    model = FDFtNet(backbone="squeezenet", mb_blocks=2).train()
    x_u8 = _images(64, seed=1)
    x = to_input(x_u8)
    with torch.no_grad():
        for _ in range(3):  # three "optimizer steps" worth of running-average updates
            model(x)
        train_out = model(x)
        stale = model.eval()(x)
        recalibrate_bn(model, x_u8, batch_size=64)
        fresh = model(x)
    err_stale, err_fresh = (stale - train_out).abs().max(), (fresh - train_out).abs().max()
    assert err_fresh < 0.05 * err_stale, (float(err_stale), float(err_fresh))


def test_a_lone_last_image_joins_the_previous_batch(seed):
    model = FDFtNet(backbone="squeezenet", mb_blocks=2)  # its head's BN sees 1x1 maps: a batch of 1 would fail
    assert recalibrate_bn(model, _images(17), batch_size=8) == 17
    assert recalibrate_bn(model, _images(10), batch_size=8, max_images=0) == 0


def test_fit_saves_recalibrated_statistics(synthetic_images, tiny_baseline_dir, tmp_path):
    """The checkpoint holds statistics re-estimated on the clean training shots (not running averages)."""
    cfg = TrainConfig(stage="finetune", data=str(synthetic_images), backbone_from=str(tiny_baseline_dir),
                      out=str(tmp_path / "ft"), epochs=1, batch_size=16, shots=12, device="cpu", mb_blocks=2)
    list(finetune(cfg))
    saved = load_model(cfg.out, expect="fdftnet")
    again = load_model(cfg.out, expect="fdftnet")
    train, _ = load_data(cfg)
    recalibrate_bn(again, train.images, cfg.batch_size, max_images=cfg.precise_bn, seed=cfg.seed)
    for a, b in zip(trainable_bn_layers(saved), trainable_bn_layers(again)):
        torch.testing.assert_close(a.running_var, b.running_var)
        torch.testing.assert_close(a.running_mean, b.running_mean)
    off = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "off"), "precise_bn": 0})
    list(finetune(off))
    stale = load_model(off.out, expect="fdftnet")
    assert not torch.allclose(trainable_bn_layers(stale)[0].running_var, trainable_bn_layers(saved)[0].running_var)
