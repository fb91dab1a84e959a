"""Small conv building blocks shared by backbones and the FTT."""
import torch.nn as nn

from .create_act import create_act_layer

__all__ = ["SeparableConv2d", "ConvBnAct"]


class SeparableConv2d(nn.Module):
    """Depthwise k x k conv followed by a pointwise 1x1 conv (Keras SeparableConv2D), no bias by default."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            kernel_size: int = 3,
            stride: int = 1,
            padding: int | None = None,
            dilation: int = 1,
            bias: bool = False,
    ):
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation if padding is None else padding
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel_size, stride, padding, dilation, groups=in_chs, bias=False)
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=bias)

    def forward(self, x):
        return self.conv_pw(self.conv_dw(x))


class ConvBnAct(nn.Sequential):
    """Conv -> BatchNorm -> activation ("identity" for none)."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            kernel_size: int = 1,
            stride: int = 1,
            groups: int = 1,
            act_layer: str = "relu",
    ):
        super().__init__(
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_chs),
            create_act_layer(act_layer, inplace=True),
        )
