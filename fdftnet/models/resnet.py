"""ResNet-18 (He et al., CVPR 2016, arXiv 1512.03385), built by torchvision, from random weights.

Not one of the paper's backbones: the peer every detector here is compared with in bench.reproduce (issue #23
measured a plain ResNet-18 trained from scratch on dfdc64/train above every paper backbone). torchvision's
network as is, at the paper's 64x64 input: stride-2 stem + max pool, so its last stage is a 2x2 map.

    bb = create_model("resnet18", num_classes=2)
    feats = bb.forward_features(x)       # (B, 512, H/32, W/32)
"""
import torch
import torch.nn as nn

from ._registry import register_model

__all__ = ["ResNet"]


class ResNet(nn.Module):
    """torchvision's ResNet body (no ImageNet weights: none install offline) + dropout + a linear classifier."""
    head_names = ("head_drop", "fc")

    def __init__(self, depth: int = 18, num_classes: int = 2, drop_rate: float = 0.0):
        super().__init__()
        import torchvision  # imported here: only this backbone needs it
        if depth not in (18, 34):
            raise ValueError(f"ResNet depth must be 18 or 34, got {depth}")
        self.body = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.body.fc = nn.Identity()
        self.num_features = self.feature_channels = 512
        self.default_cfg = dict(input_size=(3, 64, 64), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), classifier="fc")
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 512, H/32, W/32)."""
        b = self.body
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.body.avgpool(x), 1)  # (B, 512)
        return x if pre_logits else self.fc(self.head_drop(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def resnet18(**kwargs) -> ResNet:
    """torchvision's ResNet-18 from random weights (11.2M parameters): a peer, not a paper backbone."""
    return ResNet(18, **kwargs)
