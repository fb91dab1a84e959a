"""Inference: P(fake) for image files, arrays or an in-memory ImageSet, and evaluation on a split.

    model = load_model("checkpoints/fdftnet-xception-dfdc")
    p = predict_files(model, ["face.png"])            # [0.97]
    m = evaluate(model, load_image_folder(ROOT, "test"))
"""
import numpy as np
import torch

from .data import ImageSet, decode_all, load_image
from .metrics import compute_metrics
from .models import CheckpointError, crop_size_of

__all__ = ["to_input", "predict_tensor", "predict_arrays", "predict_files", "predict_imageset", "evaluate"]

# Images per forward pass on CPU. The activations of 32 64x64 images stay in the caches; a 256-image
# forward streams them through memory and ran 1.5x slower per image on a 2-core Xeon (bench/speed.py).
# Eval-mode outputs do not depend on the batch, so this changes nothing but the speed.
CPU_CHUNK = 32


def _cpu_has_bf16() -> bool:
    """True where oneDNN runs bf16 natively; elsewhere CPU autocast would be slower than float32."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def to_input(images_uint8: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float32 in [0, 1] on `device` (the paper's 1/255 scaling, no mean/std).

    The memory layout is kept: an NHWC (channels-last) batch stays NHWC, which is what the models run on.
    """
    return images_uint8.to(device, non_blocking=True).float().div_(255.0)


@torch.inference_mode()
def predict_tensor(model, images_uint8: torch.Tensor, batch_size: int = 256, device: str | None = None,
                   *, amp: bool = False) -> np.ndarray:
    """P(fake) for a (N, 3, S, S) uint8 tensor of crop_size crops, in batches (at most CPU_CHUNK on a CPU).

    `amp=True` runs the forward under bf16 autocast on a GPU, or on a CPU with native bf16 (AMX/AVX512-BF16,
    1.6x faster on a 2-core Xeon); probabilities then differ from float32 in about the third decimal.
    """
    device = device or next(model.parameters()).device.type
    model.eval()
    dev_type = torch.device(device).type
    on_gpu = dev_type == "cuda"
    use_amp = amp and (on_gpu or (dev_type == "cpu" and _cpu_has_bf16()))
    step = batch_size if on_gpu else min(batch_size, CPU_CHUNK)
    out = []
    for i in range(0, len(images_uint8), step):
        x = to_input(images_uint8[i:i + step], device)
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(x)
        out.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def _finite(p: np.ndarray) -> np.ndarray:
    """Scores for a verdict: NaN compares False with every threshold, so it would read as "real".

    (predict_tensor itself returns NaN as it is: training reports a diverged model in its own words.)"""
    if not np.isfinite(p).all():
        raise CheckpointError(f"the model gave NaN or infinite scores for {int((~np.isfinite(p)).sum())} of "
                              f"{len(p)} images: its weights are broken")
    return p


def predict_arrays(model, arrays: list[np.ndarray] | np.ndarray, **kw) -> np.ndarray:
    """P(fake) for HxWx3 uint8 arrays (a list, or one (N, H, W, 3) array) already at the model's input size."""
    if len(arrays) == 0:
        return np.zeros(0, dtype=np.float32)
    batch = np.stack(arrays) if not isinstance(arrays, np.ndarray) else arrays  # (B, H, W, 3)
    if not (batch.flags.writeable and batch.flags.c_contiguous):
        batch = batch.copy()  # torch.from_numpy wants a writeable, contiguous array
    # a permuted view, no copy: (B, 3, H, W) laid out NHWC, i.e. already channels-last
    x = torch.from_numpy(batch).permute(0, 3, 1, 2)
    return _finite(predict_tensor(model, x, **kw))


def predict_files(model, paths, size: int | None = None, **kw) -> np.ndarray:
    """P(fake) per image file, each resized to `size` (default: the model's crop size); raises DataError (one line,
    names the file) for a file that is not a usable image."""
    paths = list(paths)
    size = size or crop_size_of(model)
    if len(paths) <= 1:  # one image: a thread pool would only add its start-up to the latency
        return predict_arrays(model, [load_image(p, size=size) for p in paths], **kw)
    # decoded on a thread pool into one (N, H, W, 3) array; the first bad file raises, as before
    images, _, _ = decode_all(paths, [None] * len(paths), size=size, on_error="raise")
    return predict_arrays(model, images, **kw)


def predict_imageset(model, data: ImageSet, **kw) -> np.ndarray:
    return _finite(predict_tensor(model, data.images, **kw))


def evaluate(model, data: ImageSet, threshold: float | None = None, **kw) -> dict:
    """compute_metrics on `data` at the model's calibrated threshold (or the one given)."""
    if threshold is None:
        threshold = float(getattr(model, "threshold", torch.tensor(0.5)))
    if not 0 < threshold < 1:  # also False for NaN
        raise ValueError(f"threshold {threshold} is not a probability in (0, 1)")
    p = predict_imageset(model, data, **kw)
    return compute_metrics(data.labels.numpy(), p, threshold=threshold)
