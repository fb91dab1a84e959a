"""Data: safe decoding, real/fake image sets (folders or Hugging Face), augmentation, batching.

    from fdftnet.data import load_image_folder, sample_shots, Batches, AugmentConfig
"""
from .augment import (
    AugmentConfig, augment_batch, cutout, cutout_mask, random_affine, sample_cutout_boxes,
)
from .folders import (
    iter_hf_dataset, list_image_folder, load_hf_dataset, load_image_folder, split_dir,
)
from .images import (
    IMAGE_EXTENSIONS, MAX_PIXELS, MIN_SIDE, DataError, decode_all, load_image, to_float, to_tensor,
    to_uint8_tensor,
)
from .loader import CLASS_NAMES, FAKE, REAL, Batches, ImageSet, sample_shots, seeded_subset
from .stream import StreamBatches
from .selfblend import (
    PSEUDO_FAKE_KINDS, PseudoFakeBatches, SelfBlendConfig, face_mask, pseudo_fake_set, self_blend, self_blend_arrays,
)
