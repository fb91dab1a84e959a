"""fdftnet: FDFtNet (Jeon, Bang, Woo, IFIP SEC 2020) fake-face detection with few-shot fine-tuning.

    import fdftnet
    backbone = fdftnet.create_model("xception")
    model = fdftnet.FDFtNet.from_pretrained("checkpoints/fdftnet-shallownetv3-dfdc")
"""
from .checkpoint import load_model
from .models import BaselineDetector, CheckpointError, FDFtNet, create_model, list_models

__version__ = "0.1.0"
__all__ = ["BaselineDetector", "CheckpointError", "FDFtNet", "create_model", "list_models", "load_model", "__version__"]
