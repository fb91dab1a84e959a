"""Xception as a fake-image detector backbone (the best FDFtNet baseline).

Paper: Chollet 2017, "Xception: Deep Learning with Depthwise Separable Convolutions",
https://arxiv.org/abs/1610.02357 (layer list as Keras' `applications.Xception` and timm's `legacy_xception`).

    model = create_model("xception", num_classes=2)   # input (B, 3, H, W) in [0, 1], H, W >= 32

Entry flow (two 3x3 convs, then blocks to 128/256/728 that end in a 3x3/2 max pool with a 1x1/2 conv
shortcut), middle flow (8 residual blocks of three 728-channel separable convs), exit flow (728 -> 1024
block, separable 1536 and 2048 with BN-ReLU). The cut point is the 2048-channel exit map (2x2 at 64x64).
The two stem convs use padding 1 (Keras: valid) so 64 halves cleanly: 32, 16, 8, 4, 2; weights are unchanged.
Parameters at 2 classes: 20,811,050 trainable; 20,865,578 counting BN running stats as Keras does
(Keras reports 20,861,480 for the network without its classifier; the 2-class dense adds 4,098).
"""
import torch
import torch.nn as nn

from fdftnet.layers import SeparableConv2d, create_act_layer

from ._registry import register_model

__all__ = ["Xception"]


class Block(nn.Module):
    """Residual block of `reps` (ReLU -> SeparableConv 3x3 -> BN) units, optional 3x3/2 max pool.

    The shortcut is identity, or a 1x1 conv (stride) + BN when channels or resolution change.
    The first channel change happens at the first unit (`grow_first`) except in the exit block,
    which widens at its last unit (728 -> 728 -> 1024), as in the paper's Fig. 5.
    """

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            reps: int,
            stride: int = 1,
            start_with_relu: bool = True,
            grow_first: bool = True,
            act_layer: str = "relu",
    ):
        super().__init__()
        self.skip = None
        if out_chs != in_chs or stride != 1:
            self.skip = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chs))

        layers: list[nn.Module] = []
        chs = in_chs
        for i in range(reps):
            unit_out = out_chs if (grow_first and i == 0) or (not grow_first and i == reps - 1) else chs
            if i > 0 or start_with_relu:
                # not in-place on the block input: the identity shortcut still needs it
                layers.append(create_act_layer(act_layer, inplace=i > 0))
            layers += [SeparableConv2d(chs, unit_out, 3), nn.BatchNorm2d(unit_out)]
            chs = unit_out
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, padding=1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.skip is None else self.skip(x)  # (B, C_out, H/s, W/s)
        return self.rep(x) + shortcut


class Xception(nn.Module):
    """Xception (entry, middle x 8, exit flow); forward_features ends after the last SeparableConv-BN-ReLU."""
    # modules of the classification head, cut when the backbone feeds FDFtNet (spec: "cut its classification layers")
    head_names = ("head_drop", "fc")

    def __init__(
            self,
            num_classes: int = 2,
            in_chans: int = 3,
            drop_rate: float = 0.0,
            middle_blocks: int = 8,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.default_cfg = dict(input_size=(3, 64, 64), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), classifier="fc")

        # entry flow
        self.conv1 = nn.Conv2d(in_chans, 32, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = create_act_layer("relu", inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.act2 = create_act_layer("relu", inplace=True)
        self.block1 = Block(64, 128, 2, stride=2, start_with_relu=False)  # conv2 already ended in ReLU
        self.block2 = Block(128, 256, 2, stride=2)
        self.block3 = Block(256, 728, 2, stride=2)
        # middle flow
        self.middle = nn.Sequential(*[Block(728, 728, 3) for _ in range(middle_blocks)])
        # exit flow
        self.block_exit = Block(728, 1024, 2, stride=2, grow_first=False)
        self.conv3 = SeparableConv2d(1024, 1536, 3)
        self.bn3 = nn.BatchNorm2d(1536)
        self.act3 = create_act_layer("relu", inplace=True)
        self.conv4 = SeparableConv2d(1536, 2048, 3)
        self.bn4 = nn.BatchNorm2d(2048)
        self.act4 = create_act_layer("relu", inplace=True)
        self.feature_channels = 2048
        self.num_features = 2048

        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convs (fan_out), BN to identity (timm's Xception init)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer (num_classes 0 -> identity, head returns 2048-d features)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))  # (B, 32, 32, 32) at 64x64 input
        x = self.act2(self.bn2(self.conv2(x)))  # (B, 64, 32, 32)
        x = self.block1(x)  # (B, 128, 16, 16)
        x = self.block2(x)  # (B, 256, 8, 8)
        x = self.block3(x)  # (B, 728, 4, 4)
        x = self.middle(x)  # (B, 728, 4, 4)
        x = self.block_exit(x)  # (B, 1024, 2, 2)
        x = self.act3(self.bn3(self.conv3(x)))  # (B, 1536, 2, 2)
        x = self.act4(self.bn4(self.conv4(x)))  # (B, 2048, 2, 2) the FDFtNet cut point
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x).flatten(1))  # (B, 2048)
        return x if pre_logits else self.fc(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def xception(**kwargs) -> Xception:
    """Xception (about 20.8M trainable parameters at 2 classes)."""
    return Xception(**kwargs)
