"""Reproduce the paper's protocol on real data: baselines vs FDFtNet per backbone, ablations, few-shot transfer.

    python -m bench.reproduce --data ../shared/data                       # everything, resumable
    python -m bench.reproduce --data ../shared/data --plan                # list the jobs and which are done
    python -m bench.reproduce --data ../shared/data --only fewshot        # one group
    python -m bench.reproduce --report-only                               # re-render REPORT.md from the JSON
    python -m bench.reproduce --data ../shared/data --recalibrate         # finished jobs: today's threshold rule

Every job writes bench/results/jobs/<key>.json (test metrics, ROC points, history, epochs, wall time, device,
seed, the full TrainConfig) and is skipped when that file exists; an interrupted job resumes from its last epoch
(checkpoints live in --runs, default bench/runs, not committed). bench/results/reproduce.json gathers all jobs
(the lab's Compare tab reads it) and bench/report.py renders REPORT.md with plotly figures (HTML + PNG).
"""
import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import torch

from fdftnet.card import write_model_card
from fdftnet.checkpoint import load_model, save_checkpoint, write_json
from fdftnet.cli import _int_list  # "5,10,25" -> [5, 10, 25], a one-line argparse error on a typo
from fdftnet.inference import evaluate
from fdftnet.metrics import THRESHOLD_RULE, best_threshold, compute_metrics, jsonable
from fdftnet.train import (TrainConfig, TrainingError, finetune, flush_denormals, load_data, load_split, pretrain,
                           validate)

BACKBONES = ["shallownetv3", "squeezenet", "resnetv2_50", "xception"]
FEWSHOT_K = [25, 50, 100, 200, 300]  # per class; gan64/finetune has 400 a class, 100 of which are held out
ABLATION_SHOTS = [100, 250, 500]     # 1000 is the main run
RECIPE = "fdftnet-unfrozen-lowlr-no-cutout"  # the main variant run over several seeds (--recipe-seeds)
VAL_KEYS = ("acc", "auroc", "ap", "eer", "threshold")  # a job record's validation metrics


def _names(text: str) -> list[str]:
    """ "a,b," -> ["a", "b"]: a comma-separated option of names (backbones, policies)."""
    return [name for name in text.split(",") if name]


def seeded(key: str, seed: int) -> str:
    """A job key for `seed`: seed 0 keeps the plain key, the others get -s<seed>."""
    return key + (f"-s{seed}" if seed else "")


def job(key, group, stage, dataset, test, backbone, variant, seed=0, shots=None, base=None, **cfg):
    return dict(key=key, group=group, stage=stage, dataset=dataset, test=test, backbone=backbone, variant=variant,
                seed=seed, shots=shots, base=base, cfg=cfg)


def plan(args) -> list[dict]:
    """Every job of the protocol, in dependency order (a baseline before what builds on it)."""
    jobs, T = [], dict(epochs=args.epochs, patience=args.patience, batch_size=args.batch_size)
    baseline = dict(batch_size=64, monitor="val_loss")  # every dfdc64 baseline, at either budget
    lowlr = dict(freeze_backbone=False, backbone_lr=args.backbone_lr)
    recipe = dict(**lowlr, cutout=False)  # RECIPE: the two changes that each helped in the ablations, together
    for bb in args.backbones:
        base = f"dfdc64/{bb}/baseline"  # seed 0: what every FDFtNet of this backbone is built on
        for seed in args.baseline_seeds:  # the others measure how much the baseline itself varies with the seed
            jobs.append(job(seeded(base, seed), "main", "pretrain", "dfdc64", "dfdc64", bb,
                            "baseline", seed=seed, backbone_name=bb, epochs=args.epochs, patience=args.patience,
                            **baseline))
        for v, over in (("fdftnet-frozen", {}), ("fdftnet-unfrozen", dict(freeze_backbone=False)),
                        # unfrozen, the backbone at a lower lr: its pre-trained features move slowly
                        ("fdftnet-unfrozen-lowlr", lowlr), (RECIPE, recipe)):
            for seed in (args.recipe_seeds if v == RECIPE else [0]):  # seed 0 keeps the plain key
                jobs.append(job(seeded(f"dfdc64/{bb}/{v}", seed), "main", "finetune", "dfdc64",
                                "dfdc64", bb, v, seed=seed, base=base, mb_blocks=args.mb_blocks, **T, **over))
    for bb in args.backbones:  # the same comparison at the paper's budget (300 epochs, patience 20): a GPU's work
        base, budget = f"dfdc64/{bb}/long/baseline", dict(epochs=args.long_epochs, patience=args.long_patience)
        jobs.append(job(base, "long", "pretrain", "dfdc64", "dfdc64", bb, "baseline", backbone_name=bb,
                        **baseline, **budget))
        jobs.append(job(f"dfdc64/{bb}/long/{RECIPE}", "long", "finetune", "dfdc64", "dfdc64", bb, RECIPE, base=base,
                        mb_blocks=args.mb_blocks, **{**T, **budget}, **recipe))
    for bb in args.pretrained_backbones:  # ImageNet-pretrained backbones (EfficientNet-Lite, issue #23)
        jobs += pretrained_jobs(bb, args)
    small_data = {**PRETRAINED_BASELINE, "epochs": args.pretrained_epochs, "train_split": "finetune"}
    for bb in args.size_backbones:  # what backbone size buys: each trained the baseline's way on finetune's 2,000
        jobs.append(job(f"dfdc64/{bb}/pretrained/small-data", "pretrained", "pretrain", "dfdc64", "dfdc64", bb,
                        "small-data", backbone_name=bb, **{**small_data, "input_size": args.pretrained_size}))
    for px in (args.small_data_sizes if args.size_backbones else []):  # what input resolution buys, at that data size
        bb = args.size_backbones[0]
        jobs.append(job(f"dfdc64/{bb}/pretrained/small-data-{px}px", "pretrained", "pretrain", "dfdc64", "dfdc64", bb,
                        f"small-data-{px}px", backbone_name=bb, **{**small_data, "input_size": px}))
    if args.pretrained_backbones and args.peer_epochs:  # the from-scratch peer every detector is compared with
        jobs.append(job("dfdc64/resnet18/pretrained/scratch-peer", "pretrained", "pretrain", "dfdc64", "dfdc64",
                        "resnet18", "scratch-peer", backbone_name="resnet18",
                        **{**PRETRAINED_BASELINE, "pretrained": False, "input_size": 64, "epochs": args.peer_epochs}))
    for bb in args.selfblend_backbones:  # issue #21: reals only, the fakes self-blended (opt-in: CPU-hours)
        jobs += selfblend_jobs(bb, args)
    ab = args.ablation_backbone
    base = f"dfdc64/{ab}/baseline"
    variants = {"no-ftt": dict(use_ftt=False), "no-mbblock": dict(mb_blocks=0), "no-cutout": dict(cutout=False),
                "sgd-paper": dict(optimizer="sgd")}
    for name, over in variants.items():
        jobs.append(job(f"dfdc64/{ab}/ablation-{name}", "ablation", "finetune", "dfdc64", "dfdc64", ab,
                        f"ablation-{name}", base=base, **{"mb_blocks": args.mb_blocks, **T, **over}))
    for k in args.ablation_shots:
        jobs.append(job(f"dfdc64/{ab}/shots-{k}", "ablation", "finetune", "dfdc64", "dfdc64", ab, f"shots-{k}",
                        shots=k, base=base, mb_blocks=args.mb_blocks, **T))
    fs = args.fewshot_backbone
    base = f"dfdc64/{fs}/baseline"
    for k in args.fewshot_k:
        for seed in args.seeds:
            common = dict(shots=k, seed=seed, base=base)
            # one batch size for every method and k: at k = 25 a batch of 128 would be one step an epoch
            G = dict(holdout=args.holdout, val_split=None, train_split="finetune", **{**T, "batch_size": args.fewshot_batch_size})
            jobs.append(job(f"gan64/{fs}/k{k}/s{seed}/fdftnet", "fewshot", "finetune", "gan64", "gan64", fs,
                            "fdftnet", mb_blocks=args.mb_blocks, **common, **G))
            jobs.append(job(f"gan64/{fs}/k{k}/s{seed}/fdftnet-unfrozen", "fewshot", "finetune", "gan64", "gan64", fs,
                            "fdftnet-unfrozen", mb_blocks=args.mb_blocks, freeze_backbone=False, **common, **G))
            # the dfdc64 FDFtNet itself, FTT and MBblockV3 already trained, fine-tuned further (adapt = init_from)
            jobs.append(job(f"gan64/{fs}/k{k}/s{seed}/fdftnet-adapt", "fewshot", "finetune", "gan64", "gan64", fs,
                            "fdftnet-adapt", adapt=True, **{**common, "base": f"dfdc64/{fs}/fdftnet-frozen"}, **G))
            jobs.append(job(f"gan64/{fs}/k{k}/s{seed}/fdftnet-unfrozen-adapt", "fewshot", "finetune", "gan64",
                            "gan64", fs, "fdftnet-unfrozen-adapt", adapt=True, freeze_backbone=False,
                            **{**common, "base": f"dfdc64/{fs}/fdftnet-unfrozen"}, **G))
            jobs.append(job(f"gan64/{fs}/k{k}/s{seed}/head-only", "fewshot", "pretrain", "gan64", "gan64", fs,
                            "baseline-head", head_only=True, augment=True, **common, **G))
            jobs.append(job(f"gan64/{fs}/k{k}/s{seed}/full", "fewshot", "pretrain", "gan64", "gan64", fs,
                            "baseline-full", augment=True, **common, **G))
    return [j for j in jobs if _selected(j, args)]


# The plain pretrained fine-tune that issue #23 measured before any FDFtNet work: 128 px, ImageNet mean/std,
# AdamW 1e-3 one-cycle over 6 epochs, batch 64, flips only. It is both the peer ("reference") and the baseline
# every FDFtNet of the group is built on. The group selects epochs by validation AUROC: under one-cycle the
# validation loss bottoms out early (epoch 3 of 6 on Lite0) while ACC and AUROC keep rising to the last epoch.
PRETRAINED_BASELINE = dict(pretrained=True, input_size=128, optimizer="adamw", lr=1e-3, weight_decay=0.01,
                           schedule="onecycle", patience=100, batch_size=64, augment=True,
                           augment_policy="flip", cutout=False, monitor="val_auroc")


def pretrained_jobs(bb: str, args) -> list[dict]:
    """dfdc64, pretrained `bb`: the reference fine-tune (= baseline); FDFtNet on it (unfrozen at a low backbone lr,
    frozen) and the baseline trained on further, all at one fixed one-cycle budget on the finetune split; and a
    linear probe of the ImageNet features."""
    g, base = "pretrained", f"dfdc64/{bb}/pretrained/baseline"
    size = dict(input_size=args.pretrained_size, epochs=args.pretrained_epochs)
    jobs = [job(base, g, "pretrain", "dfdc64", "dfdc64", bb, "baseline", backbone_name=bb,
                **{**PRETRAINED_BASELINE, **size})]
    # FDFtNet and the control train as the baseline did (AdamW one-cycle, flips only), on their own epoch budget
    ft = on_baseline(args) | dict(mb_blocks=args.mb_blocks)
    # the headline pair over --pretrained-seeds, both on seed 0's baseline: FDFtNet, and the control it must beat,
    # the same baseline trained on at the backbone's lr on the same finetune split for the same epochs (more data
    # and more steps, but no FTT / MBblockV3)
    for seed in args.pretrained_seeds:
        jobs.append(job(seeded(f"dfdc64/{bb}/pretrained/fdftnet-unfrozen-lowlr", seed), g, "finetune", "dfdc64", "dfdc64", bb,
                        "fdftnet-unfrozen-lowlr", seed=seed, base=base, **ft, freeze_backbone=False,
                        backbone_lr=args.backbone_lr))
        jobs.append(job(seeded(f"dfdc64/{bb}/pretrained/baseline-continued", seed), g, "pretrain", "dfdc64", "dfdc64", bb,
                        "baseline-continued", seed=seed, base=base, backbone_name=bb, **continued(args)))
    # a recipe change on the control: flips plus colour, blur and JPEG (augment_policy "strong")
    jobs.append(job(f"dfdc64/{bb}/pretrained/baseline-continued-strong", g, "pretrain", "dfdc64", "dfdc64", bb,
                    "baseline-continued-strong", base=base, backbone_name=bb,
                    **{**continued(args), "augment_policy": "strong"}))
    # issue #23's other recipe options, each one change at --trial-seed, so that it pairs with the run it changes
    ts = args.trial_seed
    for name, over in CONTROL_TRIALS.items():
        jobs.append(job(seeded(f"dfdc64/{bb}/pretrained/baseline-continued-{name}", ts), g, "pretrain", "dfdc64", "dfdc64",
                        bb, f"baseline-continued-{name}", seed=ts, base=base, backbone_name=bb, **continued(args), **over))
    if args.pretrained_ft_epochs > 1:  # FDFtNet's new layers trained alone for an epoch, then with the backbone
        jobs.append(job(seeded(f"dfdc64/{bb}/pretrained/fdftnet-unfrozen-lowlr-warmup", ts), g, "finetune", "dfdc64",
                        "dfdc64", bb, "fdftnet-unfrozen-lowlr-warmup", seed=ts, base=base, **ft,
                        freeze_backbone=False, backbone_lr=args.backbone_lr, frozen_epochs=1))
    for k in args.cut_points:  # FDFtNet's cut point: MBblockV3 on an earlier stage of the same baseline
        jobs.append(job(seeded(f"dfdc64/{bb}/pretrained/fdftnet-unfrozen-lowlr-cut{k}", ts), g, "finetune", "dfdc64",
                        "dfdc64", bb, f"fdftnet-unfrozen-lowlr-cut{k}", seed=ts, base=base, **ft,
                        freeze_backbone=False, backbone_lr=args.backbone_lr, cut_blocks=k))
    jobs.append(job(f"dfdc64/{bb}/pretrained/fdftnet-frozen", g, "finetune", "dfdc64", "dfdc64", bb,
                    "fdftnet-frozen", base=base, **ft))
    jobs.append(job(f"dfdc64/{bb}/pretrained/linear-probe", g, "pretrain", "dfdc64", "dfdc64", bb, "linear-probe",
                    backbone_name=bb, head_only=True, **{**PRETRAINED_BASELINE, **size}))
    for px in args.pretrained_size_ablation:  # what the input resolution buys: the same baseline at other sizes
        jobs.append(job(f"dfdc64/{bb}/pretrained/baseline-{px}px", g, "pretrain", "dfdc64", "dfdc64", bb,
                        f"baseline-{px}px", backbone_name=bb, **{**PRETRAINED_BASELINE, **size, "input_size": px}))
    return jobs


# recipe options tried on the control (baseline-continued): an average of the weights (timm's ModelEmaV3, its decay
# warmed up), layer-wise lr decay (17 layer groups: the stem at 0.85 ** 17 = 6% of the lr), mixup / cutmix (timm's)
CONTROL_TRIALS = {"ema": dict(ema=0.995), "llrd": dict(layer_decay=0.85), "mixcut": dict(mixup=0.2, cutmix=1.0)}


def on_baseline(args) -> dict:
    """What every job built on the pretrained baseline trains with: the baseline's recipe (its weights and input size
    come from the baseline) for FDFtNet's epoch budget."""
    keep = {k: v for k, v in PRETRAINED_BASELINE.items() if k not in ("pretrained", "input_size")}
    return keep | dict(epochs=args.pretrained_ft_epochs)


def continued(args) -> dict:
    """The 'baseline-continued' control's settings: on_baseline's, on dfdc64/finetune at the backbone's lr."""
    return on_baseline(args) | dict(lr=args.backbone_lr, train_split="finetune")


def selfblend_jobs(bb: str, args) -> list[dict]:
    """dfdc64, the pretrained baseline's recipe with self-blended pseudo-fakes (docs/selfblend.md). reals-only:
    trained on dfdc64/train's reals alone, validated on a hold-out of them + fixed self-blends, so no DFDC fake is
    seen before the test; a batch of 32 reals becomes 64 images (the baseline's batch). reals-only draws
    `--selfblend-reals` of them for `--selfblend-epochs`; reals-only-all takes every one for `--selfblend-all-epochs`,
    per `--selfblend-seeds`, and reals-only-all-aug-* at seed 0 per `--selfblend-aug-policies`. mixed: the
    baseline's own data, `--selfblend-ratio` of each batch's fakes self-blended."""
    g = "selfblend"
    recipe = {**PRETRAINED_BASELINE, "input_size": args.pretrained_size, "pseudo_fakes": "self-blend"}
    reals_only = {**recipe, "reals_only": True, "batch_size": PRETRAINED_BASELINE["batch_size"] // 2, "val_split": None,
                  "holdout": args.selfblend_holdout}
    return [job(f"dfdc64/{bb}/selfblend/reals-only", g, "pretrain", "dfdc64", "dfdc64", bb, "reals-only",
                shots=args.selfblend_reals or None, backbone_name=bb, **{**reals_only, "epochs": args.selfblend_epochs})] + [
        # (a) at a larger budget: every train real but the hold-out, more epochs, over seeds
        job(seeded(f"dfdc64/{bb}/selfblend/reals-only-all", seed), g, "pretrain", "dfdc64", "dfdc64", bb,
            "reals-only-all", seed=seed, backbone_name=bb, **{**reals_only, "epochs": args.selfblend_all_epochs})
        for seed in args.selfblend_seeds] + [
        # the same at seed 0 with the base images augmented beyond flips (the blends are made from them): the
        # paper's shift/zoom, or the strong policy's colour, blur and JPEG
        job(f"dfdc64/{bb}/selfblend/reals-only-all-aug-{policy}", g, "pretrain", "dfdc64", "dfdc64", bb,
            f"reals-only-all-aug-{policy}", backbone_name=bb,
            **{**reals_only, "epochs": args.selfblend_all_epochs, "augment_policy": policy})
        for policy in args.selfblend_aug_policies] + [
        job(f"dfdc64/{bb}/selfblend/mixed", g, "pretrain", "dfdc64", "dfdc64", bb, "mixed", backbone_name=bb,
            **{**recipe, "epochs": args.pretrained_epochs, "pseudo_ratio": args.selfblend_ratio})] + [
        # (c) at the control's cost: the pretrained baseline trained on as 'baseline-continued' (= (b), same seeds)
        # with `--selfblend-ratio` of each batch's fakes self-blended
        job(seeded(f"dfdc64/{bb}/selfblend/continued-mixed", seed), g, "pretrain", "dfdc64",
            "dfdc64", bb, "continued-mixed", seed=seed, base=f"dfdc64/{bb}/pretrained/baseline", backbone_name=bb,
            **continued(args), pseudo_fakes="self-blend", pseudo_ratio=args.selfblend_ratio)
        for seed in args.pretrained_seeds]


def sweep_configs(args, results: Path) -> list:
    """The few-shot sweeps (fdftnet.sweep, the code behind `fdftnet sweep`): the shipped default's baseline and
    FDFtNet, fine-tuned on gan64 with k = 5..100 shots per class by every method, scored on gan64/test."""
    from fdftnet.sweep import METHODS, SweepConfig
    return [SweepConfig(data=str(Path(args.data) / "gan64"), init_from="default-baseline", shots=args.sweep_shots,
                        seeds=args.sweep_seeds, methods=list(METHODS), out=str(results / "sweep_gan64.json"),
                        work_dir=str(Path(args.runs) / "sweep"), device=args.device, limit=args.limit)]


def run_sweeps(args, results: Path) -> None:
    from fdftnet.sweep import run_sweep
    for cfg in sweep_configs(args, results):
        for ev in run_sweep(cfg):
            if ev["type"] == "start":
                print(f"sweep {cfg.out}: {ev['runs']} runs, {ev['done']} done", flush=True)
            elif ev["type"] == "run":
                print(f"  {ev['method']} k={ev['k']} seed {ev['seed']}: acc {ev['acc']:.4f} auroc {ev['auroc']:.4f}",
                      flush=True)


def _selected(j: dict, args) -> bool:
    """A job (or a job's record) that --match and --only let through."""
    return ((not args.match or any(re.search(m, j["key"]) for m in args.match))
            and (not args.only or j["group"] in args.only))


def run_job(j: dict, args) -> dict:
    """Train (or resume) one job, evaluate its best checkpoint on the test split, return the result record."""
    out = Path(args.runs) / j["key"]
    cfg = dict(j["cfg"])
    backbone = cfg.pop("backbone_name", j["backbone"])
    common = dict(out=str(out), data=str(Path(args.data) / j["dataset"]), seed=j["seed"], device=args.device,
                  shots=j["shots"], resume=True, limit=args.limit)
    base_dir = str(Path(args.runs) / j["base"]) if j["base"] else None
    if j["stage"] == "pretrain":
        tc = TrainConfig(stage="pretrain", backbone=backbone, init_from=base_dir, **common, **cfg)
        run = pretrain(tc)
    else:
        start = "init_from" if cfg.pop("adapt", False) else "backbone_from"
        tc = TrainConfig(stage="finetune", **{start: base_dir}, **common, **cfg)
        run = finetune(tc)
    t0, done = time.time(), None
    for ev in run:
        if ev["type"] == "epoch":
            print(f"  [{j['key']}] epoch {ev['epoch']}: val_acc {ev['val_acc']:.4f} val_auroc {ev['val_auroc']:.4f}"
                  f"{' *' if ev['improved'] else ''} ({ev['seconds']:.0f}s)", flush=True)
        elif ev["type"] == "done":
            done = ev
    wall = time.time() - t0
    model = load_model(out, device=tc.device if tc.device != "auto" else "cpu")
    test = load_split(TrainConfig(data=common["data"]), "test", args.limit)
    metrics = evaluate(model, test)
    record = json.loads((out / "training.json").read_text())  # written at the best epoch: history stops there
    return jsonable({
        **{k: j[k] for k in ("key", "group", "stage", "dataset", "backbone", "variant", "seed", "shots")},
        "base": j["base"], "test": metrics, "best_epoch": done["best_epoch"], "epochs_run": done["epochs_run"],
        "stopped_early": done["stopped_early"], "wall_s": wall, "history": record["history"],
        "train_seconds": done["train_seconds"],  # every epoch run, across resumes
        "validation": {k: record["validation"].get(k) for k in VAL_KEYS},
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)
        if j["stage"] == "finetune" and not tc.freeze_backbone else None,
        "train_config": record["train_config"], "device": _device_name(tc.device),
        "threshold_rule": record.get("threshold_rule"),
    })


def recalibrate_job(rec: dict, args, test_splits: dict) -> dict:
    """A finished job's record with its threshold set by today's rule (metrics.THRESHOLD_RULE).

    Training fixes the threshold only when it saves the best epoch and never reads it back, so re-running the job
    would give the same weights and the threshold this computes from the same validation images: the checkpoint
    (threshold and training.json) is rewritten and the test metrics re-evaluated, with no training. The validation
    loss must equal the one training recorded at the best epoch, or the job's data or weights are not what it
    trained on. `test_splits` (data folder -> test split) keeps each dataset's test images decoded across jobs."""
    out = Path(args.runs) / rec["key"]
    training = json.loads((out / "training.json").read_text())
    cfg = TrainConfig.from_dict({**training["train_config"], "data": str(Path(args.data) / rec["dataset"]),
                                 "limit": args.limit})
    _, val = load_data(cfg)
    model = load_model(out)
    old = float(model.threshold)
    scored, y, p = validate(model, val, "cpu", cfg.batch_size)  # as training scored it at each epoch
    best = next((h for h in training.get("history", []) if h["epoch"] == training.get("best_epoch")), None)
    if best is None:
        raise ValueError(f"{rec['key']}: its training.json has no history row for its best epoch to check against")
    if abs(scored["val_loss"] - best["val_loss"]) > 1e-5:
        raise ValueError(f"{rec['key']}: validation loss {scored['val_loss']:.6f} is not the {best['val_loss']:.6f} its "
                         f"training recorded at its best epoch; the checkpoint or the data changed, so it was not "
                         f"recalibrated")
    threshold, _ = best_threshold(y, p)
    model.threshold.fill_(threshold)
    val_m = compute_metrics(y, p, threshold=threshold)
    training.update(validation=jsonable(val_m), threshold_rule=THRESHOLD_RULE,
                    recalibrated={"from_threshold": old, "at": time.strftime("%Y-%m-%d %H:%M:%S")})
    save_checkpoint(model, out, extra_json={"training.json": training})
    write_model_card(out)
    if cfg.data not in test_splits:
        test_splits[cfg.data] = load_split(TrainConfig(data=cfg.data), "test", args.limit)
    return jsonable({**rec, "test": evaluate(model, test_splits[cfg.data]),
                     "validation": {k: val_m.get(k) for k in VAL_KEYS},
                     "threshold_rule": THRESHOLD_RULE, "recalibrated_from": old})


def _device_name(device: str) -> str:
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__})"


def export_default(args, results: Path, key: str, dest: Path = Path("checkpoints")) -> None:
    """Copy job `key`'s checkpoint and its baseline into checkpoints/ with test metrics (eval.json) and a card.

    Both folders are built in a staging folder first and swapped in only when both are complete, so an export that
    fails (missing run, unreadable file) leaves the checkpoints already there untouched."""
    import shutil
    import uuid

    from fdftnet.card import write_model_card
    rec_path = results / "jobs" / f"{key}.json"
    if not rec_path.exists():
        raise SystemExit(f"--export-default: no finished job {key!r} in {results / 'jobs'}")
    rec = json.loads(rec_path.read_text())
    if rec.get("base") is None:
        raise SystemExit(f"--export-default: {key!r} is not an FDFtNet job (it has no baseline)")
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".export-{uuid.uuid4().hex}"
    names = {}
    try:
        for kind, k in (("baseline", rec["base"]), ("fdftnet", key)):
            src = Path(args.runs) / k
            job_rec = json.loads((results / "jobs" / f"{k}.json").read_text())
            name = f"{kind}-{job_rec['backbone']}-{job_rec['dataset']}"
            out = staging / name
            out.mkdir(parents=True)
            for f in ("config.json", "model.safetensors"):
                shutil.copy2(src / f, out / f)
            training = json.loads((src / "training.json").read_text())
            if kind == "fdftnet":  # point the provenance at the exported baseline, not at the runs folder
                training["info"].update(base_model=str(dest / names["baseline"]), base_model_source="local")
            write_json(out / "training.json", training)
            test = {m: job_rec["test"][m] for m in ("acc", "auroc", "ap", "eer", "n", "threshold", "acc_best")}
            write_json(out / "eval.json", {**test, "split": "test", "data": job_rec["dataset"], "job": k})
            write_model_card(out, location=str(dest / name))  # the card names where the folder will be
            names[kind] = name
        _swap_in(staging, dest, list(names.values()))
    except FileNotFoundError as e:
        raise SystemExit(f"--export-default: {e.filename} is missing; checkpoints/ left as it was") from None
    except OSError as e:
        raise SystemExit(f"--export-default: could not move the export into {dest} ({e}); "
                         f"checkpoints/ left as it was") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_json(dest / "default.json", names)
    print(f"exported {names} to {dest}")


def _swap_in(staging: Path, dest: Path, names: list[str]) -> None:
    """Move staging/<name> to dest/<name> for every name, as one step: the folders already there are set aside
    first and put back if any move fails, so dest ends with all the new folders or all the old ones."""
    moved = []  # (name, whether an old folder was set aside), in order
    try:
        for name in names:
            had_old = (dest / name).exists()
            if had_old:
                os.replace(dest / name, staging / f"{name}.old")
            moved.append((name, had_old))
            os.replace(staging / name, dest / name)
    except OSError:
        for name, had_old in reversed(moved):
            if (dest / name).exists() and not (staging / name).exists():
                os.replace(dest / name, staging / name)  # the new folder out again
            if had_old:
                os.replace(staging / f"{name}.old", dest / name)
        raise


def gather(results: Path) -> dict:
    runs = [json.loads(p.read_text()) for p in sorted((results / "jobs").rglob("*.json"))]
    runs = [{**r, "metrics": r["test"]} for r in runs]  # "metrics": the test metrics, as the lab's Compare tab reads
    return {"runs": runs, "generated": time.strftime("%Y-%m-%d %H:%M:%S")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data", help="folder holding dfdc64/ and gan64/")
    ap.add_argument("--runs", default="bench/runs", help="checkpoints of every job (large; not committed)")
    ap.add_argument("--results", default="bench/results")
    ap.add_argument("--backbones", type=lambda s: s.split(","), default=BACKBONES)
    ap.add_argument("--pretrained-backbones", type=_names,
                    default=["efficientnet_lite0"],
                    help="ImageNet-pretrained backbones of the 'pretrained' group")
    ap.add_argument("--pretrained-size", type=int, default=128, help="their input size (the 64 px crops upsampled)")
    ap.add_argument("--pretrained-epochs", type=int, default=6, help="their baseline's epochs (one-cycle)")
    ap.add_argument("--pretrained-size-ablation", type=_int_list, default=[64, 224],
                    help="the baseline again at these input sizes")
    ap.add_argument("--pretrained-ft-epochs", type=int, default=6, help="FDFtNet epochs (one-cycle) on them")
    ap.add_argument("--pretrained-seeds", type=_int_list, default=[0, 1, 2],
                    help="seeds of their FDFtNet, of its control (the baseline trained on) and of the selfblend "
                         "group's continued-mixed, all on seed 0's baseline")
    ap.add_argument("--trial-seed", type=int, default=1,
                    help="the seed of the recipe trials (EMA, layer decay, mixup/cutmix, FDFtNet's frozen warm-up): "
                         "one of --pretrained-seeds, so each pairs with the run it changes")
    ap.add_argument("--cut-points", type=_int_list, default=[5, 6],
                    help="FDFtNet (unfrozen, low backbone lr, --trial-seed) again with MBblockV3 on the backbone's "
                         "first K block stages (EfficientNet-Lite)")
    ap.add_argument("--size-backbones", type=_names,
                    default=["efficientnet_lite0", "efficientnet_lite2"],
                    help="pretrained backbones trained as the baseline but on dfdc64/finetune (1,000 + 1,000 images), "
                         "at --pretrained-size: what a bigger backbone buys at a cost CPU can pay")
    ap.add_argument("--small-data-sizes", type=_int_list, default=[224],
                    help="the first --size-backbones' small-data run again at these input sizes")
    ap.add_argument("--peer-epochs", type=int, default=12,
                    help="the torchvision ResNet-18 peer, from scratch at 64 px with the baseline's recipe (0: none)")
    ap.add_argument("--selfblend-backbones", type=_names, default=[],
                    help="pretrained backbones of the 'selfblend' group (default: none; docs/selfblend.md ran "
                         "efficientnet_lite0)")
    ap.add_argument("--selfblend-epochs", type=int, default=3, help="its reals-only run's epochs (one-cycle)")
    ap.add_argument("--selfblend-all-epochs", type=int, default=6,
                    help="its reals-only-all runs' epochs (every train real but the hold-out)")
    ap.add_argument("--selfblend-aug-policies", type=_names,
                    default=["paper", "strong"],
                    help="augment policies of its reals-only-all-aug-* runs (TrainConfig.augment_policy)")
    ap.add_argument("--selfblend-seeds", type=_int_list, default=[0, 1], help="seeds of its reals-only-all runs")
    ap.add_argument("--selfblend-reals", type=int, default=1500,
                    help="its reals-only run: train reals drawn (seeded) from the rest (0: all 4,000 less the "
                         "hold-out; 1,500 fit a shared 2-core CPU's evening)")
    ap.add_argument("--selfblend-holdout", type=int, default=300,
                    help="its reals-only run: train reals held out (with one self-blend each) for validation")
    ap.add_argument("--selfblend-ratio", type=float, default=0.5, help="its mixed run: pseudo share of the fakes")
    ap.add_argument("--sweep-shots", type=_int_list, default=[5, 10, 25, 50, 100], help="the sweep group's k")
    ap.add_argument("--sweep-seeds", type=int, default=5, help="the sweep group's seeds")
    ap.add_argument("--ablation-backbone", default="shallownetv3")
    ap.add_argument("--ablation-shots", type=_int_list, default=ABLATION_SHOTS,
                    help="fine-tune shot counts per class for the shots ablation (1000, all, is the main run)")
    ap.add_argument("--fewshot-backbone", default="shallownetv3")
    ap.add_argument("--fewshot-k", type=_int_list, default=FEWSHOT_K)
    ap.add_argument("--seeds", type=_int_list, default=[0, 1, 2], help="few-shot seeds")
    ap.add_argument("--recipe-seeds", type=_int_list, default=[0, 1, 2], help=f"seeds of the {RECIPE} jobs")
    ap.add_argument("--baseline-seeds", type=_int_list, default=[0, 1, 2],
                    help="seeds of the dfdc64 baselines (FDFtNet is built on seed 0's)")
    ap.add_argument("--epochs", type=int, default=40, help="maximum epochs per job (paper: 300)")
    ap.add_argument("--patience", type=int, default=8, help="early-stopping patience (paper: 20)")
    ap.add_argument("--long-epochs", type=int, default=300, help="maximum epochs of the 'long' group (paper: 300)")
    ap.add_argument("--long-patience", type=int, default=20, help="early-stopping patience of the 'long' group (paper: 20)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--fewshot-batch-size", type=int, default=32, help="every few-shot job (k = 25 has 50 images)")
    ap.add_argument("--backbone-lr", type=float, default=1e-4,
                    help="the backbone's lr in the fdftnet-unfrozen-lowlr* jobs (the rest: Adam's 1e-3)")
    ap.add_argument("--mb-blocks", type=int, default=3, help="N (notebooks: 3; paper text: 4)")
    ap.add_argument("--holdout", type=int, default=100, help="gan64: images per class held out for early stopping")
    ap.add_argument("--limit", type=int, help="cap images per class per split (smoke runs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", type=lambda s: s.split(","), help="groups: main,long,pretrained,selfblend,ablation,fewshot,sweep")
    ap.add_argument("--match", type=lambda s: s.split(","), help="only jobs whose key one of these regular expressions is found in "
                    "(a plain part of a key matches as a substring; 'pretrained/baseline$' matches only that job)")
    ap.add_argument("--plan", action="store_true", help="list the jobs and exit")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--recalibrate", action="store_true",
                    help="re-set the threshold of finished jobs calibrated by an older rule (no training), "
                         "then re-render the report")
    ap.add_argument("--no-report", action="store_true",
                    help="write the job JSONs only (a machine without plotly); render later with --report-only")
    ap.add_argument("--export-default", metavar="KEY", help="copy this FDFtNet job and its baseline to checkpoints/")
    args = ap.parse_args(argv)
    flush_denormals()  # CPU epochs slow down threefold without it, as training goes on
    results = Path(args.results)
    jobs = plan(args)
    if args.export_default:
        export_default(args, results, args.export_default)
        return 0
    if args.plan:
        for j in jobs:
            done = (results / "jobs" / f"{j['key']}.json").exists()
            print(f"{'done' if done else 'todo'}  {j['key']}")
        return 0
    if args.recalibrate:  # every finished job on disk (also those outside today's plan), --match and --only apply
        test_splits = {}  # each dataset's test split, decoded once
        for path in sorted((results / "jobs").rglob("*.json")):
            rec = json.loads(path.read_text())
            if rec.get("threshold_rule") == THRESHOLD_RULE or not _selected(rec, args):
                continue
            try:
                new = recalibrate_job(rec, args, test_splits)
            except (TrainingError, ValueError, FileNotFoundError) as e:
                print(f"  not recalibrated: {e}", file=sys.stderr)
                continue
            write_json(path, new)
            print(f"{rec['key']}: threshold {new['recalibrated_from']:.4f} -> {new['test']['threshold']:.4f}, test acc "
                  f"{rec['test']['acc']:.4f} -> {new['test']['acc']:.4f}", flush=True)
    elif not args.report_only:
        for i, j in enumerate(jobs):
            path = results / "jobs" / f"{j['key']}.json"
            if path.exists():
                continue
            if j["base"] and not (Path(args.runs) / j["base"] / "config.json").exists():
                print(f"skip {j['key']}: its baseline {j['base']} has not been trained", file=sys.stderr)
                continue
            print(f"[{i + 1}/{len(jobs)}] {j['key']}", flush=True)
            try:
                rec = run_job(j, args)
            except (TrainingError, ValueError) as e:
                print(f"  failed: {e}", file=sys.stderr)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, rec)
            t = rec["test"]
            print(f"  test acc {t['acc']:.4f} auroc {t['auroc']:.4f} ({rec['wall_s']:.0f}s)", flush=True)
            write_json(results / "reproduce.json", gather(results))
    write_json(results / "reproduce.json", gather(results))
    if not args.report_only and not args.recalibrate and args.only and "sweep" in args.only:  # opt-in: ~2 h on CPU
        run_sweeps(args, results)
    if args.no_report:
        return 0
    from bench.report import render
    render(results)
    print(f"wrote {results / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
