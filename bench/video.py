"""Video bench (issue #33): a 10-s 720p clip with one face through `analyze_video` at the default 32 frames (wall
time, CPU time, peak memory, in a fresh process), and every hostile clip of tests/test_video.py (time and CPU each).

    python -m bench.video [--model default] [--out bench/results/video.json]

Targets: the 720p clip in <= 10 s on 2 cores with <= 1.5 GB resident; each hostile clip answered in <= 5 s of CPU.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_RUN = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
t0, c0 = time.perf_counter(), time.process_time()
from fdftnet import load_model
from fdftnet.predict import resolve_model
from fdftnet.video import VideoError, analyze_video
model = load_model(resolve_model(sys.argv[2]))
out = {"load_s": time.perf_counter() - t0, "runs": {}}
for path in sys.argv[3:]:
    t, c = time.perf_counter(), time.process_time()
    try:
        r = analyze_video(model, path, frames=32)
        answer = f"{len(r['tracks'])} tracks, {r['frames_sampled']} frames, verdict {r['verdict']}"
    except VideoError as e:
        answer = f"refused: {e}"
    out["runs"][path] = {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c,
                         "answer": answer}
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def main(argv=None) -> dict:
    sys.path.insert(0, str(ROOT))
    from bench import _clips as C
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "video.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        clip = C.make_clip(d / "720p.mp4", faces=[C.astronaut_face(300)], seconds=10, fps=30, width=1280, height=720)
        hostile = {"lying_length": C.lying_duration(clip, d / "lying_length.mp4"),
                   "lying_size_20000x20000": C.lying_size_y4m(d / "lying_size.mp4"),
                   "truncated": C.truncated(clip, d / "truncated.mp4"), "audio_only": C.audio_only(d / "audio.mp4"),
                   "still_image_renamed": C.still_renamed(d / "still.mp4"),
                   "no_face": C.make_clip(d / "no_face.mp4", faces=[], seconds=10, fps=30, width=1280, height=720)}
        paths = [str(clip)] + [str(p) for p in hostile.values()]
        r = subprocess.run([sys.executable, "-c", _RUN, str(ROOT), args.model, *paths], capture_output=True,
                           text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), cwd=str(ROOT))
        if r.returncode:
            raise SystemExit(r.stderr[-2000:])
        m = json.loads(r.stdout.strip().splitlines()[-1])
        runs = m["runs"]
        main_run = runs[str(clip)]
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d"), "model": args.model, "load_average_at_end": os.getloadavg()[0],
            "clip_720p_10s_one_face": {**{k: round(v, 2) if isinstance(v, float) else v for k, v in main_run.items()},
                                       "frames": 32, "target_seconds": 10.0},
            "peak_rss_mb": round(m["peak_rss_mb"]), "target_rss_mb": 1536, "model_load_s": round(m["load_s"], 2),
            "hostile": {name: {k: round(v, 3) if isinstance(v, float) else v for k, v in runs[str(p)].items()}
                        for name, p in hostile.items()},
            "hostile_target_cpu_seconds": 5.0,
        }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
