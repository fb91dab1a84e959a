"""The baseline detector: a registered backbone with its own classifier head, loadable from the Hub.

    model = BaselineDetector(backbone="xception")
    model.save_pretrained("runs/xception-dfdc")
    model = BaselineDetector.from_pretrained("runs/xception-dfdc")

The same backbone object later becomes FDFtNet's feature extractor (`FDFtNet.from_baseline`).
"""
import torch
import torch.nn as nn

from ._hub import PAPER_URL, REPO_URL, HubModel
from ._preprocess import Preprocess, check_crop_size
from ._registry import create_model

__all__ = ["BaselineDetector"]


class BaselineDetector(
    nn.Module,
    HubModel,
    library_name="fdftnet",
    repo_url=REPO_URL,
    paper_url=PAPER_URL,
    license="mit",
    pipeline_tag="image-classification",
    tags=["fdftnet", "deepfake-detection", "fake-image-detection", "baseline"],
):
    """A backbone CNN + its classifier head: the paper's "pre-trained model" and its baseline detector.

    `crop_size`: the side of the face crops callers feed it (64: the paper's crops; a native-resolution model
    has crop_size == input_size, so nothing is resized). `input_size` / `mean` / `std`: how that [0, 1] crop is
    resized and normalised before the backbone (64 / none for the paper's backbones; e.g. 128 and ImageNet's
    for an ImageNet-pretrained one).
    """
    model_type = "baseline"

    def __init__(
            self,
            backbone: str = "xception",
            num_classes: int = 2,
            backbone_args: dict | None = None,
            input_size: int = 64,
            mean: list[float] | None = None,
            std: list[float] | None = None,
            crop_size: int = 64,
    ):
        super().__init__()
        check_crop_size(crop_size)
        self.backbone_name = backbone
        self.crop_size = crop_size
        self.preprocess = Preprocess(input_size, mean, std)  # crop_size crop in [0, 1] -> what the backbone reads
        self.backbone = create_model(backbone, num_classes=num_classes, **(backbone_args or {}))
        # decision threshold on P(fake), calibrated on validation data after training; saved with the weights
        self.register_buffer("threshold", torch.tensor(0.5))
        self.features_frozen = False

    def freeze_features(self) -> "BaselineDetector":
        """Train only the classification head (a linear-probe baseline): the rest keeps weights and BN stats."""
        self.features_frozen = True
        head = {id(p) for n in self.backbone.head_names for p in getattr(self.backbone, n).parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in head)
        return self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.features_frozen:
            for name, child in self.backbone.named_children():
                if name not in self.backbone.head_names:
                    child.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.preprocess(x))
