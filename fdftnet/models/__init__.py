"""Models: the four paper backbones, EfficientNet-Lite0/2 (ImageNet weights offline) (registered by name), the baseline detector and FDFtNet."""
from ._hub import CheckpointError, read_config, resolve_file
from ._preprocess import crop_size_of
from ._registry import create_model, is_model, list_models, register_model
from .baseline import BaselineDetector
from .efficientnet_lite import has_pretrained, load_pretrained
from .fdftnet import FDFtNet, FineTuneTransformer, MBHead
from .resnet import *
from .resnetv2 import *
from .shallownet import *
from .squeezenet import *
from .xception import *
