"""A load-time sanity check: a model whose scores are saturated on every one of a fixed set of probe images is
refused (issue #31: the last layer x 1e37 loaded and called every image real at P(fake) = 0.000).

The probe is made here, not shipped: 8 images at the model's crop size (flat greys, noise, gradients and smooth
face-like blobs, seeded), far apart enough that a working detector gives them different, finite scores. A trained
model's logit margin on them stays within a few tens; a broken one's is astronomically large on all of them.

    check_outputs(model, "runs/m")   # CheckpointError (one line) for NaN/inf or saturated, same-verdict scores
"""
import numpy as np
import torch

__all__ = ["probe_images", "check_outputs", "SATURATED"]

SATURATED = 40.0  # |logit(fake) - logit(real)|: P within e^-40 (4e-18) of 0 or 1


def probe_images(size: int, n: int = 8, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) float in [0, 1]: two flat greys, two noise images, two gradients, two smooth blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = [np.full((size, size, 3), v) for v in (0.25, 0.75)]
    out += [rng.uniform(0, 1, (size, size, 3)) for _ in range(2)]
    out += [np.stack([xx, yy, 1 - xx], -1), np.stack([yy, 0.5 * (xx + yy), xx], -1)]
    for _ in range(n - len(out)):
        cy, cx, r = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.2, 0.3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2))[..., None]
        out.append(rng.uniform(0.15, 0.45, 3) + blob * rng.uniform(0.3, 0.5, 3))
    x = torch.from_numpy(np.clip(np.stack(out[:n]), 0, 1).astype(np.float32)).permute(0, 3, 1, 2)
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def check_outputs(model, model_id) -> None:
    """CheckpointError when `model`'s outputs on the probe are not finite, or saturated with one verdict for all."""
    from ._hub import CheckpointError
    from ._preprocess import crop_size_of
    was_training = model.training
    model.eval()
    try:
        logits = model(probe_images(crop_size_of(model)).to(next(model.parameters()).device)).float()
    finally:
        model.train(was_training)
    if not torch.isfinite(logits).all():
        raise CheckpointError(f"{model_id}: its outputs on test images are NaN or infinite: its weights are broken")
    margin = logits[:, 1] - logits[:, 0]
    if (margin.abs() > SATURATED).all() and ((margin > 0).all() or (margin < 0).all()):
        verdict = "fake at P(fake) = 1.000" if margin[0] > 0 else "real at P(fake) = 0.000"
        raise CheckpointError(f"{model_id}: it calls every test image {verdict} (its scores are saturated): its "
                              f"weights look broken")
