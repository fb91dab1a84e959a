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


from ._commands import (  # noqa: E402 - after the argparse types the parser uses
    _cmd_build_data, _cmd_calibrate, _cmd_crop_faces, _cmd_evaluate, _cmd_models, _cmd_predict, _cmd_pull, _cmd_push,
    _cmd_sweep, _cmd_train)

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
