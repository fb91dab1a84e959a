"""FDFtNet: Fake Detection Fine-tuning Network (Jeon, Bang, Woo, IFIP SEC 2020,
https://doi.org/10.1007/978-3-030-58201-2_28).

A pretrained backbone's feature map goes through MobileNetV3 blocks (MBblockV3) to a 576-d vector; in
parallel the Fine-Tune Transformer (FTT: separable-conv down-sampling + SAGAN self-attention, M stages)
turns the raw image into another 576-d vector; the two are summed and classified.

    model = FDFtNet.from_baseline("runs/xception-dfdc", freeze_backbone=True)
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from fdftnet.layers import MBblockV3, SelfAttention2d, SeparableConv2d, create_act_layer

from ._hub import PAPER_URL, REPO_URL, HubModel
from ._preprocess import Preprocess, check_crop_size
from ._registry import create_model

__all__ = ["FineTuneTransformer", "MBHead", "FDFtNet", "FTT_SIZE"]

FTT_SIZE = 64  # the side from_baseline has the FTT read a larger crop at: the paper's image size


class FTTStage(nn.Module):
    """SeparableConv 3x3 stride 2 (no bias) -> BN -> act -> self-attention."""

    def __init__(self, in_chs: int, out_chs: int, act_layer: str = "relu"):
        super().__init__()
        self.conv = SeparableConv2d(in_chs, out_chs, 3, stride=2)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = create_act_layer(act_layer, inplace=True)
        self.attn = SelfAttention2d(out_chs)

    def pre_attention(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.pre_attention(x))


class FineTuneTransformer(nn.Module):
    """The FTT branch: M attention stages on the raw image (64 -> 32 -> 16 -> 8 px), then a 576-d embedding."""

    def __init__(
            self,
            in_chans: int = 3,
            channels: tuple[int, ...] = (32, 64, 128),
            embed_dim: int = 576,
            act_layer: str = "relu",
    ):
        super().__init__()
        chs = [in_chans, *channels]
        self.stages = nn.ModuleList(FTTStage(chs[i], chs[i + 1], act_layer) for i in range(len(channels)))
        c = channels[-1]
        self.conv_out = nn.Sequential(SeparableConv2d(c, c, 3), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.embed = nn.Sequential(nn.Conv2d(c, embed_dim, 1, bias=False), nn.BatchNorm2d(embed_dim),
                                   create_act_layer("hard_swish", inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)                       # (B, C_m, H/2^m, W/2^m)
        x = self.embed(self.conv_out(x))       # (B, 576, h, w)
        return x.mean((2, 3))                  # (B, 576)

    @torch.no_grad()
    def attention_heatmap(self, x: torch.Tensor, stage: int = 0) -> torch.Tensor:
        """(B, h, w): mean attention each position receives in `stage` (0 is the 32x32 one): where the FTT looked."""
        for i, st in enumerate(self.stages):
            y = st.pre_attention(x)
            if i == stage:
                B, C, H, W = y.shape
                beta = st.attn.attention_map(y)          # (B, N, N), rows sum to 1
                return beta.mean(1).reshape(B, H, W)     # (B, H, W)
            x = st.attn(y)
        raise ValueError(f"stage {stage} out of range (FTT has {len(self.stages)} stages)")


class MBHead(nn.Module):
    """Backbone feature map -> MBblockV3 x N -> 1x1 conv to 576 -> BN -> h-swish -> GAP (the spec's wiring)."""

    def __init__(
            self,
            in_chs: int,
            num_blocks: int = 4,
            exp_chs: int = 576,
            out_chs: int = 128,
            embed_dim: int = 576,
            se_on_expanded: bool = False,
    ):
        super().__init__()
        blocks = []
        c = in_chs
        for i in range(num_blocks):
            # block 1: 3x3 stride 2, no residual; blocks 2..N: 5x5 stride 1 with residual
            k, s = (3, 2) if i == 0 else (5, 1)
            blocks.append(MBblockV3(c, out_chs, exp_chs, kernel_size=k, stride=s,
                                    se_on_expanded=se_on_expanded and s == 1))
            c = out_chs
        self.blocks = nn.Sequential(*blocks)
        self.embed = nn.Sequential(nn.Conv2d(c, embed_dim, 1, bias=False), nn.BatchNorm2d(embed_dim),
                                   create_act_layer("hard_swish", inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.blocks(x)).mean((2, 3))  # (B, 576)


class FDFtNet(
    nn.Module,
    HubModel,
    library_name="fdftnet",
    repo_url=REPO_URL,
    paper_url=PAPER_URL,
    license="mit",
    pipeline_tag="image-classification",
    tags=["fdftnet", "deepfake-detection", "fake-image-detection", "few-shot"],
):
    """Backbone (frozen or not) + MBblockV3 head + Fine-Tune Transformer, summed into a 2-way classifier.

    Args mirror the paper: `ftt_stages` M (3), `ftt_channels` (32, 64, 128), `mb_blocks` N (2..4).
    `use_ftt=False` / `mb_blocks=0` are the paper's ablations; `se_on_expanded=True` reproduces the authors'
    SE wiring bug in blocks 2..N. `crop_size` / `input_size` / `mean` / `std` prepare the backbone's input
    (copied from the baseline by `from_baseline`). The FTT reads the raw crop, resized to `ftt_size` px when
    that is set (None: the crop as it is; its first attention stage has (crop_size / 2)^2 positions, so a
    128-px crop costs 16x the attention of the paper's 64 px: bench/speed.py --ftt-sizes measures it).
    """
    model_type = "fdftnet"

    def __init__(
            self,
            backbone: str = "xception",
            num_classes: int = 2,
            ftt_stages: int = 3,
            ftt_channels: list[int] = (32, 64, 128),
            ftt_act: str = "relu",
            use_ftt: bool = True,
            mb_blocks: int = 4,
            mb_expand: int = 576,
            mb_out: int = 128,
            embed_dim: int = 576,
            se_on_expanded: bool = False,
            freeze_backbone: bool = True,
            backbone_args: dict | None = None,
            input_size: int = 64,
            mean: list[float] | None = None,
            std: list[float] | None = None,
            crop_size: int = 64,
            ftt_size: int | None = None,
    ):
        super().__init__()
        check_crop_size(crop_size)
        if ftt_size is not None:
            check_crop_size(ftt_size)
        ftt_channels = [int(c) for c in ftt_channels]
        if use_ftt and not 1 <= ftt_stages <= len(ftt_channels):
            raise ValueError(f"ftt_stages must be 1..{len(ftt_channels)} (one channel width per stage), got {ftt_stages}")
        if mb_blocks < 0:
            raise ValueError(f"mb_blocks must be >= 0, got {mb_blocks}")
        self.backbone_name = backbone
        self.freeze_backbone = freeze_backbone
        self.crop_size, self.ftt_size = crop_size, ftt_size
        self.preprocess = Preprocess(input_size, mean, std)  # for the backbone only: the FTT reads the raw image
        self.backbone = create_model(backbone, num_classes=num_classes, **(backbone_args or {}))
        for name in self.backbone.head_names:  # FDFtNet only uses the feature map: cut the baseline's head
            setattr(self.backbone, name, nn.Identity())
        self.head = MBHead(self.backbone.feature_channels, mb_blocks, mb_expand, mb_out, embed_dim, se_on_expanded)
        self.ftt = FineTuneTransformer(3, tuple(ftt_channels[:ftt_stages]), embed_dim, ftt_act) if use_ftt else None
        self.fc = nn.Linear(embed_dim, num_classes)
        self.register_buffer("threshold", torch.tensor(0.5))
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        # channels-last (NHWC) weights and activations: oneDNN's convolutions run 2-3x faster on CPU than
        # on NCHW, and NHWC also gives the FTT attention unit-stride (B, N, C) tensors, which the fused
        # SDPA kernel needs (bench/speed.py). Loaded weights are copied into these strides; saved
        # weights are made contiguous by safetensors, so checkpoints are unchanged.
        self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # frozen means frozen: BN running statistics stay those of pre-training
        return self

    def ftt_input(self, x: torch.Tensor) -> torch.Tensor:
        """The crop as the FTT reads it: resized (antialiased bilinear) to ftt_size when that is set."""
        s = self.ftt_size
        if s is None or (x.shape[-1] == s and x.shape[-2] == s):
            return x
        return F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False,
                             antialias=s < x.shape[-1]).contiguous(memory_format=torch.channels_last)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) crop in [0, 1] (S = crop_size) -> (B, 576) summed embedding."""
        x = x.contiguous(memory_format=torch.channels_last)  # (B, 3, H, W) stored NHWC; a no-op if it already is
        if self.freeze_backbone:
            with torch.no_grad():  # no autograd graph through a frozen backbone
                feats = self.backbone.forward_features(self.preprocess(x))
        else:
            feats = self.backbone.forward_features(self.preprocess(x))  # (B, C, h, w) at the cut point
        z = self.head(feats)
        if self.ftt is not None:
            z = z + self.ftt(self.ftt_input(x))
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))

    def attention_heatmap(self, x: torch.Tensor) -> torch.Tensor | None:
        """(B, h, w) FTT attention of the first stage (32x32 for a 64-px FTT input), or None for the no-FTT
        ablation."""
        return None if self.ftt is None else self.ftt.attention_heatmap(self.ftt_input(x))

    @classmethod
    def from_baseline(cls, baseline: nn.Module, **kwargs) -> "FDFtNet":
        """Build FDFtNet on a trained BaselineDetector, copying its backbone weights."""
        cfg = getattr(baseline, "config", {})
        kwargs.setdefault("backbone", baseline.backbone_name)
        if cfg.get("backbone_args"):
            kwargs.setdefault("backbone_args", cfg["backbone_args"])
        for key in ("input_size", "mean", "std", "crop_size"):  # the backbone keeps reading what it was trained on
            if cfg.get(key) is not None:
                kwargs.setdefault(key, cfg[key])
        if kwargs.get("ftt_size") is None and kwargs.get("crop_size", 64) > FTT_SIZE:
            # measured (bench.ftt_size, docs/native.md): reading a 128-px crop, the FTT's (64 x 64)^2 attention
            # costs 3.9x the CPU time per face of reading it at the paper's 64 px
            kwargs["ftt_size"] = FTT_SIZE
        model = cls(**kwargs)
        src = baseline.backbone.state_dict()
        keep = model.backbone.state_dict()
        missing = [k for k in keep if k not in src]
        if missing:
            raise ValueError(f"baseline backbone lacks {len(missing)} weights FDFtNet needs, e.g. {missing[0]}")
        model.backbone.load_state_dict({k: src[k] for k in keep})
        return model
