"""The model's own input preparation: its [0, 1] face crop resized and normalised for the backbone.

A model is fed face crops of `crop_size` px (a config field): 64 for the paper's protocol and the models
trained on dfdc64, the model's own input size for a native-resolution model. The paper's backbones read the
64x64 image scaled by 1/255 as it is (input_size 64, no mean/std). An ImageNet-pretrained backbone wants
ImageNet's mean/std, and more pixels than 64 (its stride-32 map would be 2x2): a 64-px model upsamples its
crop to input_size, a native one gets crops at input_size and resizes nothing. These settings are config
fields, so a checkpoint carries them and every caller (CLI, lab, API, bench) crops faces to the same size.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Preprocess", "check_preprocess", "check_crop_size", "crop_size_of"]


def check_preprocess(input_size: int, mean, std) -> None:
    """Raise ValueError (one line) for settings a model cannot use."""
    if isinstance(input_size, bool) or not isinstance(input_size, int) or not 32 <= input_size <= 512:
        raise ValueError(f"input_size must be a whole number of pixels in 32..512, got {input_size!r}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    if mean is not None:
        for name, v in (("mean", mean), ("std", std)):
            if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(
                    isinstance(c, (int, float)) and not isinstance(c, bool) for c in v):
                raise ValueError(f"{name} must be a list of 3 numbers, got {v!r}")
        if not all(0 < float(c) < 10 for c in std) or not all(-10 < float(c) < 10 for c in mean):
            raise ValueError(f"std must be in (0, 10) and mean in (-10, 10), got mean {mean}, std {std}")


def check_crop_size(crop_size: int) -> None:
    """Raise ValueError (one line) for a crop side a model cannot be fed."""
    if isinstance(crop_size, bool) or not isinstance(crop_size, int) or not 32 <= crop_size <= 512:
        raise ValueError(f"crop_size must be a whole number of pixels in 32..512, got {crop_size!r}")


def crop_size_of(model) -> int:
    """The side of the face crops `model` is fed: its crop_size (64 for checkpoints older than the field)."""
    return int(getattr(getattr(model, "module", model), "crop_size", 64))


class Preprocess(nn.Module):
    """(B, 3, S, S) crop in [0, 1] -> (B, 3, N, N) bilinear-resized, then (x - mean) / std; identity by default.

    mean/std are non-persistent buffers: they follow .to(device) but are not weights (the config holds them),
    so checkpoints of the paper's backbones keep their exact set of tensors.
    """

    def __init__(self, input_size: int = 64, mean=None, std=None):
        super().__init__()
        check_preprocess(input_size, mean, std)
        self.input_size = input_size
        self.normalize = mean is not None
        self.register_buffer("mean", torch.tensor(mean or (0.0, 0.0, 0.0)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or (1.0, 1.0, 1.0)).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        if self.normalize:
            x = (x - self.mean) / self.std
        return x

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, normalize={self.normalize}"
