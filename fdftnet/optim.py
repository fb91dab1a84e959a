"""Optimizer, lr schedule and parameter groups of a training run (`fdftnet.train.fit`).

    opt, sched = make_optimizer(model, cfg, steps_per_epoch=len(batches))

Groups: the new layers (or a baseline's whole network) at cfg.lr first, so the logged lr (group 0's) is the main
one; with cfg.backbone_lr an FDFtNet's backbone at that lr; with cfg.layer_decay each layer of a timm backbone
(EfficientNet-Lite) at its lr times layer_decay ** (its distance from the top), as in BEiT / timm's
`param_groups_layer_decay`: the stem moves least, the last stage most, the classifier at the full lr.
"""
import math

import torch
import torch.nn as nn

__all__ = ["make_optimizer", "param_groups", "layer_depths"]


def layer_depths(backbone: nn.Module) -> tuple[dict[int, int], int]:
    """({id(param): its depth below the top}, the number of layers) of a backbone whose network is timm's: depth 1
    is the last layer group of timm's `group_matcher` (conv_head), n the stem; the classifier head (not in the map)
    is depth 0. A backbone without one (the paper's four) raises ValueError."""
    body = getattr(backbone, "body", None)
    if body is None or not hasattr(body, "group_matcher"):
        raise ValueError(f"layer_decay needs a backbone built by timm (efficientnet_lite0/2), not "
                         f"{type(backbone).__name__}")
    from timm.models import group_parameters
    layer_of = group_parameters(body, body.group_matcher(coarse=False), reverse=True)  # name -> 0 (stem) .. top
    top = max(layer_of.values())
    params = dict(body.named_parameters())
    return {id(params[n]): top + 1 - i for n, i in layer_of.items()}, top + 1


def param_groups(model: nn.Module, cfg) -> list[dict]:
    """The trainable parameters as optimizer groups (module docstring); groups without parameters are left out."""
    params = [p for p in model.parameters() if p.requires_grad]
    backbone = getattr(model, "backbone", None)
    split = cfg.backbone_lr is not None and type(model).__name__ == "FDFtNet"
    if not (split or cfg.layer_decay) or backbone is None:
        return [{"params": params}] if params else []
    base_lr = cfg.backbone_lr if split else cfg.lr  # the lr the backbone's top layer trains at
    depth = {}
    if cfg.layer_decay:
        depth, _ = layer_depths(backbone)
    in_backbone = {id(p) for p in backbone.parameters()} if split else set(depth)
    groups = {-1: [p for p in params if id(p) not in in_backbone]}  # the new layers / the classifier: cfg.lr
    for p in params:
        if id(p) in in_backbone:
            groups.setdefault(depth.get(id(p), 0), []).append(p)
    out = [{"params": groups.pop(-1)}]
    for d in sorted(groups):
        out.append({"params": groups[d], "lr": base_lr * (cfg.layer_decay ** d if cfg.layer_decay else 1.0)})
    return [g for g in out if g["params"]]


def make_optimizer(model: nn.Module, cfg, steps_per_epoch: int | None = None):
    """(optimizer, scheduler). A "onecycle" scheduler is stepped after every optimizer step, the others per epoch."""
    params = param_groups(model, cfg)
    if not params:
        raise ValueError("the model has no trainable parameters")
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = cfg.schedule or ("cosine" if cfg.optimizer == "sgd" else "plateau")
    if schedule == "onecycle":
        if not steps_per_epoch:
            raise ValueError("the onecycle schedule needs a training split of known length (not a stream)")
        total = cfg.epochs * math.ceil(steps_per_epoch / cfg.grad_accum)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g.get("lr", cfg.lr) for g in params],
                                                    total_steps=total, pct_start=0.2)
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    else:
        # authors' Keras callback: ReduceLROnPlateau(factor=sqrt(0.5), patience=5, min_lr=5e-6)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=math.sqrt(0.5), patience=5, min_lr=5e-6)
    return opt, sched
