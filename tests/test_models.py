"""FDFtNet, its layers and checkpoints: shapes, gradients, freezing, attention math, save/load."""
import json

import pytest
import torch
import torch.nn.functional as F

from fdftnet import BaselineDetector, CheckpointError, FDFtNet, list_models, load_model
from fdftnet.layers import MBblockV3, SelfAttention2d, create_act_layer
from fdftnet.models import FineTuneTransformer

BACKBONES = list_models()


def test_paper_backbones_and_pretrained_ones_registered():
    assert set(BACKBONES) == {"shallownetv3", "squeezenet", "resnetv2_50", "xception", "efficientnet_lite0",
                              "efficientnet_lite2", "resnet18"}  # resnet18: the from-scratch peer (issue #23)


def test_resnet18_is_torchvisions_network():
    import torchvision
    from fdftnet import create_model
    bb, ref = create_model("resnet18", num_classes=2), torchvision.models.resnet18(weights=None, num_classes=2)
    assert sum(p.numel() for p in bb.parameters()) == sum(p.numel() for p in ref.parameters())  # 11,177,538
    ref.load_state_dict({k.removeprefix("body."): v for k, v in bb.state_dict().items() if k.startswith("body.")}
                        | {"fc.weight": bb.fc.weight, "fc.bias": bb.fc.bias})
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(bb.eval()(x), ref.eval()(x), atol=1e-5)
    assert bb.forward_features(x).shape == (2, 512, 2, 2)


# ----------------------------------------------------------------------------- layers

def test_attention_equals_explicit_softmax_math(seed):
    attn = SelfAttention2d(32)
    with torch.no_grad():
        attn.gamma.fill_(0.7)
    x = torch.randn(2, 32, 8, 8)
    B, C, H, W = x.shape
    f = attn.f(x).flatten(2)                     # (B, C/8, N)
    g = attn.g(x).flatten(2)                     # (B, C/8, N)
    h = attn.h(x).flatten(2)                     # (B, C, N)
    beta = torch.softmax(g.transpose(1, 2) @ f, dim=-1)    # (B, N, N): s = g f^T, no 1/sqrt(d)
    o = (beta @ h.transpose(1, 2)).transpose(1, 2).reshape(B, C, H, W)
    expected = 0.7 * o + x
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn.attention_map(x), beta, rtol=1e-5, atol=1e-6)


def test_attention_gamma_starts_at_zero_so_block_is_identity(seed):
    attn = SelfAttention2d(64)
    assert attn.gamma.item() == 0.0
    x = torch.randn(1, 64, 4, 4)
    torch.testing.assert_close(attn(x), x)
    assert attn.f.out_channels == attn.g.out_channels == 8 and attn.h.out_channels == 64


def test_activations_match_spec_formulas():
    x = torch.linspace(-5, 5, 101)
    torch.testing.assert_close(create_act_layer("hard_swish")(x), x * F.relu6(x + 3) / 6)
    torch.testing.assert_close(create_act_layer("hard_sigmoid")(x), F.relu6(x + 3) / 6)
    with pytest.raises(ValueError, match="unknown activation"):
        create_act_layer("gelu_fancy")


def test_mbblock_shapes_residual_and_se_wiring(seed):
    b1 = MBblockV3(32, 128, 576, kernel_size=3, stride=2)
    assert not b1.has_skip and b1(torch.randn(2, 32, 12, 12)).shape == (2, 128, 6, 6)
    b2 = MBblockV3(128, 128, 576, kernel_size=5, stride=1).eval()
    assert b2.has_skip
    assert b2.se.fc1.out_channels == 144 and b2.se.fc2.out_channels == 576
    x = torch.randn(2, 128, 6, 6)
    # correct wiring: the output depends on the depthwise conv through the gated tensor itself
    bug = MBblockV3(128, 128, 576, kernel_size=5, stride=1, se_on_expanded=True).eval()
    bug.load_state_dict(b2.state_dict())
    assert not torch.allclose(b2(x), bug(x))
    with torch.no_grad():
        e = bug.act1(bug.bn1(bug.conv_pw(x)))
        gate = bug.se.gate_of(bug.bn2(bug.conv_dw(e)))
        expected = bug.bn3(bug.conv_pwl(bug.act2(e * gate))) + x
    torch.testing.assert_close(bug(x), expected)


def test_ftt_stage_sizes(seed):
    ftt = FineTuneTransformer(channels=(32, 64, 128))
    x = torch.rand(2, 3, 64, 64)
    assert ftt(x).shape == (2, 576)
    assert ftt.attention_heatmap(x).shape == (2, 32, 32)
    assert [s.attn.h.out_channels for s in ftt.stages] == [32, 64, 128]


# ----------------------------------------------------------------------------- FDFtNet

VARIANTS = [dict(), dict(use_ftt=False), dict(mb_blocks=0), dict(ftt_stages=2, mb_blocks=2),
            dict(freeze_backbone=False), dict(se_on_expanded=True, mb_blocks=3)]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_fdftnet_forward_every_backbone(backbone, seed):
    model = FDFtNet(backbone=backbone).eval()
    y = model(torch.rand(2, 3, 64, 64))
    assert y.shape == (2, 2) and torch.isfinite(y).all()


@pytest.mark.parametrize("kwargs", VARIANTS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "default")
def test_fdftnet_variants_forward_and_gradients(kwargs, seed):
    model = FDFtNet(backbone="squeezenet", num_classes=3, **kwargs).train()
    x = torch.rand(4, 3, 64, 64)
    y = model(x)
    assert y.shape == (4, 3) and torch.isfinite(y).all()
    y.logsumexp(1).mean().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} got no gradient"
    frozen = kwargs.get("freeze_backbone", True)
    assert all(p.requires_grad != frozen for p in model.backbone.parameters())
    if kwargs.get("use_ftt") is False:
        assert model.ftt is None and model.attention_heatmap(x) is None


def test_frozen_backbone_bit_identical_after_finetune_step(seed):
    model = FDFtNet(backbone="shallownetv3", freeze_backbone=True).train()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.3, momentum=0.9)
    for _ in range(2):
        loss = F.cross_entropy(model(torch.rand(8, 3, 64, 64)), torch.randint(0, 2, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not model.backbone.training  # BN statistics stay frozen too
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    # while the head did learn
    assert model.ftt.stages[0].attn.gamma.item() != 0.0


def test_from_baseline_copies_backbone(seed):
    base = BaselineDetector(backbone="squeezenet")
    model = FDFtNet.from_baseline(base, mb_blocks=2)
    kept = model.backbone.state_dict()
    assert "classifier.weight" not in kept  # the baseline's head is cut
    for k, v in kept.items():
        assert torch.equal(v, base.backbone.state_dict()[k])
    assert model.config["mb_blocks"] == 2 and model.config["backbone"] == "squeezenet"


def test_invalid_architecture_arguments():
    with pytest.raises(ValueError, match="ftt_stages"):
        FDFtNet(backbone="squeezenet", ftt_stages=4)
    with pytest.raises(ValueError, match="unknown backbone"):
        FDFtNet(backbone="vgg99")


# ----------------------------------------------------------------------------- checkpoints

EXPECTED_CONFIG = {
    "backbone": "squeezenet", "backbone_args": None, "embed_dim": 576, "format_version": 1,
    "freeze_backbone": True, "ftt_act": "relu", "ftt_channels": [32, 64, 128], "ftt_stages": 3,
    "mb_blocks": 3, "mb_expand": 576, "mb_out": 128, "model_type": "fdftnet", "num_classes": 2,
    "se_on_expanded": False, "use_ftt": True, "input_size": 64, "mean": None, "std": None,
}


def test_save_load_round_trip_identical_outputs(tmp_path, seed):
    model = FDFtNet(backbone="squeezenet", mb_blocks=3).eval()
    model.threshold.fill_(0.37)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == EXPECTED_CONFIG
    assert (tmp_path / "model.safetensors").exists()
    loaded = FDFtNet.from_pretrained(tmp_path)
    assert not loaded.training
    x = torch.rand(3, 3, 64, 64)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.threshold.item() == pytest.approx(0.37)
    assert type(load_model(tmp_path)) is FDFtNet


def test_wrong_kind_and_broken_checkpoints(tmp_path, seed):
    base_dir, ft_dir = tmp_path / "base", tmp_path / "ft"
    BaselineDetector(backbone="squeezenet").save_pretrained(base_dir)
    FDFtNet(backbone="squeezenet").save_pretrained(ft_dir)
    with pytest.raises(CheckpointError, match="baseline model, not a fdftnet"):
        FDFtNet.from_pretrained(base_dir)
    with pytest.raises(CheckpointError, match="needs a baseline"):
        load_model(ft_dir, expect="baseline")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path)
    # weights that do not fit the config: a clear error, not silently random weights
    cfg = json.loads((ft_dir / "config.json").read_text())
    (ft_dir / "config.json").write_text(json.dumps({**cfg, "mb_blocks": 2}))
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(ft_dir)
    (ft_dir / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(CheckpointError, match="newer fdftnet"):
        load_model(ft_dir)
    (ft_dir / "config.json").write_text(json.dumps(cfg))
    (ft_dir / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="unreadable"):
        load_model(ft_dir)
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        load_model(tmp_path / "missing")
