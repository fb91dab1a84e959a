"""SqueezeNet 1.1 as a fake-image detector backbone.

Paper: Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters",
https://arxiv.org/abs/1602.07360 (v1.1 layout: 3x3/2 stem with 64 filters, early pooling, as torchvision).

    model = create_model("squeezenet", num_classes=2)   # input (B, 3, H, W) in [0, 1], H, W >= 32

Stem conv -> fire2..fire9 with ceil-mode max pools; the cut point is fire9's 512-channel map
(3x3 at 64x64 input). Head: dropout -> 1x1 conv to num_classes -> global average pool.
Parameters: 723,522 at 2 classes (no BN, so the Keras-style count is the same).
"""
import torch
import torch.nn as nn

from fdftnet.layers import create_act_layer

from ._registry import register_model

__all__ = ["SqueezeNet"]


class Fire(nn.Module):
    """Fire module: 1x1 squeeze, then parallel 1x1 and 3x3 expands, concatenated on channels."""

    def __init__(
            self,
            in_chs: int,
            squeeze_chs: int,
            expand_chs: int,
            act_layer: str = "relu",
    ):
        super().__init__()
        self.squeeze = nn.Conv2d(in_chs, squeeze_chs, 1)
        self.squeeze_act = create_act_layer(act_layer, inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_chs, expand_chs, 1)
        self.expand3x3 = nn.Conv2d(squeeze_chs, expand_chs, 3, padding=1)
        self.expand_act = create_act_layer(act_layer, inplace=True)
        self.out_chs = 2 * expand_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_act(self.squeeze(x))  # (B, s, H, W)
        x = torch.cat([self.expand1x1(x), self.expand3x3(x)], dim=1)  # (B, 2e, H, W)
        return self.expand_act(x)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1 with a conv classifier whose logits are not clipped at zero."""
    # modules of the classification head, cut when the backbone feeds FDFtNet (spec: "cut its classification layers")
    head_names = ("head_drop", "classifier")

    def __init__(
            self,
            num_classes: int = 2,
            in_chans: int = 3,
            drop_rate: float = 0.5,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.default_cfg = dict(
            input_size=(3, 64, 64), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), classifier="classifier")

        # (squeeze, expand) per fire module; "M" is a 3x3/2 ceil-mode max pool (torchvision v1.1)
        cfg = [(16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192), (64, 256), (64, 256)]
        layers: list[nn.Module] = [
            nn.Conv2d(in_chans, 64, 3, stride=2),
            create_act_layer("relu", inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),
        ]
        chs = 64
        for c in cfg:
            if c == "M":
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            else:
                fire = Fire(chs, *c)
                layers.append(fire)
                chs = fire.out_chs
        self.features = nn.Sequential(*layers)
        self.feature_channels = chs  # 512
        self.num_features = chs  # the conv classifier reads the 512-channel map directly

        self.head_drop = nn.Dropout(drop_rate)
        # torchvision puts ReLU after this conv; a detector needs signed logits, so we do not
        self.classifier = nn.Conv2d(chs, num_classes, 1) if num_classes > 0 else nn.Identity()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's init: kaiming-uniform convs, small normal final conv, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is self.classifier:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final 1x1 conv (num_classes 0 -> identity, head returns pooled 512-d features)."""
        self.num_classes = num_classes
        if num_classes > 0:
            self.classifier = nn.Conv2d(self.num_features, num_classes, 1)
            nn.init.normal_(self.classifier.weight, mean=0.0, std=0.01)
            nn.init.zeros_(self.classifier.bias)
        else:
            self.classifier = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # 64 -conv3/2-> 31 -pool-> 15 -fire2,3-> 15 -pool-> 7 -fire4,5-> 7 -pool-> 3 -fire6..9-> 3
        return self.features(x)  # (B, 512, 3, 3) at 64x64 input

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(x)  # (B, 512, H, W)
        if pre_logits:
            # the 1x1 conv and the average pool commute, so these are exactly the classifier's inputs
            return self.global_pool(x).flatten(1)  # (B, 512)
        x = self.classifier(x)  # (B, num_classes, H, W)
        return self.global_pool(x).flatten(1)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def squeezenet(**kwargs) -> SqueezeNet:
    """SqueezeNet 1.1 (about 0.72M parameters at 2 classes)."""
    return SqueezeNet(**kwargs)
