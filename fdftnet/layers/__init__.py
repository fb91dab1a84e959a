"""Reusable layers: no model names, no registry."""
from .attention import SelfAttention2d, get_attn
from .conv import ConvBnAct, SeparableConv2d
from .create_act import create_act_layer, get_act_layer
from .mbblock import MBblockV3
from .squeeze_excite import SEModule, SqueezeExcite
