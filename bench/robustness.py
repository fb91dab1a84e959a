"""Robustness bench: hostile files, fuzzing, SIGKILL + resume and load, with larger counts than the tests.

    python -m bench.robustness                       # writes bench/results/robustness.json
    python -m bench.robustness --fuzz 2000 --kills 8 --requests 400 --callers 4
    python -m bench.robustness --hardening-only      # only the issue-22 and issue-31 figures, merged into the JSON
    python -m bench.robustness --hardening-only --parts many_faces bystander hub uploads saturated paths

Same checks as tests/test_hostile_inputs.py, tests/test_kill_resume.py and tests/test_load.py (shared code
in bench/_hostile.py). CPU only, loopback only. Every count of failures should be 0.
"""
import argparse
import json
import platform
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench import _hostile as H
from bench.public_hardening import PARTS as PUBLIC_PARTS

ROOT = Path(__file__).resolve().parents[1]


def _one_line(e: Exception) -> bool:
    return bool(str(e)) and "\n" not in str(e)


def run_inputs(work: Path) -> dict:
    """Every table case through load_image (bytes and file) and both zip extractors."""
    from fdftnet.archive import extract_images_zip, extract_labelled_zip
    from fdftnet.data import DataError, load_image
    tried, unexpected, notes = 0, 0, []
    for kind, build in H.IMAGE_CASES.items():
        data, expect = build()
        path = work / f"{kind}.png"
        path.write_bytes(data)
        for src in (data, path):
            tried += 1
            try:
                arr = load_image(src, name=kind)
                if expect == "error":
                    raise AssertionError("accepted")
                expect(arr)
            except DataError as e:
                if expect != "error" or not _one_line(e):
                    unexpected += 1
                    notes.append(f"{kind}: {e}")
            except Exception as e:  # noqa: BLE001 - counted
                unexpected += 1
                notes.append(f"{kind}: {type(e).__name__}: {e}")
    for kind, build in H.ZIP_CASES.items():
        z = build(work / f"{kind}.zip")
        for extract in (extract_labelled_zip, extract_images_zip):
            tried += 1
            dest = work / f"out-{kind}-{extract.__name__}"
            try:
                paths = extract(z, dest)
                if extract is extract_images_zip and kind in H.DECODED_LATER:
                    bad = 0
                    for p, name in paths:
                        try:
                            load_image(p, name=name)
                        except DataError:
                            bad += 1
                    if bad != 1:
                        raise AssertionError(f"{bad} bad members decoded")
                else:
                    raise AssertionError("accepted")
            except DataError as e:
                if not _one_line(e):
                    unexpected += 1
            except Exception as e:  # noqa: BLE001
                unexpected += 1
                notes.append(f"{kind}/{extract.__name__}: {type(e).__name__}: {e}")
    escaped = [p.name for p in work.iterdir() if not (p.name.endswith((".zip", ".png")) or p.name.startswith("out-"))]
    if escaped:
        unexpected += 1
        notes.append(f"files outside the destinations: {escaped}")
    return {"tried": tried, "kinds": sorted(H.IMAGE_CASES) + sorted(H.ZIP_CASES), "unexpected_errors": unexpected,
            "notes": notes}


def run_fuzz(work: Path, n: int, seed: int) -> dict:
    """n random byte strings + n mutated images through load_image, n mutated zips through both extractors."""
    from fdftnet.archive import extract_images_zip, extract_labelled_zip
    from fdftnet.data import DataError, load_image
    rng = random.Random(seed)
    seeds = H.seed_images()
    zseed = H.labelled_zip(work / "seed.zip", n=4, size=8, wrapper="w/").read_bytes()
    examples, unexpected, decoded, notes = 0, 0, 0, []

    def ops():
        return [(rng.randrange(4), rng.randrange(2**16), rng.randrange(2**16)) for _ in range(rng.randint(1, 6))]

    for i in range(n):
        for data in (rng.randbytes(rng.randint(0, 2048)), H.mutate(seeds[i % len(seeds)], ops())):
            examples += 1
            try:
                arr = load_image(data)
                decoded += 1
                if arr.shape != (64, 64, 3) or arr.dtype != np.uint8:
                    raise AssertionError(f"shape {arr.shape} {arr.dtype}")
            except DataError:
                pass
            except Exception as e:  # noqa: BLE001
                unexpected += 1
                notes.append(f"image {i}: {type(e).__name__}: {e}")
        examples += 1
        with tempfile.TemporaryDirectory(dir=work) as d:
            parent = Path(d)
            (parent / "in.zip").write_bytes(H.mutate(zseed, ops()))
            for extract in (extract_labelled_zip, extract_images_zip):
                try:
                    extract(parent / "in.zip", parent / "sub" / "dest" / extract.__name__)
                except DataError:
                    pass
                except Exception as e:  # noqa: BLE001
                    unexpected += 1
                    notes.append(f"zip {i}: {type(e).__name__}: {e}")
            outside = [p for p in H.tree_snapshot(parent)
                       if not (p == "in.zip" or p in ("sub", "sub/dest") or p.startswith("sub/dest/"))]
            if outside:
                unexpected += 1
                notes.append(f"zip {i}: wrote outside the destination: {outside[:3]}")
    return {"examples": examples, "unexpected_errors": unexpected, "decoded_ok": decoded, "seed": seed,
            "notes": notes[:10]}


def run_kills(work: Path, kills: int, seed: int) -> dict:
    import torch

    from fdftnet import BaselineDetector
    from fdftnet.checkpoint import save_checkpoint
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_image_folder
    data = make_image_folder(work / "data", {"finetune": 16, "validation": 8})
    torch.manual_seed(0)
    base = save_checkpoint(BaselineDetector(backbone="squeezenet"), work / "base")
    s = H.kill_resume_run(data, base, work / "out", kills=kills, epochs=6, seed=seed, timeout=120,
                          log=work / "train.log")
    return {"count": s["kills"], "launches": s["launches"], "checkpoint_load_failures": s["checkpoint_load_failures"],
            "regressions": s["regressions"], "resumed_to_completion": s["resumed_to_completion"],
            "resume_epoch_after_each_kill": s["kill_epochs"], "stale_temp_entries": s["stale_temp_entries"],
            "problems": s["problems"]}


def run_load(work: Path, requests: int, callers: int) -> dict:
    proc, url, _ = H.start_app(work, ROOT / "app.py", timeout=90, env=H.ONE_THREAD)
    try:
        s = H.load_run(url, work / "client", requests=requests, callers=callers, timeout=max(90, requests * 0.6),
                       ft_images=max(40, requests // 2))  # enough training to outlast the requests
    finally:
        H.stop_app(proc)
    return {k: s[k] for k in ("requests", "callers", "failed", "p50_ms", "p95_ms", "during_finetune",
                              "finetune_epochs_during_load", "errors")}


def _big_png(path: Path, w: int, h: int) -> Path:
    """An RGBA PNG of w x h pixels that compresses to almost nothing: the cheap upload, the costly decode."""
    from PIL import Image
    Image.new("RGBA", (w, h), (90, 120, 150, 200)).save(path, optimize=False)
    return path


def run_budget(work: Path) -> dict:
    """The worst request the lab accepts (lab.detect.lab_budget): its decode time and peak memory, in a fresh
    process; and the audit's request (a zip of ten 40 Mpx PNGs), which must be refused from the headers."""
    import subprocess
    w, h, n = 4000, 3000, 4  # 12 Mpx each (the lab's per-image cap), 48 Mpx in all (its per-request cap)
    paths = [str(_big_png(work / f"big{i}.png", w, h)) for i in range(n)]
    code = ("import json, resource, sys, time; sys.path.insert(0, sys.argv[1]); from lab.detect import lab_budget; "
            "from fdftnet.data import load_image; b = lab_budget(); r0 = resource.getrusage(resource.RUSAGE_SELF)"
            ".ru_maxrss; t, c = time.perf_counter(), time.process_time(); [load_image(p, budget=b) for p in "
            "sys.argv[2:]]; print(json.dumps({'seconds': time.perf_counter() - t, 'cpu_seconds': time.process_time()"
            " - c, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'peak_before_mb': r0 / 1024,"
            " 'pixels': b.pixels}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code, str(ROOT), *paths], capture_output=True, text=True,
                                    check=True).stdout)
    from fdftnet.data import DataError, load_image
    from lab.detect import lab_budget
    bomb, refused = H.huge_png_header(6324, 6324), 0
    b = lab_budget()
    for _ in range(10):
        try:
            load_image(bomb, budget=b)
        except DataError:
            refused += 1
    return {"worst_accepted": f"{n} RGBA PNGs of {w}x{h} ({n * w * h / 1e6:.0f} Mpx) in one request",
            "decode_seconds": round(out["seconds"], 2), "decode_cpu_seconds": round(out["cpu_seconds"], 2),
            "peak_rss_mb": round(out["peak_mb"]),
            "rss_before_decode_mb": round(out["peak_before_mb"]), "audit_zip_of_ten_40mpx_pngs_refused": refused,
            "audit_pixels_decoded": b.pixels}


def run_detect_under_heavy(work: Path, requests: int = 40, heavy_clients: int = 4) -> dict:
    """/detect p50/p95 while `heavy_clients` keep sending the worst accepted /detect_many request."""
    import threading
    import zipfile

    from gradio_client import Client, handle_file
    z = work / "heavy.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        png = _big_png(work / "big.png", 4000, 3000).read_bytes()
        for i in range(4):
            zf.writestr(f"big{i}.png", png)
    face = work / "face.png"
    H.Image.fromarray(np.full((64, 64, 3), 110, np.uint8)).save(face)
    proc, url, _ = H.start_app(work, ROOT / "app.py", timeout=180)
    stop, heavy_done, lat = threading.Event(), [], []
    try:
        def heavy():
            c = Client(url, verbose=False, analytics_enabled=False)
            while not stop.is_set():
                try:
                    c.predict([handle_file(str(z))], "default", api_name="/detect_many")
                    heavy_done.append("ok")
                except Exception as e:  # noqa: BLE001 - counted
                    heavy_done.append(type(e).__name__)
        threads = [threading.Thread(target=heavy, daemon=True) for _ in range(heavy_clients)]
        for t in threads:
            t.start()
        time.sleep(5)  # the heavy requests are decoding
        c = Client(url, verbose=False, analytics_enabled=False)
        for _ in range(requests):
            t0 = time.perf_counter()
            c.predict(handle_file(str(face)), "default", api_name="/detect")
            lat.append(time.perf_counter() - t0)
        stop.set()
    finally:
        H.stop_app(proc)
    a = np.asarray(lat)
    return {"requests": requests, "heavy_clients": heavy_clients, "heavy_request": "zip of 4 RGBA 4000x3000 PNGs",
            "heavy_requests_finished": len(heavy_done), "p50_s": round(float(np.percentile(a, 50)), 2),
            "p95_s": round(float(np.percentile(a, 95)), 2), "target_p95_s": 3.0}


def run_sessions(work: Path, n: int = 100, ttl: float = 5.0) -> dict:
    """Disk left by `n` API sessions (one /detect_many each): right after, once idle past the TTL, after stop."""
    from gradio_client import Client, handle_file
    face = work / "face.png"
    H.Image.fromarray(np.full((64, 64, 3), 110, np.uint8)).save(face)
    proc, url, _ = H.start_app(work, ROOT / "app.py", timeout=180, env={"FDFTNET_SESSION_TTL": str(ttl)})

    def used() -> tuple[int, int]:
        dirs = list(work.glob("fdftnet-lab-*"))
        return len(dirs), sum(f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file())
    try:
        for _ in range(n):
            Client(url, verbose=False, analytics_enabled=False).predict([handle_file(str(face))], "default",
                                                                         api_name="/detect_many")
        after = used()
        time.sleep(ttl + 5)
        expired = used()
    finally:
        H.stop_app(proc)
    stopped = used()
    return {"sessions": n, "ttl_s": ttl, "folders_bytes_after_calls": after, "folders_bytes_after_ttl": expired,
            "folders_bytes_after_stop": stopped}


_MEMORY = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
def rss_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
import app  # the lab as the server builds it: the Blocks, the model cache, the default checkpoints
from lab import finetune, state as st
st.get_model(st.DEFAULT); st.get_model(st.DEFAULT_BASELINE)  # what a server has loaded once it answered
out = {"idle_mb": rss_mb(), "after_finetune_mb": [], "seconds": []}
session = st.new_session()
for i in range(3):
    t = time.perf_counter()
    for _ in finetune.run_finetune(sys.argv[2], None, None, st.DEFAULT_BASELINE, 0, int(sys.argv[3]), True, 3, 10,
                                   "", session, None):
        pass
    out["seconds"].append(round(time.perf_counter() - t, 1))
    out["after_finetune_mb"].append(rss_mb())
out["models"] = len(session["models"])
print(json.dumps(out))
"""


def run_memory(work: Path, images: int = 20, epochs: int = 5) -> dict:
    """Resident memory of the lab process after three fine-tunes in one session (issue #18: <= 1.5 GB)."""
    import subprocess
    z = H.labelled_zip(work / "set.zip", n=images, size=64)
    r = subprocess.run([sys.executable, "-c", _MEMORY, str(ROOT), str(z), str(epochs)], capture_output=True,
                       text=True, cwd=str(ROOT), env=dict(__import__("os").environ, HF_HUB_OFFLINE="1",
                                                          GRADIO_ANALYTICS_ENABLED="False", TMPDIR=str(work)))
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    m = json.loads(r.stdout.strip().splitlines()[-1])
    return {"checkpoints": "checkpoints/ (the shipped defaults)", "images_per_class": images, "epochs": epochs,
            "idle_rss_mb": round(m["idle_mb"]), "rss_after_each_finetune_mb": [round(x) for x in m["after_finetune_mb"]],
            "finetune_seconds": m["seconds"], "target_mb": 1536}


HARDENING = {"budget": run_budget, "detect_under_heavy": run_detect_under_heavy, "sessions": run_sessions,
             "lab_memory": run_memory, **PUBLIC_PARTS}  # the last: issue #31's cases (bench/public_hardening.py)


def run_hardening(out: Path, parts: list[str]) -> dict:
    """The issue-22 figures (and #18's memory), merged into an existing robustness.json part by part; a part
    that cannot run (e.g. the app does not start on an overloaded machine) is recorded with its reason."""
    old = json.loads(out.read_text()) if out.is_file() else {}
    result = {**old.get("hardening", {}), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores (shared with training "
                         f"and test runs), Python {platform.python_version()}"}
    with tempfile.TemporaryDirectory(prefix="hardening-") as d:
        for name in parts:
            (Path(d) / name).mkdir()
            try:
                result[name] = HARDENING[name](Path(d) / name)
            except Exception as e:  # noqa: BLE001 - recorded, the other parts still run
                result[name] = {"not_measured": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            print(f"{name}: {result[name]}", flush=True)
            old["hardening"] = result
            out.write_text(json.dumps(old, indent=2) + "\n")
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fuzz", type=int, default=500, help="fuzz rounds (each: 2 images + 1 zip)")
    p.add_argument("--kills", type=int, default=6)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--callers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "robustness.json"))
    p.add_argument("--hardening-only", action="store_true",
                   help="only the hardening figures: issue 22's (budget, /detect under heavy batches, disk after API "
                        "sessions, lab memory after three fine-tunes) and issue 31's (bench/public_hardening.py)")
    p.add_argument("--parts", nargs="+", choices=list(HARDENING), default=list(HARDENING),
                   help="with --hardening-only: which of them")
    args = p.parse_args(argv)
    if args.hardening_only:
        return run_hardening(Path(args.out), args.parts)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="robustness-") as d:
        d = Path(d)
        for sub in ("inputs", "fuzz", "kills", "load"):
            (d / sub).mkdir()
        inputs = run_inputs(d / "inputs")
        print(f"inputs: {inputs['tried']} tried, {inputs['unexpected_errors']} unexpected", flush=True)
        fuzz = run_fuzz(d / "fuzz", args.fuzz, args.seed)
        print(f"fuzz: {fuzz['examples']} examples, {fuzz['unexpected_errors']} unexpected", flush=True)
        kills = run_kills(d / "kills", args.kills, args.seed)
        print(f"kills: {kills['count']}, load failures {kills['checkpoint_load_failures']}, "
              f"resumed {kills['resumed_to_completion']}", flush=True)
        load = run_load(d / "load", args.requests, args.callers)
        print(f"load: {load['requests']} requests, failed {load['failed']}, p95 {load['p95_ms']} ms", flush=True)
    import torch
    result = {
        "inputs": inputs, "fuzz": fuzz, "kills": kills, "load": load,
        "data_lost": kills["checkpoint_load_failures"] + kills["regressions"] + (not kills["resumed_to_completion"]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores (shared), "
                   f"Python {platform.python_version()}, torch {torch.__version__}, CPU only",
        "seconds": round(time.time() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} in {result['seconds']} s")
    return result


if __name__ == "__main__":
    main()
