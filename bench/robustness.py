"""Robustness bench: hostile files, fuzzing, SIGKILL + resume and load, with larger counts than the tests.

    python -m bench.robustness                       # writes bench/results/robustness.json
    python -m bench.robustness --fuzz 2000 --kills 8 --requests 400 --callers 4

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


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fuzz", type=int, default=500, help="fuzz rounds (each: 2 images + 1 zip)")
    p.add_argument("--kills", type=int, default=6)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--callers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "robustness.json"))
    args = p.parse_args(argv)
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
