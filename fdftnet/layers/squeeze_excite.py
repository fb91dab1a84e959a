"""Squeeze-and-Excitation (Hu et al. 2018, https://arxiv.org/abs/1709.01507) as used by MobileNetV3.

    se = SEModule(576, rd_channels=144, gate_layer="hard_sigmoid")
"""
import torch
import torch.nn as nn

from .create_act import create_act_layer

__all__ = ["SEModule", "SqueezeExcite"]


class SEModule(nn.Module):
    """GAP -> 1x1 conv (reduce) -> act -> 1x1 conv (expand) -> gate; returns the gate, or x * gate."""

    def __init__(
            self,
            channels: int,
            rd_channels: int,
            act_layer: str = "relu",
            gate_layer: str = "hard_sigmoid",
    ):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.act = create_act_layer(act_layer, inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=True)
        self.gate = create_act_layer(gate_layer)

    def gate_of(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, C, 1, 1) channel gate computed from x."""
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return self.gate(self.fc2(self.act(self.fc1(s))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate_of(x)


SqueezeExcite = SEModule
