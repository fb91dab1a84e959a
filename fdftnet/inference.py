"""Inference: P(fake) for image files, arrays or an in-memory ImageSet, and evaluation on a split.

    model = load_model("checkpoints/fdftnet-xception-dfdc")
    p = predict_files(model, ["face.png"])            # [0.97]
    m = evaluate(model, load_image_folder(ROOT, "test"))
"""
import numpy as np
import torch

from .data import ImageSet, load_image
from .metrics import compute_metrics

__all__ = ["to_input", "predict_tensor", "predict_arrays", "predict_files", "predict_imageset", "evaluate"]


def to_input(images_uint8: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float32 in [0, 1] on `device` (the paper's 1/255 scaling, no mean/std)."""
    return images_uint8.to(device, non_blocking=True).float().div_(255.0)


@torch.inference_mode()
def predict_tensor(model, images_uint8: torch.Tensor, batch_size: int = 256, device: str | None = None) -> np.ndarray:
    """P(fake) for a (N, 3, 64, 64) uint8 tensor, in batches."""
    device = device or next(model.parameters()).device.type
    model.eval()
    out = []
    for i in range(0, len(images_uint8), batch_size):
        x = to_input(images_uint8[i:i + batch_size], device)
        out.append(torch.softmax(model(x).float(), dim=1)[:, 1].cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def predict_arrays(model, arrays: list[np.ndarray], **kw) -> np.ndarray:
    """P(fake) for HxWx3 uint8 arrays already at the model's input size."""
    if not arrays:
        return np.zeros(0, dtype=np.float32)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)
    return predict_tensor(model, x, **kw)


def predict_files(model, paths, size: int = 64, **kw) -> np.ndarray:
    """P(fake) per image file; raises DataError (one line, names the file) for a file that is not a usable image."""
    return predict_arrays(model, [load_image(p, size=size) for p in paths], **kw)


def predict_imageset(model, data: ImageSet, **kw) -> np.ndarray:
    return predict_tensor(model, data.images, **kw)


def evaluate(model, data: ImageSet, threshold: float | None = None, **kw) -> dict:
    """compute_metrics on `data` at the model's calibrated threshold (or the one given)."""
    p = predict_imageset(model, data, **kw)
    if threshold is None:
        threshold = float(getattr(model, "threshold", torch.tensor(0.5)))
    return compute_metrics(data.labels.numpy(), p, threshold=threshold)
