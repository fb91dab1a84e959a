"""MobileNetV3 inverted-residual block (Howard et al. 2019, https://arxiv.org/abs/1905.02244) as FDFtNet uses it.

    block = MBblockV3(in_chs=2048, out_chs=128, exp_chs=576, kernel_size=3, stride=2)

1x1 expand -> BN -> h-swish; depthwise k x k -> BN; squeeze-excite (hard-sigmoid gate); h-swish;
1x1 project -> BN; residual add when stride 1 and in == out.

The authors' Keras code gates the *expanded* tensor with SE (so the depthwise conv only feeds the squeeze);
`se_on_expanded=True` reproduces that bug, the default is the correct MobileNetV3 wiring.
"""
import torch
import torch.nn as nn

from .create_act import create_act_layer
from .squeeze_excite import SEModule

__all__ = ["MBblockV3"]


class MBblockV3(nn.Module):
    """Inverted residual with squeeze-excite and h-swish (MobileNetV3 'bneck')."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int = 128,
            exp_chs: int = 576,
            kernel_size: int = 3,
            stride: int = 1,
            se_ratio: float = 0.25,
            act_layer: str = "hard_swish",
            se_on_expanded: bool = False,
    ):
        super().__init__()
        self.has_skip = stride == 1 and in_chs == out_chs
        self.se_on_expanded = se_on_expanded
        self.conv_pw = nn.Conv2d(in_chs, exp_chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(exp_chs)
        self.act1 = create_act_layer(act_layer)
        pad = (kernel_size - 1) // 2
        self.conv_dw = nn.Conv2d(exp_chs, exp_chs, kernel_size, stride, pad, groups=exp_chs, bias=False)
        self.bn2 = nn.BatchNorm2d(exp_chs)
        self.se = SEModule(exp_chs, int(exp_chs * se_ratio), act_layer="relu", gate_layer="hard_sigmoid")
        self.act2 = create_act_layer(act_layer)
        self.conv_pwl = nn.Conv2d(exp_chs, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        e = self.act1(self.bn1(self.conv_pw(x)))   # (B, exp, H, W)
        d = self.bn2(self.conv_dw(e))              # (B, exp, H/s, W/s)
        if self.se_on_expanded:
            # authors' wiring: the gate squeezed from the depthwise output multiplies the expanded tensor,
            # so the depthwise conv only feeds the squeeze and a stride-2 block keeps its input resolution
            y = e * self.se.gate_of(d)
        else:
            y = self.se(d)
        y = self.bn3(self.conv_pwl(self.act2(y)))
        if self.has_skip:
            y = y + shortcut
        return y
