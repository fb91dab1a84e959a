"""Activation layers by name (MobileNetV3's h-swish and hard-sigmoid included).

    act = create_act_layer("hard_swish")   # x * ReLU6(x + 3) / 6
"""
import torch.nn as nn

__all__ = ["create_act_layer", "get_act_layer"]

_ACT_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    # torch's Hardswish / Hardsigmoid are exactly x*ReLU6(x+3)/6 and ReLU6(x+3)/6 (the spec's formulas).
    "hard_swish": nn.Hardswish,
    "hswish": nn.Hardswish,
    "hard_sigmoid": nn.Hardsigmoid,
    "hsigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def get_act_layer(name: str) -> type[nn.Module]:
    """The activation class for `name`; raises ValueError on an unknown name."""
    try:
        return _ACT_LAYERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(sorted(_ACT_LAYERS))}") from None


def create_act_layer(name: str, inplace: bool = False) -> nn.Module:
    """An activation module by name."""
    cls = get_act_layer(name)
    if cls in (nn.Identity, nn.Sigmoid):
        return cls()
    return cls(inplace=inplace)
