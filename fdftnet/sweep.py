"""Few-shot sweep: how fast does each method learn a new kind of fake from k examples per class?

For every seed it splits the data once (a pool to draw shots from, a held-out set to score on), then for every
k draws k images per class from the pool (nested: the k = 5 images are among the k = 10 ones), fine-tunes each
method from the same starting model on exactly those images, and scores it on the same held-out images.

    cfg = SweepConfig(data="../shared/data/gan64", init_from="default-baseline", shots=[5, 10, 25],
                      methods=["fdftnet", "baseline-head", "baseline-full", "linear-probe"], seeds=3,
                      out="bench/results/sweep_gan64.json")
    for ev in run_sweep(cfg):          # closing the generator cancels; finished runs stay in cfg.out
        if ev["type"] == "run": print(ev["method"], ev["k"], ev["seed"], ev["auroc"])

Methods (all start from cfg.init_from, a baseline detector):
    fdftnet        new FTT + MBblockV3 on the baseline's frozen backbone (the paper's fine-tune)
    fdftnet-adapt  the trained FDFtNet cfg.fdftnet_from, fine-tuned further (backbone frozen)
    baseline-head  the baseline with only its classification head trained (SGD-style, augmented)
    baseline-full  the whole baseline fine-tuned, at cfg.backbone_lr
    linear-probe   a logistic regression on the baseline's pooled features (L-BFGS, no augmentation),
                   written into its classifier: a baseline checkpoint like the others

A user with k examples has nothing else to choose an epoch or a threshold with, so neither does the sweep:
every trained method runs a fixed number of optimizer steps, and its threshold is calibrated on its own k
training images. AUROC needs no threshold; ACC shows how well that threshold carries over.
Events: see SWEEP_EVENTS below.
"""
import copy
import math
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import load_model, read_json, save_checkpoint, write_json
from .data import DataError, ImageSet
from .inference import evaluate, to_input
from .metrics import best_threshold, jsonable
from .models import FDFtNet, crop_size_of

__all__ = ["METHODS", "SweepConfig", "run_sweep", "summarize", "load_sweep", "format_table"]

METHODS = ("fdftnet", "fdftnet-adapt", "baseline-head", "baseline-full", "linear-probe")
SWEEP_EVENTS = """start: runs (planned), done (already in cfg.out), n_test {real, fake}, config
progress: method, k, seed, epoch, epochs        (inside a run)
run: method, k, seed, acc, auroc, ap, eer, threshold, n_train, n_test, train_seconds, model (a folder or None)
done: summary (summarize(runs)), out, best {method, k, seed, model, auroc} or None"""
RESULT_KEYS = ("acc", "auroc", "ap")


@dataclass
class SweepConfig:
    """Every setting of a sweep; saved in its JSON, so a resumed sweep must have the same ones."""
    data: str | None = None             # ROOT/SPLIT/{real,fake} (a benchmark) or ROOT/{real,fake} (an upload)
    hf_dataset: str | None = None       # or a Hugging Face dataset id / imagefolder directory
    image_column: str = "image"         # hf_dataset: its image and label columns, and the labels meaning real/fake
    label_column: str = "label"
    real_label: str = "real"
    fake_label: str = "fake"
    limit: int | None = None            # at most this many images per class per split (quick runs)
    init_from: str = "default-baseline"  # the baseline every method starts from (folder, Hub id or shipped name)
    fdftnet_from: str | None = None     # the trained FDFtNet "fdftnet-adapt" keeps fine-tuning (None: "default"
                                        # when init_from is "default-baseline")
    shots: list[int] = field(default_factory=lambda: [5, 10, 20])  # k per class (an upload of 2 x 60 has room)
    methods: list[str] = field(default_factory=lambda: ["fdftnet", "baseline-head", "baseline-full", "linear-probe"])
    seeds: int = 2                      # seeds 0 .. seeds-1: each its own split, shots, init and batch order
    train_split: str | None = None      # the pool: None = "finetune" if ROOT has it, else "train", else ROOT itself
    test_split: str | None = None       # None = "test" if ROOT has it, else the pool's images beyond the largest k
    steps: int = 60                     # optimizer steps of every trained method, whatever k
    checks: int = 6                     # times a run scores its training images (its "epochs"; at most steps)
    batch_size: int = 32                # at most; 2k when that is smaller
    lr: float = 1e-3                    # Adam, for new layers and heads (the authors' setting)
    backbone_lr: float = 1e-4           # baseline-full: a pretrained backbone moves slowly
    device: str = "auto"
    out: str | None = None              # JSON: rewritten after every run; the same out resumes the sweep
    work_dir: str | None = None         # run checkpoints (default: a temp folder)
    keep_models: bool = False           # keep every run's checkpoint (the lab sends the best one to Detect)

    def __post_init__(self):
        if (self.data is None) == (self.hf_dataset is None):
            raise ValueError("give one of data (an image folder) or hf_dataset")
        self.shots = sorted({int(k) for k in self.shots})
        if not self.shots or self.shots[0] < 1:
            raise ValueError("shots must be positive integers, e.g. 5,10,25")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown method {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}")
        self.methods = list(dict.fromkeys(self.methods))
        if not 1 <= self.seeds <= 20:
            raise ValueError(f"seeds must be 1..20, got {self.seeds}")
        if self.steps < 1 or self.checks < 1:
            raise ValueError("steps and checks must be >= 1")
        self.checks = min(self.checks, self.steps)

    def key(self) -> dict:
        """The settings that decide a run's result (a resumed sweep must share them); not where files go."""
        return {k: v for k, v in asdict(self).items() if k not in ("out", "work_dir", "keep_models", "device")}


# ----------------------------------------------------------------------------- data

def _load(cfg: SweepConfig, split: str, size: int) -> ImageSet:
    """A split decoded at `size` px, the starting baseline's crop size."""
    from .train import TrainConfig, load_split
    src = {k: getattr(cfg, k) for k in ("data", "hf_dataset", "image_column", "label_column", "real_label",
                                         "fake_label")}
    return load_split(TrainConfig(**src), split, cfg.limit, size=size)


def _splits(cfg: SweepConfig) -> tuple[str, str | None]:
    """(pool split, test split or None = held out of the pool); "." is ROOT itself (an upload)."""
    if cfg.hf_dataset is not None:
        return cfg.train_split or "train", cfg.test_split or "test"
    root = Path(cfg.data)
    if not root.is_dir():
        raise DataError(f"no dataset folder {root}")
    pool = cfg.train_split or next((s for s in ("finetune", "train") if (root / s).is_dir()), ".")
    test = cfg.test_split or ("test" if (root / "test").is_dir() else None)
    return pool, test


def split_for_seed(pool: ImageSet, test: ImageSet | None, k_max: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """(pool in drawing order, test): with no test split, each class's images beyond its first k_max (in the
    seed's order) are the held-out set. Shots for any k are then the first k of each class of the pool."""
    g = torch.Generator().manual_seed(10_007 * seed + 1)
    keep, held = [], []
    for label, name in enumerate(("real", "fake")):
        idx = torch.nonzero(pool.labels == label).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        need = k_max + (0 if test is not None else 2)
        if len(idx) < need:
            extra = "" if test is not None else " and at least 2 held out to score on"
            raise DataError(f"{name}: {len(idx)} images, but the largest k ({k_max}){extra} needs {need}; "
                            f"use smaller shots or add images")
        keep.append(idx[:k_max])
        held.append(idx[k_max:])
    order = torch.stack(keep, 1).flatten()  # real0, fake0, real1, fake1, ...: the first 2k are k per class
    return pool.subset(order), (test if test is not None else pool.subset(torch.cat(held)))


def shots_of(pool: ImageSet, k: int) -> ImageSet:
    return pool.subset(torch.arange(2 * k))


# ----------------------------------------------------------------------------- one run

def _train_config(cfg: SweepConfig, k: int, seed: int, out: Path, **over):
    """The TrainConfig of a trained run: a fixed number of steps in cfg.checks "epochs", no early stopping."""
    from .train import TrainConfig
    bs = min(cfg.batch_size, 2 * k)
    settings = dict(stage="finetune", out=str(out), data=cfg.data, batch_size=bs, epochs=cfg.checks,
                    patience=cfg.checks + 1, monitor="val_loss", optimizer="adam", lr=cfg.lr, augment=True,
                    precise_bn=2 * k, seed=seed, device=cfg.device, overwrite=True, meta={"sweep": {"k": k, "seed": seed}})
    return TrainConfig(**{**settings, **over})


def _repeat(train: ImageSet, tc, steps_per_check: int) -> ImageSet:
    """`train` repeated so that one pass ("epoch") is `steps_per_check` optimizer steps."""
    reps = max(1, math.ceil(steps_per_check * tc.batch_size / len(train)))
    return train.subset(torch.arange(len(train)).repeat(reps)[: max(len(train), steps_per_check * tc.batch_size)])


def _build(method: str, tc, base) -> nn.Module:
    """A fresh model for one run: FDFtNet as tc says (built by train.build_fdftnet), or a copy of the baseline
    `base`, loaded once per sweep."""
    from .train import build_fdftnet
    if method in ("fdftnet", "fdftnet-adapt"):
        return build_fdftnet(tc)[0]
    model = copy.deepcopy(base).train()
    if method == "baseline-head":
        model.freeze_features()
    return model


def _fdftnet_from(cfg: SweepConfig) -> str:
    if cfg.fdftnet_from:
        return cfg.fdftnet_from
    if cfg.init_from == "default-baseline":
        return "default"
    raise ValueError("method fdftnet-adapt needs fdftnet_from (--fdftnet-from): the trained FDFtNet to adapt")


def _trained_run(method: str, cfg: SweepConfig, base, train: ImageSet, k: int, seed: int, out: Path
                 ) -> Iterator[dict]:
    from .train import fit
    over = {"fdftnet": dict(backbone_from=cfg.init_from), "fdftnet-adapt": dict(init_from=cfg.fdftnet_from),
            "baseline-head": dict(stage="pretrain", head_only=True),
            "baseline-full": dict(stage="pretrain", lr=cfg.backbone_lr)}[method]
    tc = _train_config(cfg, k, seed, out, **over)
    torch.manual_seed(seed)
    model = _build(method, tc, base)
    looped = _repeat(train, tc, max(1, cfg.steps // cfg.checks))
    for ev in fit(model, looped, train, tc, {"stage": f"sweep/{method}", "k": k, "seed": seed}):
        if ev["type"] == "epoch":
            yield {"type": "progress", "method": method, "k": k, "seed": seed, "epoch": ev["epoch"],
                   "epochs": cfg.checks}


def _features(model, images: torch.Tensor, device: str) -> torch.Tensor:
    """The baseline's pooled features (what its classifier reads), in eval mode, as float64 on the CPU."""
    model.eval().to(device)
    bb, out = model.backbone, []
    with torch.no_grad():
        for i in range(0, len(images), 256):
            x = to_input(images[i:i + 256], device)
            out.append(bb.forward_head(bb.forward_features(model.preprocess(x)), pre_logits=True).double().cpu())
    return torch.cat(out)


def _probe_head(model) -> nn.Module:
    """The classifier a probe is written into: linear on the pooled features (a Linear, or SqueezeNet's 1x1 conv,
    which commutes with its average pool), two classes."""
    fc = model.backbone.get_classifier()
    linear = isinstance(fc, nn.Linear) or (isinstance(fc, nn.Conv2d) and fc.kernel_size == (1, 1))
    if not linear or fc.weight.shape[0] != 2:
        raise ValueError(f"method linear-probe needs a 2-class linear classifier; {model.backbone_name}'s is a "
                         f"{type(fc).__name__}")
    return fc


def _linear_probe(base, train: ImageSet, k: int, seed: int, out: Path, device: str) -> None:
    """Fit P(fake) = sigmoid(w . f + b) on the k-shot features (L2, L-BFGS) and write it into the classifier."""
    model = copy.deepcopy(base)
    fc = _probe_head(model)
    f, y = _features(model, train.images, device), train.labels.double()
    mu, sd = f.mean(0), f.std(0).clamp_min(1e-6)
    z = (f - mu) / sd
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w + b, y) + 1e-2 * (w @ w) / 2  # L2, C = 100 / n-ish
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():  # logits [0, w.(f - mu)/sd + b]: softmax's P(fake) is the regression's sigmoid
        weight = torch.zeros(2, len(w), dtype=torch.float64)  # (2, C); SqueezeNet's 1x1 conv: (2, C, 1, 1)
        weight[1] = w / sd
        bias = torch.zeros(2, dtype=torch.float64)
        bias[1] = b - (w / sd) @ mu
        fc.weight.copy_(weight.to(fc.weight.dtype).reshape(fc.weight.shape))
        fc.bias.copy_(bias.to(fc.bias.dtype))
        p = torch.sigmoid(z @ w + b).numpy()
    model.threshold.fill_(best_threshold(y.numpy(), p)[0])
    save_checkpoint(model, out, extra_json={"training.json": {"info": {"stage": "sweep/linear-probe", "k": k,
                                                                       "seed": seed}, "train_config": None}})


def _one_run(method, cfg, base, pool, test, k, seed, out: Path, device: str) -> Iterator[dict]:
    """Train one method on k shots, score it on `test`; yields progress events, then the run record."""
    train = shots_of(pool, k)
    t0 = time.time()
    if method == "linear-probe":
        _linear_probe(base, train, k, seed, out, device)
    else:
        yield from _trained_run(method, cfg, base, train, k, seed, out)
    seconds = time.time() - t0
    model = load_model(out, device=device)
    m = evaluate(model, test, device=device)
    yield jsonable({"type": "run", "method": method, "k": k, "seed": seed, **{key: m[key] for key in RESULT_KEYS},
                    "eer": m.get("eer"), "threshold": float(model.threshold), "n_train": len(train),
                    "n_test": len(test), "train_seconds": seconds,
                    "model": str(out) if cfg.keep_models else None})


# ----------------------------------------------------------------------------- the sweep

def load_sweep(path: str | Path) -> dict:
    """A sweep JSON (config, runs, summary); a DataError when it is not one."""
    try:
        d = read_json(path)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read sweep results {path}: {e}") from None
    if not isinstance(d, dict) or not isinstance(d.get("runs"), list) or not isinstance(d.get("config"), dict):
        raise DataError(f"{path} is not a sweep result (no config and runs)")
    return d


def _resume(cfg: SweepConfig) -> list[dict]:
    if not cfg.out or not os.path.exists(cfg.out):
        return []
    d = load_sweep(cfg.out)
    old = {k: v for k, v in d["config"].items() if k in cfg.key()}
    if old != cfg.key():
        diff = ", ".join(sorted(k for k in cfg.key() if old.get(k) != cfg.key()[k]))
        raise ValueError(f"{cfg.out} holds a sweep with other settings ({diff}): resume with the same settings, "
                         f"or write to another file")
    return d["runs"]


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and sd over seeds of ACC/AUROC/AP per (method, k); sd is 0 for one seed."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["method"], r["k"]), []).append(r)
    rows = []
    for (method, k), rs in sorted(groups.items(), key=lambda kv: (METHODS.index(kv[0][0]), kv[0][1])):
        row = {"method": method, "k": k, "n": len(rs)}
        for key in RESULT_KEYS:
            vals = [r[key] for r in rs if r.get(key) is not None and r[key] == r[key]]
            row[f"{key}_mean"] = statistics.fmean(vals) if vals else None
            row[f"{key}_sd"] = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None)
        rows.append(row)
    return rows


def format_table(summary: list[dict]) -> str:
    """Plain-text table: one line per method, one column per k, 'ACC / AUROC' as mean ± sd in percent."""
    ks = sorted({r["k"] for r in summary})
    cell = {(r["method"], r["k"]): r for r in summary}
    pct = lambda r, key: "–" if r[f"{key}_mean"] is None else f"{100 * r[f'{key}_mean']:.1f}±{100 * r[f'{key}_sd']:.1f}"  # noqa: E731
    lines = ["ACC / AUROC (%), mean ± sd over seeds", "method".ljust(15) + "".join(f"k={k}".ljust(24) for k in ks)]
    for m in dict.fromkeys(r["method"] for r in summary):
        lines.append(m.ljust(15) + "".join(
            (f"{pct(cell[m, k], 'acc')} / {pct(cell[m, k], 'auroc')}" if (m, k) in cell else "").ljust(24) for k in ks))
    return "\n".join(lines)


def _write(cfg: SweepConfig, runs: list[dict], seconds: float, device: str) -> None:
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(cfg.out, {"config": asdict(cfg), "runs": runs, "summary": summarize(runs),
                             "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "seconds": seconds, "device": device})


def device_name(device: str) -> str:
    """'cpu (2 threads)' or the GPU's name: where a sweep's times were measured."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({torch.get_num_threads()} threads)"


def run_sweep(cfg: SweepConfig) -> Iterator[dict]:
    """Every (seed, k, method) run, in that order, skipping those cfg.out already holds; see SWEEP_EVENTS."""
    from . import distributed as dist
    from .predict import resolve_model
    device = dist.setup(cfg.device)
    runs = _resume(cfg)
    saved = cfg  # what the JSON records: the names as given ("default-baseline"), not this machine's folders
    adapt = resolve_model(_fdftnet_from(cfg)) if "fdftnet-adapt" in cfg.methods else cfg.fdftnet_from
    cfg = replace(cfg, init_from=resolve_model(cfg.init_from), fdftnet_from=adapt)
    base = load_model(cfg.init_from, expect="baseline")  # once: baseline runs copy it; a bad one fails now
    if "linear-probe" in cfg.methods:
        _probe_head(base)
    if adapt:
        load_model(adapt, expect="fdftnet")
    done = {(r["method"], r["k"], r["seed"]) for r in runs}
    pool_split, test_split = _splits(cfg)
    pool = _load(cfg, pool_split, crop_size_of(base))
    test_all = _load(cfg, test_split, crop_size_of(base)) if test_split else None
    plan = [(s, k, m) for s in range(cfg.seeds) for k in cfg.shots for m in cfg.methods]
    t_start, prior = time.time(), sum(r.get("train_seconds", 0) for r in runs)
    work = Path(cfg.work_dir) if cfg.work_dir else Path(tempfile.mkdtemp(prefix="fdftnet-sweep-"))
    own_work = cfg.work_dir is None
    try:
        n_test = (test_all if test_all is not None else split_for_seed(pool, None, cfg.shots[-1], 0)[1]).counts()
        yield {"type": "start", "runs": len(plan), "done": len(done & set((m, k, s) for s, k, m in plan)),
               "n_test": n_test, "config": asdict(saved), "device": device}
        for seed in range(cfg.seeds):
            if all((m, k, seed) in done for k in cfg.shots for m in cfg.methods):
                continue
            seed_pool, test = split_for_seed(pool, test_all, cfg.shots[-1], seed)
            for k in cfg.shots:
                for method in cfg.methods:
                    if (method, k, seed) in done:
                        continue
                    out = work / method / f"k{k}" / f"s{seed}"
                    for ev in _one_run(method, cfg, base, seed_pool, test, k, seed, out, device):
                        if ev["type"] == "run":
                            record = {k2: v for k2, v in ev.items() if k2 != "type"}
                            runs.append(record)
                            _write(saved, runs, time.time() - t_start + prior, device_name(device))
                            if not cfg.keep_models:
                                shutil.rmtree(out, ignore_errors=True)
                        yield ev
        best = max(runs, key=lambda r: (r["auroc"] if r["auroc"] == r["auroc"] else -1, r["k"]), default=None)
        yield {"type": "done", "summary": summarize(runs), "out": saved.out,
               "best": None if best is None else {key: best[key] for key in ("method", "k", "seed", "model", "auroc")}}
    finally:
        if own_work and not cfg.keep_models:
            shutil.rmtree(work, ignore_errors=True)


def config_from_dict(d: dict) -> SweepConfig:
    names = {f.name for f in fields(SweepConfig)}
    return SweepConfig(**{k: v for k, v in d.items() if k in names})
