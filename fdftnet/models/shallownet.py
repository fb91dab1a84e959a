"""ShallowNetV3: the small plain CNN baseline of FDFtNet (Jeon et al., IFIP SEC 2020).

Paper: https://doi.org/10.1007/978-3-030-58201-2_28 (layer list from the authors' Keras notebook,
github cutz-j/FDFtNet). ShallowNet itself comes from Tariq et al. 2018, https://arxiv.org/abs/1808.07276.

    model = create_model("shallownetv3", num_classes=2)   # input (B, 3, 64, 64) in [0, 1]

Three conv blocks (valid k x k conv, then two 1x1 convs, ReLU after each, bias on) shrink 64 -> 12;
the cut point is the 12x12x32 map after the last 1x1 conv. The head flattens it (4608) -> dense 1024
-> ReLU -> BN -> dropout -> dense, so this model only takes 64x64 input.
Parameters: 4,833,058 trainable; 4,835,106 counting BN running mean/var as Keras does (the paper's figure).
"""
import torch
import torch.nn as nn

from fdftnet.layers import create_act_layer

from ._registry import register_model

__all__ = ["ShallowNetV3"]


class ConvBlock(nn.Sequential):
    """Valid k x k conv then a list of 1x1 convs, each followed by ReLU (Keras Conv2D(activation="relu"))."""

    def __init__(
            self,
            in_chs: int,
            chs: tuple[int, ...],
            kernel_size: int,
            pool: bool = True,
            drop_rate: float = 0.0,
            act_layer: str = "relu",
    ):
        layers: list[nn.Module] = []
        for i, out_chs in enumerate(chs):
            k = kernel_size if i == 0 else 1
            layers += [nn.Conv2d(in_chs, out_chs, k, padding=0, bias=True), create_act_layer(act_layer, inplace=True)]
            in_chs = out_chs
        if pool:
            layers.append(nn.MaxPool2d(2))
        if drop_rate > 0.0:
            # the CelebA notebook adds Dropout(0.25) after the conv blocks; off by default
            layers.append(nn.Dropout(drop_rate))
        super().__init__(*layers)


class ShallowNetV3(nn.Module):
    """Plain 9-conv CNN with a 1024-unit dense head; fixed 64x64 input because the head flattens 12x12x32."""
    # modules of the classification head, cut when the backbone feeds FDFtNet (spec: "cut its classification layers")
    head_names = ("fc1", "bn", "head_drop", "fc")

    def __init__(
            self,
            num_classes: int = 2,
            in_chans: int = 3,
            drop_rate: float = 0.25,
            conv_drop_rate: float = 0.0,
            hidden_dim: int = 1024,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.feature_channels = 32
        self.feature_size = 12  # 64 -5+1-> 60 -pool-> 30 -3+1-> 28 -pool-> 14 -3+1-> 12
        self.num_features = hidden_dim
        self.default_cfg = dict(input_size=(3, 64, 64), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), classifier="fc")

        self.block1 = ConvBlock(in_chans, (32, 32, 32), kernel_size=5, drop_rate=conv_drop_rate)
        self.block2 = ConvBlock(32, (64, 64, 64), kernel_size=3, drop_rate=conv_drop_rate)
        self.block3 = ConvBlock(64, (128, 32), kernel_size=3, pool=False, drop_rate=conv_drop_rate)

        flat_dim = self.feature_channels * self.feature_size ** 2  # 32 * 12 * 12 = 4608
        self.fc1 = nn.Linear(flat_dim, hidden_dim)
        self.act = create_act_layer("relu", inplace=True)
        # Keras order in the notebook: Dense -> ReLU -> BatchNormalization -> Dropout
        self.bn = nn.BatchNorm1d(hidden_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(hidden_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """Keras defaults: glorot-uniform kernels, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final dense layer (num_classes 0 -> identity, head returns 1024-d features)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(x)  # (B, 32, 30, 30)
        x = self.block2(x)  # (B, 64, 14, 14)
        x = self.block3(x)  # (B, 32, 12, 12) the FDFtNet cut point
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        B, C, H, W = x.shape
        if (H, W) != (self.feature_size, self.feature_size):
            raise ValueError(f"ShallowNetV3 needs 64x64 input (12x12 features), got a {H}x{W} feature map")
        x = x.flatten(1)  # (B, C*H*W) = (B, 4608)
        x = self.head_drop(self.bn(self.act(self.fc1(x))))  # (B, 1024)
        return x if pre_logits else self.fc(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def shallownetv3(**kwargs) -> ShallowNetV3:
    """ShallowNetV3 as in the authors' notebook (4,835,106 Keras parameters at 2 classes)."""
    return ShallowNetV3(**kwargs)
