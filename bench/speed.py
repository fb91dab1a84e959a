"""Speed benchmark: latency, throughput, fine-tune epochs, app cold start, against the machine's own limit.

Per backbone (the baseline detector and FDFtNet on it, mb_blocks=3): single-image latency from a PNG on
disk to P(fake), forward throughput at batch 1/32/256, one fine-tune epoch over 2,000 images (frozen and
unfrozen backbone), FLOPs per image counted with torch.utils.flop_counter, and in the same run this
machine's float32 matrix-product rate, so every throughput is also a fraction of what the machine can do.
Nothing here is a timed test. Numbers move with other load on the machine: each row records
`others_cores`, the CPU other processes used while it was measured (0 = quiet).

    python -m bench.speed                        # JSON on stdout (~6 min on a 2-core CPU, --quick ~3)
    python -m bench.speed --quick --markdown     # short run, tables as markdown
    python -m bench.speed --from-json bench/results/speed_cpu.json --docs   # docs/speed.md's tables from the JSON
    python -m bench.speed --save                 # also writes bench/results/speed_<cpu|gpu>.json
    python -m bench.speed --backbones shallownetv3 --sections latency,throughput --save   # merges rows
"""
import argparse
import contextlib
import copy
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from fdftnet import BaselineDetector, FDFtNet, list_models
from fdftnet.data import AugmentConfig, Batches, ImageSet
from fdftnet.inference import _cpu_has_bf16, predict_files, predict_tensor, to_input
from fdftnet.layers import SelfAttention2d
from fdftnet.models.efficientnet_lite import IMAGENET_MEAN, IMAGENET_STD, PRETRAINED_PACKAGES
from fdftnet.train import forward_loss

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "speed.md"  # its tables sit between the markers that docs_markers() names


def _default_backbone() -> str:
    """The backbone of the shipped default FDFtNet (checkpoints/default.json), whose row the targets are read from."""
    name = json.loads((ROOT / "checkpoints" / "default.json").read_text())["fdftnet"]
    return json.loads((ROOT / "checkpoints" / name / "config.json").read_text())["backbone"]


DEFAULT_BACKBONE = _default_backbone()


def _default_crop() -> int:
    """The crop size of the shipped default FDFtNet: the face size its rows are measured at."""
    name = json.loads((ROOT / "checkpoints" / "default.json").read_text())["fdftnet"]
    return json.loads((ROOT / "checkpoints" / name / "config.json").read_text()).get("crop_size", 64)


DEFAULT_CROP = _default_crop()
CROP = DEFAULT_CROP  # the face crop every row is measured at (--crop-size); rows at other than 64 px are keyed @PX


def _key(kind: str, backbone: str) -> str:
    return f"{kind}/{backbone}" + (f"@{CROP}" if CROP != 64 else "")
MB_BLOCKS = 3
SECTIONS = ("latency", "throughput", "finetune", "fit", "app")
TARGETS = {  # issue 6, 2-core CPU
    "latency_p50_ms": 15.0,
    "frac_of_matmul_b256": 0.40,          # model forward at batch 256
    "predict_frac_of_matmul_b256": 0.40,  # predict_tensor on 256 images (chunks of CPU_CHUNK on a CPU)
    "frozen_epoch_s": 20.0,
    "app_cold_start_s": 8.0,
    "app_peak_rss_mb": 1536.0,
}
# issue 6, one H100/H200; its other GPU target (a fine-tune on real data to early stop in <= 60 s) is measured by
# bench/device_check.sh, not here
GPU_TARGETS = {
    "images_per_s_b1024": 20000.0,          # model forward at batch 1,024 (bf16 autocast)
    "predict_images_per_s_b1024": 20000.0,  # predict_tensor on 1,024 images
}
SETTINGS = {  # repetitions: full run / --quick
    "full": dict(lat_reps=100, tp_reps={1: 50, 32: 10, 256: 3}, ft_steps=None, ft_steps_heavy=3, fit=True,
                 extras=True),  # extras: latency by thread count, predict_tensor(amp=True) on CPU
    "quick": dict(lat_reps=30, tp_reps={1: 20, 32: 2, 256: 1}, ft_steps=4, ft_steps_heavy=1, fit=False,
                  extras=False),
}
HEAVY = {"resnetv2_50", "xception", *PRETRAINED_PACKAGES}  # a full CPU epoch of these takes minutes on 2 cores: time a few steps


# ----------------------------------------------------------------------------- machine

def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict:
    info = {
        "device": device, "cpu": _cpu_model(), "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],  # > cores means other work shared the CPU
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def matmul_rate(device: str, dtype=torch.float32, reps: int = 10) -> float:
    """Best-of-`reps` FLOP/s of one large square torch.mm: this machine's practical dense-math ceiling."""
    n = 8192 if device.startswith("cuda") else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(reps + 2):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i >= 2:  # the first two calls warm up the kernel and caches
            best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def _busy_s() -> float:
    """CPU seconds all processes have spent busy since boot (from /proc/stat), or nan where unreadable."""
    try:
        v = [int(t) for t in open("/proc/stat").readline().split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


@contextlib.contextmanager
def others_load(out: dict):
    """Fill out["others_cores"]: cores' worth of CPU other processes used while the block ran (noise)."""
    b0, c0, t0 = _busy_s(), time.process_time(), time.perf_counter()
    try:
        yield out
    finally:
        wall = time.perf_counter() - t0
        others = (_busy_s() - b0) - (time.process_time() - c0)
        out["others_cores"] = round(max(others, 0.0) / wall, 2) if wall > 0 and others == others else None


@contextlib.contextmanager
def _algorithmic_attention(model):
    """Count the FTT attention as the math defines it: the unpadded map (the fused path pads q/k to C)."""
    mods = [m for m in model.modules() if isinstance(m, SelfAttention2d)]
    saved = [getattr(m, "fused_min_positions", None) for m in mods]
    for m in mods:
        m.fused_min_positions = float("inf")
    try:
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            yield
    finally:
        for m, s in zip(mods, saved):
            if s is None:
                del m.fused_min_positions
            else:
                m.fused_min_positions = s


def count_flops(model, device: str) -> int:
    """FLOPs of one face crop through `model` (convolutions, matmuls and attention; 1 MAC = 2 FLOPs)."""
    x = torch.rand(1, 3, CROP, CROP, device=device)
    with torch.inference_mode(), _algorithmic_attention(model), FlopCounterMode(display=False) as fc:
        model(x)
    return int(fc.get_total_flops())


# ----------------------------------------------------------------------------- models

def build(kind: str, backbone: str, device: str, frozen: bool = True):
    torch.manual_seed(0)
    # ImageNet-pretrained backbones as they are trained and shipped: the crops fed at >= 128 px, normalised; a
    # native crop (> 64 px) is read by the FTT at 64 px, as FDFtNet.from_baseline builds it
    prep = dict(input_size=max(128, CROP), mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)) \
        if backbone in PRETRAINED_PACKAGES else dict(input_size=CROP)
    prep["crop_size"] = CROP
    if kind == "baseline":
        model = BaselineDetector(backbone, **prep)
    else:
        model = FDFtNet(backbone, mb_blocks=MB_BLOCKS, freeze_backbone=frozen, ftt_size=64 if CROP > 64 else None,
                        **prep)
    return model.to(device).eval()


def _maybe_compile(model, enabled: bool):
    return torch.compile(model) if enabled else model


def _pct(ts: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(ts) * 1e3, q))


# ----------------------------------------------------------------------------- measurements

def measure_latency(model, reps: int, tmp: Path) -> dict:
    """PNG on disk -> P(fake) through the package's own path (load_image + predict), after warm-up."""
    rng = np.random.default_rng(0)
    path = tmp / "face.png"
    Image.fromarray(rng.integers(0, 256, (CROP, CROP, 3), dtype=np.uint8)).save(path)
    for _ in range(10):
        predict_files(model, [path])
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        predict_files(model, [path])
        ts.append(time.perf_counter() - t)
    return {"p50_ms": _pct(ts, 50), "p95_ms": _pct(ts, 95), "min_ms": _pct(ts, 0), "reps": reps}


def measure_throughput(model, device: str, batch: int, reps: int, amp: bool, path: str = "forward") -> float:
    """Best-of-`reps` images/s at `batch`.

    path="forward": one model(x) call in inference_mode on float input laid out as predict_tensor makes
    it (NHWC); path="predict": the package's predict_tensor on uint8 images, P(fake) out (it may split the
    batch, see fdftnet.inference.CPU_CHUNK).
    """
    u8 = torch.randint(0, 256, (batch, CROP, CROP, 3), dtype=torch.uint8).permute(0, 3, 1, 2)  # (B, 3, H, W) view
    if path == "predict":
        def call():
            predict_tensor(model, u8, batch_size=batch, device=device, amp=amp)
    else:
        x = to_input(u8, device)
        dev_type = torch.device(device).type

        def call():
            with torch.inference_mode(), torch.autocast(dev_type, dtype=torch.bfloat16, enabled=amp):
                model(x)
    for _ in range(2 if batch < 256 else 1):
        call()
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        call()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return batch / best


def synthetic_set(n: int, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, CROP, CROP), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 2
    return ImageSet(images, labels, [f"synthetic/{i}" for i in range(n)])


def measure_finetune(backbone: str, frozen: bool, device: str, steps: int | None, amp: bool,
                     n: int = 2000, batch_size: int = 128) -> dict:
    """One epoch over `n` augmented images with fit()'s step (Adam, cross-entropy, Cutout); `steps` timed.

    steps=None times the whole epoch; otherwise the first `steps` batches, and the epoch time is extrapolated
    (marked so). Untimed warm-up first: one batch on a CPU, one whole epoch on a GPU.
    """
    model = build("fdftnet", backbone, device, frozen=frozen).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-5)
    data = synthetic_set(n)
    aug = AugmentConfig()
    batches = Batches(data, batch_size, shuffle=True, augment=aug, cutout=True, seed=0, device=device)
    use_amp = amp and device.startswith("cuda")  # as fit(): bf16 autocast on GPU only

    def step(x, y):
        _, loss = forward_loss(model, x, y, use_amp)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    total = len(batches)
    batches.set_epoch(1)
    if device.startswith("cuda"):  # a warm-up epoch: the last, partial batch's new shape costs seconds once
        for x, y in batches:       # (cuDNN picks kernels per shape), which no later epoch pays
            step(x, y)
    else:  # one warm-up batch (kernels, allocator), not timed
        step(*next(iter(batches)))
    batches.set_epoch(0)
    timed = total if steps is None else min(steps, total)
    _sync(device)
    t = t_step = time.perf_counter()
    per_step = []
    for i, (x, y) in enumerate(batches):  # the batch draw and augmentation are part of each step
        if i >= timed:
            break
        step(x, y)
        _sync(device)
        per_step.append(time.perf_counter() - t_step)
        t_step = time.perf_counter()
    dt = time.perf_counter() - t
    epoch = dt if timed == total else dt / timed * total
    # the median full step x steps (the last, partial batch counted as full): robust to a load spike
    return {"epoch_s": epoch, "epoch_s_median_step": float(np.median(per_step)) * total, "steps_timed": timed,
            "steps": total, "extrapolated": timed < total, "images": n, "batch_size": batch_size,
            "trainable": sum(p.numel() for p in params)}


def measure_fit(backbone: str, device: str, n: int = 2000, n_val: int = 256) -> dict:
    """fdftnet.train.fit itself for one epoch (frozen backbone): train + validation + checkpoint writes."""
    from fdftnet.train import TrainConfig, fit
    model = build("fdftnet", backbone, device, frozen=True).train()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(stage="finetune", data="(in memory)", out=str(Path(tmp) / "run"), epochs=1,
                          mb_blocks=MB_BLOCKS, device=device, seed=0)
        t = time.perf_counter()
        row = next(e for e in fit(model, synthetic_set(n), synthetic_set(n_val, seed=1), cfg) if e["type"] == "epoch")
        wall = time.perf_counter() - t
    return {"epoch_s": row["seconds"], "wall_s": wall, "images": n, "val_images": n_val,
            "batch_size": cfg.batch_size}


# ----------------------------------------------------------------------------- app

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(root: int) -> list[int]:
    """root and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure_app(timeout: float = 90.0) -> dict:
    """`python app.py` until its page answers HTTP 200; peak resident memory of its process tree."""
    app = ROOT / "app.py"
    if not app.exists():
        return {"cold_start_s": None, "peak_rss_mb": None, "reason": "app.py does not exist yet"}
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(app)], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    hwm: dict[int, int] = {}
    rss_peak, cold, reason = 0, None, None
    try:
        while time.perf_counter() - t0 < timeout:
            pids = _tree(proc.pid)
            for p in pids:
                hwm[p] = max(hwm.get(p, 0), _status_kb(p, "VmHWM"))
            rss_peak = max(rss_peak, sum(_status_kb(p, "VmRSS") for p in pids))
            if proc.poll() is not None:
                reason = f"app.py exited with code {proc.returncode}: " + proc.stderr.read().decode()[-300:]
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        cold = time.perf_counter() - t0
                        break
            except OSError:
                time.sleep(0.05)
        else:
            reason = f"no HTTP 200 within {timeout:.0f} s"
        for p in _tree(proc.pid):  # one last reading once the page is up
            hwm[p] = max(hwm.get(p, 0), _status_kb(p, "VmHWM"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the app's own session: only what we started
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    out = {"cold_start_s": cold, "peak_rss_mb": sum(hwm.values()) / 1024 if hwm else None,
           "peak_rss_sampled_mb": rss_peak / 1024, "processes": len(hwm),
           "note": "peak_rss_mb sums each process's VmHWM (an upper bound); sampled is the largest sum seen"}
    if reason:
        out["reason"] = reason
    return out


# ----------------------------------------------------------------------------- driver

def measure_model(model, kind: str, backbone: str, device: str, cfg: dict, sections: list[str], amp: bool,
                  rate: float, tmp: Path) -> dict:
    """Latency and throughput of one model; fractions are of the float32 matmul rate `rate` (FLOP/s)."""
    row = {}
    if "latency" in sections:
        row["latency"] = measure_latency(model, cfg["lat_reps"], tmp)
        if kind == "fdftnet" and backbone == DEFAULT_BACKBONE and device == "cpu" and cfg["extras"]:
            row["latency_by_threads"] = _latency_by_threads(model, cfg["lat_reps"], tmp)
    if "throughput" in sections:
        reps = dict(cfg["tp_reps"])
        if device.startswith("cuda"):
            reps[1024] = 5  # the GPU target batch
        row["images_per_s"] = {str(b): measure_throughput(model, device, b, n, amp) for b, n in reps.items()}
        big = max(reps)
        row["predict_images_per_s"] = {str(big): measure_throughput(model, device, big, reps[big], amp, "predict")}
        if device == "cpu" and _cpu_has_bf16() and cfg["extras"]:  # opt-in predict_tensor(amp=True): bf16
            row["predict_bf16_images_per_s"] = {
                str(big): measure_throughput(model, device, big, reps[big], True, "predict")}
    return row


def _fractions(row: dict, rate: float, ref: str = "fp32") -> None:
    """FLOP/s as a share of `rate`, the torch.mm rate in the precision the rows ran in (fp32, or bf16 under AMP)."""
    row[f"matmul_{ref}_gflops"] = rate / 1e9
    for src, dst in (("images_per_s", "frac_of_matmul"), ("predict_images_per_s", "predict_frac_of_matmul")):
        if src in row:
            row[dst] = {b: ips * row["flops_per_image"] / rate for b, ips in row[src].items()}


def run(args) -> dict:
    global CROP
    CROP = getattr(args, "crop_size", DEFAULT_CROP)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = SETTINGS["quick" if args.quick else "full"]
    sections = args.sections.split(",")
    backbones = args.backbones.split(",") if args.backbones else list_models()
    amp = device.startswith("cuda") and not args.no_amp  # CPU rows are float32: the targets are in those terms
    t_start = time.perf_counter()
    res = {"machine": machine_info(device), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "mode": "quick" if args.quick else "full", "compile": args.compile,
           "amp": amp, "models": {}, "finetune": {}}
    rate = matmul_rate(device)
    res["machine"]["matmul_fp32_gflops_start"] = rate / 1e9
    if device == "cpu" or torch.cuda.is_bf16_supported():
        res["machine"]["matmul_bf16_gflops"] = matmul_rate(device, torch.bfloat16) / 1e9
    tag = "+compile" if args.compile else ""

    def log(what):
        print(f"# {what}: done at {time.perf_counter() - t_start:.0f} s", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        for bb in backbones:
            for kind in ("baseline", "fdftnet"):
                if not {"latency", "throughput"} & set(sections):
                    break
                model = build(kind, bb, device)
                row = {"kind": kind, "backbone": bb, "flops_per_image": count_flops(model, device)}
                model = _maybe_compile(model, args.compile)
                with others_load(row):
                    row.update(measure_model(model, kind, bb, device, cfg, sections, amp, rate, Path(tmp)))
                res["models"][f"{_key(kind, bb)}{tag}"] = row
                log(f"{kind}/{bb}")
            if "finetune" in sections:
                for frozen in (True, False):
                    steps = cfg["ft_steps_heavy"] if bb in HEAVY and device == "cpu" else cfg["ft_steps"]
                    r = {}
                    with others_load(r):
                        r.update(measure_finetune(bb, frozen, device, steps, amp))
                    res["finetune"][f"{_key('fdftnet', bb)}/{'frozen' if frozen else 'unfrozen'}"] = r
                log(f"finetune {bb}")
    if "fit" in sections and cfg["fit"] and DEFAULT_BACKBONE in backbones:
        r = {}
        with others_load(r):
            r.update(measure_fit(DEFAULT_BACKBONE, device))
        res["fit"] = {f"{_key('fdftnet', DEFAULT_BACKBONE)}/frozen": r}
        log("fit")
    if "app" in sections:
        res["app"] = measure_app()
        log("app")
    # the ceiling again at the end; the larger reading is used, so a busy start cannot flatter the fractions
    res["machine"]["matmul_fp32_gflops_end"] = matmul_rate(device) / 1e9
    rate = max(rate, res["machine"]["matmul_fp32_gflops_end"] * 1e9)
    res["machine"]["matmul_fp32_gflops"] = rate / 1e9
    # under bf16 autocast the ceiling is the bf16 rate, not the fp32 one (where this GPU has a bf16 rate)
    bf16 = res["machine"].get("matmul_bf16_gflops") if amp else None
    for row in res["models"].values():
        _fractions(row, bf16 * 1e9 if bf16 else rate, "bf16" if bf16 else "fp32")
    res["seconds"] = time.perf_counter() - t_start
    return res


def _latency_by_threads(model, reps: int, tmp: Path) -> dict:
    """Single-image p50 at each intra-op thread count: small batches can lose to a busy second core."""
    before = torch.get_num_threads()
    out = {}
    try:
        for n in range(1, (os.cpu_count() or 1) + 1):
            torch.set_num_threads(n)
            out[str(n)] = measure_latency(model, reps, tmp)["p50_ms"]
    finally:
        torch.set_num_threads(before)
    return out


def merge(old: dict, new: dict) -> dict:
    """Rows measured now replace the same rows of a saved result; the rest are kept with their own run."""
    out = copy.deepcopy(old)
    runs = out.pop("runs", None) or [{k: old.get(k) for k in ("started", "mode", "machine", "seconds")}]
    for key in ("models", "finetune", "fit"):
        out.setdefault(key, {}).update(new.get(key, {}))
    if "app" in new:
        out["app"] = new["app"]
    for k in ("machine", "started", "mode", "compile", "amp", "seconds"):
        out[k] = new[k]
    out["runs"] = runs + [{k: new.get(k) for k in ("started", "mode", "machine", "seconds")}]
    return out


def on_gpu(res: dict) -> bool:
    return res["machine"]["device"].startswith("cuda")


def check_targets(res: dict) -> dict:
    """The issue's targets for the default model (the CPU ones, or on a GPU the GPU ones), beside what was measured."""
    key = f"fdftnet/{DEFAULT_BACKBONE}" + (f"@{DEFAULT_CROP}" if DEFAULT_CROP != 64 else "")
    row = res.get("models", {}).get(key, {})
    if on_gpu(res):
        got = {"images_per_s_b1024": row.get("images_per_s", {}).get("1024"),
               "predict_images_per_s_b1024": row.get("predict_images_per_s", {}).get("1024")}
        return {k: {"target": t, "measured": got[k], "met": None if got[k] is None else got[k] >= t}
                for k, t in GPU_TARGETS.items()}
    ft = res.get("finetune", {}).get(f"{key}/frozen", {})
    app = res.get("app", {})
    got = {
        "latency_p50_ms": row.get("latency", {}).get("p50_ms"),
        "frac_of_matmul_b256": row.get("frac_of_matmul", {}).get("256"),
        "predict_frac_of_matmul_b256": row.get("predict_frac_of_matmul", {}).get("256"),
        "frozen_epoch_s": ft.get("epoch_s"),
        "app_cold_start_s": app.get("cold_start_s"),
        "app_peak_rss_mb": app.get("peak_rss_mb"),
    }
    out = {}
    for k, target in TARGETS.items():
        v = got[k]
        met = None if v is None else (v >= target if "frac" in k else v <= target)
        out[k] = {"target": target, "measured": v, "met": met}
    return out


# ----------------------------------------------------------------------------- markdown

def _f(v, fmt="{:.0f}", none="–"):
    return none if v is None else fmt.format(v)


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"Measured on {m['cpu']} ({m['cores']} cores, {m['threads']} threads, torch {m['torch']}"
        + (f", {m['gpu']}" if m.get("gpu") else "") + f"); float32 `torch.mm` rate "
        f"{m['matmul_fp32_gflops']:.0f} GFLOP/s"
        + (f", bfloat16 {m['matmul_bf16_gflops']:.0f} GFLOP/s"
           if res.get("amp") and m.get("matmul_bf16_gflops") else "")
        + f"; load average {m['load_avg'][0]:.1f} at the start. "
        f"`python -m bench.speed{' --quick' if res['mode'] == 'quick' else ''}`"
        + (f", {len(res['runs'])} runs (`--backbones`/`--sections` groups) merged by `--save`." if res.get("runs")
           else "."),
        "",
    ]
    models = res.get("models", {})
    batches = sorted({int(b) for r in models.values() for b in r.get("images_per_s", {})}) or [1, 32, 256]
    big = str(batches[-1])
    bf16 = any("predict_bf16_images_per_s" in r for r in models.values())
    amp = " bf16" if res.get("amp") else ""
    lines += [
        "| model | MFLOP/img | latency p50 / p95 (ms) | " + " | ".join(f"img/s b={b}{amp}" for b in batches)
        + f" | predict_tensor b={big}{amp}" + (f" | predict_tensor(amp=True) b={big}" if bf16 else "") + " |",
        "|---|---:|---:|" + "---:|" * (len(batches) + 1 + bf16),
    ]

    def cell(ips: dict, frac: dict, b: str) -> str:  # "1234 (35%)": images/s and its share of the mm rate
        return _f(ips.get(b)) + _f(frac.get(b) and 100 * frac[b], " ({:.0f}%)", none="")

    for name, r in models.items():
        lat = r.get("latency", {})
        cells = [cell(r.get("images_per_s", {}), r.get("frac_of_matmul", {}), str(b)) for b in batches]
        cells.append(cell(r.get("predict_images_per_s", {}), r.get("predict_frac_of_matmul", {}), big))
        if bf16:
            cells.append(_f(r.get("predict_bf16_images_per_s", {}).get(big)))
        lines.append(f"| {name} | {r['flops_per_image'] / 1e6:.0f} | {_f(lat.get('p50_ms'), '{:.1f}')} / "
                     f"{_f(lat.get('p95_ms'), '{:.1f}')} | " + " | ".join(cells) + " |")
    ref = "bf16" if any("matmul_bf16_gflops" in r for r in models.values()) else "fp32"  # what the fractions are of
    rates = [r[f"matmul_{ref}_gflops"] for r in models.values() if f"matmul_{ref}_gflops" in r]
    lines += ["", "Images/s are best of several runs; (x%) is FLOP/s as a share of the "
                  f"{'bfloat16 (the rows ran under bf16 autocast)' if ref == 'bf16' else 'float32'} `torch.mm` rate "
                  + (f"measured in the same run ({min(rates):.0f}–{max(rates):.0f} GFLOP/s across the merged runs)"
                     if rates and max(rates) - min(rates) > 0.5 else "measured in the same run")
                  + ". Latency: a PNG on disk to P(fake) through `predict_files`. `+compile` rows: "
                    "`torch.compile(model)` (`--compile`, off by default)."]
    if res.get("finetune"):
        lines += ["", "| fine-tune epoch, 2,000 images, batch 128 | frozen backbone (s) | unfrozen (s) |",
                  "|---|---:|---:|"]
        for bb in dict.fromkeys(k.rsplit("/", 1)[0] for k in res["finetune"]):
            cells = []
            for mode in ("frozen", "unfrozen"):
                r = res["finetune"].get(f"{bb}/{mode}")
                cells.append("–" if r is None else f"{r['epoch_s']:.1f}" + (
                    f" (from {r['steps_timed']} of {r['steps']} steps)" if r["extrapolated"] else ""))
            lines.append(f"| {bb} | {cells[0]} | {cells[1]} |")
    for name, r in res.get("fit", {}).items():
        lines += ["", f"`fit()` itself, {name}, one epoch incl. validation on {r['val_images']} images: "
                      f"{r['epoch_s']:.1f} s ({r['wall_s']:.1f} s with checkpoint writes)."]
    loads = [r["others_cores"] for part in ("models", "finetune", "fit") for r in res.get(part, {}).values()
             if r.get("others_cores") is not None]
    if loads:
        lines += ["", f"Other processes used {min(loads):.2f}–{max(loads):.2f} cores' worth of CPU while these rows "
                      f"were measured (0 = a quiet machine; the JSON has it per row)."]
    app = res.get("app")
    if app:
        lines += ["", "App cold start (`python app.py` until the page answers): " + (
            f"{app['cold_start_s']:.1f} s, peak resident memory {app['peak_rss_mb']:.0f} MB."
            if app.get("cold_start_s") is not None else f"not measured ({app.get('reason')}).")]
    t = check_targets(res)
    where = "GPU" if on_gpu(res) else "2-core CPU"
    lines += ["", f"| target (default model, {where}) | goal | measured | met |", "|---|---:|---:|:---:|"]
    for k, v in t.items():
        meas = v["measured"]
        frac, rate = "frac" in k, "images_per_s" in k
        meas = "–" if meas is None else (f"{100 * meas:.0f}%" if frac else f"{meas:.0f}" if rate else f"{meas:.1f}")
        goal = f"{100 * v['target']:.0f}%" if frac else f"≥ {v['target']:g}" if rate else f"{v['target']:g}"
        lines.append(f"| {k} | {goal} | {meas} | {'–' if v['met'] is None else ('yes' if v['met'] else 'no')} |")
    return "\n".join(lines)


def docs_markers(res: dict) -> tuple[str, str]:
    """The two lines in docs/speed.md between which --docs writes this result's tables (one pair per device)."""
    key = "gpu" if on_gpu(res) else "cpu"
    return (f"<!-- generated by `python -m bench.speed --from-json bench/results/speed_{key}.json --docs`: "
            f"edit the JSON's renderer, not this block -->", f"<!-- end of bench.speed {key} tables -->")


def write_docs(res: dict, path: Path = DOCS) -> Path:
    """Replace the block between this device's markers in docs/speed.md with markdown(res)."""
    begin, end = docs_markers(res)
    text = path.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"bench.speed: {path} has no block for these tables (want the lines {begin} ... {end})")
    head, rest = text.split(begin, 1)
    path.write_text(head + begin + "\n" + markdown(res) + "\n" + end + rest.split(end, 1)[1])
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, extrapolated epochs")
    ap.add_argument("--markdown", action="store_true", help="print the tables as markdown instead of JSON")
    ap.add_argument("--docs", action="store_true", help=f"also write the tables into {DOCS.relative_to(ROOT)}")
    ap.add_argument("--save", action="store_true", help="write (merge into) bench/results/speed_<cpu|gpu>.json")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backbones", default=None, help="comma list (default: all registered)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the whole run")
    ap.add_argument("--crop-size", type=int, default=DEFAULT_CROP,
                    help=f"face crop size the models are built and fed at (default: the default's, {DEFAULT_CROP})")
    ap.add_argument("--compile", action="store_true", help="time torch.compile'd models (rows get +compile)")
    ap.add_argument("--no-amp", action="store_true", help="GPU: float32 instead of bf16 autocast")
    ap.add_argument("--from-json", default=None, help="render --markdown from a saved result, measure nothing")
    args = ap.parse_args(argv)
    if args.from_json:
        res = json.loads(Path(args.from_json).read_text())
    else:
        res = run(args)
        if args.save:
            path = RESULTS / f"speed_{'gpu' if on_gpu(res) else 'cpu'}.json"
            partial = args.backbones or args.sections != ",".join(SECTIONS)
            if partial and path.exists():
                res = merge(json.loads(path.read_text()), res)
            res["targets"] = check_targets(res)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(res, indent=1) + "\n")
    res["targets"] = check_targets(res)
    if args.docs:
        print(f"wrote {write_docs(res)}", file=sys.stderr)
    print(markdown(res) if args.markdown else json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
