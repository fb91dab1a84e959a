"""Pre-activation ResNet-50 ("ResNetV2") as a fake-image detector backbone.

Paper: He et al. 2016, "Identity Mappings in Deep Residual Networks", https://arxiv.org/abs/1603.05027.
FDFtNet's paper names a 50-layer ResNetV2 (its authors' file actually builds a ResNet152 v1); this is the
true pre-activation ResNet-50.

    model = create_model("resnetv2_50", num_classes=2)   # input (B, 3, H, W) in [0, 1], H, W >= 32

Stem 7x7/2 conv -> 3x3/2 max pool, bottleneck stages [3, 4, 6, 3] (BN-ReLU before every conv, stride in
the 3x3 conv of each stage's first block), then a final BN-ReLU. The cut point is that pre-activated
2048-channel map (2x2 at 64x64 input). Head: global average pool -> dropout -> linear.
Parameters at 2 classes: 23,504,450 trainable; 23,549,890 counting BN running stats as Keras does.
"""
import torch
import torch.nn as nn

from fdftnet.layers import create_act_layer

from ._registry import register_model

__all__ = ["ResNetV2"]


class BnAct(nn.Sequential):
    """BatchNorm -> activation: the 'pre-activation' applied before each conv."""

    def __init__(
            self,
            chs: int,
            act_layer: str = "relu",
    ):
        super().__init__(nn.BatchNorm2d(chs), create_act_layer(act_layer, inplace=True))


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3(stride), BN-ReLU-conv1x1, plus shortcut.

    A projection shortcut (1x1 conv, stride) reads the pre-activated input, as in He et al. 2016 Fig. 4(e)
    and their code; an identity shortcut reads the raw input so the residual path stays clean.
    """

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            mid_chs: int,
            stride: int = 1,
            act_layer: str = "relu",
    ):
        super().__init__()
        self.preact = BnAct(in_chs, act_layer)
        self.downsample = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False)
        self.conv1 = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.norm2 = BnAct(mid_chs, act_layer)
        self.conv2 = nn.Conv2d(mid_chs, mid_chs, 3, stride=stride, padding=1, bias=False)
        self.norm3 = BnAct(mid_chs, act_layer)
        self.conv3 = nn.Conv2d(mid_chs, out_chs, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_preact = self.preact(x)  # (B, C_in, H, W); BnAct's ReLU is in-place but BN made a new tensor
        shortcut = x if self.downsample is None else self.downsample(x_preact)  # (B, C_out, H/s, W/s)
        x = self.conv1(x_preact)  # (B, mid, H, W)
        x = self.conv2(self.norm2(x))  # (B, mid, H/s, W/s)
        x = self.conv3(self.norm3(x))  # (B, C_out, H/s, W/s)
        return x + shortcut


class ResNetV2(nn.Module):
    """Pre-activation ResNet with bottleneck blocks; forward_features ends with the final BN-ReLU."""
    # modules of the classification head, cut when the backbone feeds FDFtNet (spec: "cut its classification layers")
    head_names = ("head_drop", "fc")

    def __init__(
            self,
            num_classes: int = 2,
            in_chans: int = 3,
            drop_rate: float = 0.0,
            layers: tuple[int, ...] = (3, 4, 6, 3),
            stem_chs: int = 64,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.default_cfg = dict(input_size=(3, 64, 64), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), classifier="fc")

        # no BN-ReLU after the stem conv: the first block pre-activates its input (timm / Keras ResNet50V2)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, stem_chs, 7, stride=2, padding=3, bias=False),  # 64 -> 32
            nn.MaxPool2d(3, stride=2, padding=1),  # 32 -> 16
        )
        stages: list[nn.Module] = []
        in_chs = stem_chs
        for i, depth in enumerate(layers):
            mid_chs = stem_chs * 2 ** i  # 64, 128, 256, 512
            out_chs = mid_chs * 4  # 256, 512, 1024, 2048
            stride = 1 if i == 0 else 2  # 16 -> 16 -> 8 -> 4 -> 2
            blocks = []
            for j in range(depth):
                blocks.append(PreActBottleneck(in_chs, out_chs, mid_chs, stride=stride if j == 0 else 1))
                in_chs = out_chs
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.norm = BnAct(in_chs)  # the final pre-activation: outputs of the residual stream are not yet normed
        self.feature_channels = in_chs  # 2048
        self.num_features = in_chs

        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_chs, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convs (fan_out), BN to identity, small normal classifier."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer (num_classes 0 -> identity, head returns 2048-d features)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 64, 16, 16) at 64x64 input
        x = self.stages(x)  # (B, 2048, 2, 2)
        return self.norm(x)  # (B, 2048, 2, 2) pre-activated: the FDFtNet cut point

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x).flatten(1))  # (B, 2048)
        return x if pre_logits else self.fc(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def resnetv2_50(**kwargs) -> ResNetV2:
    """Pre-activation ResNet-50 (about 23.5M parameters at 2 classes)."""
    kwargs.setdefault("layers", (3, 4, 6, 3))
    return ResNetV2(**kwargs)
