"""Re-estimate BatchNorm running statistics on clean training images ("precise BN").

A BN layer's running mean/variance is an exponential average (momentum 0.1) that starts at mean 0, variance 1.
A few-shot fine-tune takes only tens of optimizer steps, so the average of a freshly added layer (FDFtNet's FTT
and MBblockV3 head) still carries much of that start: where the true variance is ~1e-3 the stored one stays
near 0.9^steps, every activation is squashed towards the BN bias, and in eval mode the model answers one class
for every image (validation ACC 50% while validation AUROC climbs; bench/results/REPORT.md). Recomputing the
statistics as a plain average over a pass of training images fixes that, costs one forward pass without
gradients, and is what the model then sees at validation, test and in the checkpoint.

    recalibrate_bn(model, train.images, batch_size=128, device="cpu")
"""
import torch
import torch.nn as nn

from .inference import to_input

__all__ = ["trainable_bn_layers", "recalibrate_bn"]


def trainable_bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """BN layers that update running statistics when `model.train()` is on (a frozen backbone's stay in eval)."""
    was = model.training
    model.train()  # models decide in train() which parts stay in eval mode (FDFtNet's frozen backbone)
    layers = [m for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training]
    model.train(was)
    return layers


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images_uint8: torch.Tensor, batch_size: int = 128, device: str = "cpu",
                   max_images: int = 2048, seed: int = 0, use_amp: bool = False) -> int:
    """Replace the running statistics of the model's trainable BN layers by their average over up to
    `max_images` of `images_uint8` ((N, 3, H, W) uint8, un-augmented), drawn with `seed`, in batches of
    `batch_size` (the training batch size, so each batch's statistics are those training normalised with).

    Dropout and every other layer run in eval mode. Returns the number of images used (0: nothing to do).
    The model is left in eval mode.
    """
    layers = trainable_bn_layers(model)
    n = min(len(images_uint8), max_images)
    model.eval()
    if not layers or n == 0:
        return 0
    idx = torch.randperm(len(images_uint8), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches of this pass
        m.train()
    dev_type = torch.device(device).type
    try:
        starts = list(range(0, n, batch_size))
        if len(starts) > 1 and n - starts[-1] == 1:  # a lone last image: BN cannot take batch statistics of one
            starts.pop()
        for i, j in zip(starts, starts[1:] + [n]):
            x = to_input(images_uint8[idx[i:j]], device)
            with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=use_amp):
                model(x)
    finally:
        for m, mom in zip(layers, momenta):
            m.momentum = mom
            m.eval()
    return n
