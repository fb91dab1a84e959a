"""Backbones: shapes, gradients, classifier swap, parameter counts, registry errors."""
import pytest
import torch
import torch.nn as nn

# import the model files directly so registration does not depend on fdftnet/models/__init__.py
import fdftnet.models.resnetv2  # noqa: F401
import fdftnet.models.shallownet  # noqa: F401
import fdftnet.models.squeezenet  # noqa: F401
import fdftnet.models.xception  # noqa: F401
from fdftnet.models._registry import create_model, list_models

BACKBONES = ["shallownetv3", "squeezenet", "resnetv2_50", "xception"]

# (C, H, W) of forward_features at 64x64 input
FEATURE_SHAPES = {
    "shallownetv3": (32, 12, 12),
    "squeezenet": (512, 3, 3),
    "resnetv2_50": (2048, 2, 2),
    "xception": (2048, 2, 2),
}


def keras_param_count(model: nn.Module) -> int:
    """Parameters as Keras counts them: every state_dict tensor (BN running mean/var included) but the step counter."""
    return sum(v.numel() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked"))


# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKBONES)
def test_forward_shapes(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
        pooled = model.forward_head(feats, pre_logits=True)
        out = model(x)
    assert feats.shape == (2, model.feature_channels, *FEATURE_SHAPES[name][1:])
    assert model.feature_channels == FEATURE_SHAPES[name][0]
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    assert torch.allclose(out, logits)
    assert pooled.shape == (2, model.num_features)
    assert model.num_classes == 2
    assert model.default_cfg["input_size"] == (3, 64, 64)
    assert getattr(model, model.default_cfg["classifier"]) is model.get_classifier()


@pytest.mark.parametrize("name", ["squeezenet", "resnetv2_50", "xception"])
def test_forward_small_input(name):
    # everything but ShallowNetV3 (flatten head fixed at 64x64) takes other sizes >= 32
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 2)


def test_shallownet_rejects_other_sizes():
    model = create_model("shallownetv3").eval()
    with pytest.raises(ValueError, match="64x64"):
        model(torch.rand(1, 3, 48, 48))


@pytest.mark.parametrize("name", BACKBONES)
def test_backward_all_params_get_grad(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).train()
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 3)
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize("name", BACKBONES)
def test_reset_classifier(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.rand(2, 3, 64, 64)
    model.reset_classifier(5)
    clf = model.get_classifier()
    assert getattr(model, model.default_cfg["classifier"]) is clf
    assert clf.weight.shape[0] == 5 and model.num_classes == 5
    with torch.no_grad():
        assert model(x).shape == (2, 5)
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity)
    with torch.no_grad():
        assert model(x).shape == (2, model.num_features)


def test_squeezenet_logits_can_be_negative():
    # no ReLU after the final conv (unlike torchvision), so a detector's logits keep their sign
    torch.manual_seed(0)
    model = create_model("squeezenet").eval()
    with torch.no_grad():
        out = model(torch.rand(4, 3, 64, 64))
    assert (out < 0).any()


@pytest.mark.parametrize(
    "name, target, rel",
    [
        ("shallownetv3", 4_835_106, 0.0),  # authors' notebook, exact
        ("squeezenet", 724_000, 0.05),
        ("resnetv2_50", 23_500_000, 0.03),
        ("xception", 20_861_480 + 4_098, 0.0),  # Keras Xception without top + Dense(2), exact
    ],
)
def test_param_counts(name, target, rel):
    model = create_model(name, num_classes=2)
    n = keras_param_count(model)
    assert abs(n - target) <= rel * target, (name, n, target)


def test_unknown_model_lists_valid_names():
    assert set(BACKBONES) <= set(list_models())
    with pytest.raises(ValueError, match="xception") as info:
        create_model("nope")
    assert all(name in str(info.value) for name in BACKBONES)
