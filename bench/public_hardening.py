"""Issue #31's cases against a launched lab in public mode (SPACE_ID set), with figures for robustness.json.

Run through `python -m bench.robustness --hardening-only --parts many_faces bystander hub uploads saturated
disk_after_leave paths` (each part is a function here, registered in bench.robustness.HARDENING). Clients are told
apart by X-Forwarded-For behind one trusted proxy hop (FDFTNET_PROXY_HOPS=1), as on a Space; the Hub is
bench._fakehub on loopback, logging every Authorization header; the server's CPU time per request is read from
/proc. Timings are for the machine the JSON names, shared with whatever else ran; they are figures, not tests.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench import _hostile as H
from bench._fakehub import FakeHub, checkpoint_files

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {"SPACE_ID": "fdftnet/bench", "FDFTNET_PROXY_HOPS": "1", "HF_TOKEN": "hf_owner_secret"}
MESSAGES: list[str] = []  # every refusal the parts provoke, for the server-path count ("paths")
_SERVER_PATH = re.compile(r"(?<![\w.~:/-])/(?:tmp|root|home|work|var|usr|proc)/")


def _cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _client(url: str, ip: str):
    from gradio_client import Client
    return Client(url, verbose=False, analytics_enabled=False, headers={"X-Forwarded-For": ip},
                  httpx_kwargs={"timeout": 120})  # a busy server answers late; a hang guard, not a bound


def many_face_pngs(work: Path) -> dict[str, Path]:
    """The audit's photos: 1,936 faces of 24 px, 676 of 40 px, one face tiled 500 times (each a small PNG)."""
    from skimage import data
    face = Image.fromarray(data.astronaut()).crop((150, 30, 300, 200))
    out = {}
    for name, side, rows, cols in (("1936_faces_24px", 24, 44, 44), ("676_faces_40px", 40, 26, 26),
                                   ("one_face_tiled_500", 48, 20, 25)):
        path = work / f"{name}.png"
        Image.fromarray(np.tile(np.asarray(face.resize((side, side))), (rows, cols, 1))).save(path, optimize=True)
        out[name] = path
    return out


def _start(work: Path, **env):
    env = {**PUBLIC, "FDFTNET_CHECKPOINTS": str(ROOT / "checkpoints"), **env}
    return H.start_app(work, ROOT / "app.py", timeout=180, env=env)


def _detect(c, path: Path) -> tuple[float, str]:
    from gradio_client import handle_file
    t = time.perf_counter()
    try:
        res = c.predict(handle_file(str(path)), "default", api_name="/detect")
        answer = f"{len(res[0]['faces'])} faces; {res[0].get('message') or ''}".strip("; ")
    except Exception as e:  # noqa: BLE001 - a refusal is an answer
        answer = f"refused: {str(e).splitlines()[0][:200]}"
        MESSAGES.append(answer)
    return time.perf_counter() - t, answer


def run_many_faces(work: Path) -> dict:
    """Each many-face PNG through /detect: wall seconds, the server's CPU seconds, the answer."""
    pngs = many_face_pngs(work)
    proc, url, _ = _start(work)
    out = {}
    try:
        c = _client(url, "203.0.113.1")
        _detect(c, pngs["676_faces_40px"])  # warm-up: the detector and the model are built once per server
        for name, path in pngs.items():
            cpu = _cpu_s(proc.pid)
            seconds, answer = _detect(c, path)
            out[name] = {"bytes": path.stat().st_size, "seconds": round(seconds, 2),
                         "server_cpu_seconds": round(_cpu_s(proc.pid) - cpu, 2), "answer": answer}
    finally:
        H.stop_app(proc)
    out["target"] = "each answered or refused in <= 10 s; no request over 15 s of CPU"
    return out


def _bystander(url: str, photo: Path, n: int) -> dict:
    c = _client(url, "198.51.100.99")
    lat = [_detect(c, photo)[0] for _ in range(n)]
    a = np.asarray(lat)
    return {"requests": n, "p50_s": round(float(np.percentile(a, 50)), 2),
            "p95_s": round(float(np.percentile(a, 95)), 2), "max_s": round(float(a.max()), 2), "target_p95_s": 3.0}


def run_bystander(work: Path, n: int = 20) -> dict:
    """A bystander's /detect of an ordinary photo while 4 clients keep sending the 676-face PNG, then while one
    maximal accepted compare-methods sweep runs."""
    from gradio_client import handle_file
    pngs = many_face_pngs(work)
    photo = ROOT / "lab" / "examples" / "astronaut.jpg"
    proc, url, _ = _start(work)
    out = {}
    try:
        _detect(_client(url, "198.51.100.99"), photo)  # warm-up
        stop, answers = threading.Event(), []

        def attacker(ip):
            c = _client(url, ip)
            while not stop.is_set():
                answers.append(_detect(c, pngs["676_faces_40px"])[1][:40])
        threads = [threading.Thread(target=attacker, args=(f"203.0.113.{i}",), daemon=True) for i in range(1, 5)]
        for t in threads:
            t.start()
        time.sleep(3)
        out["while_4_clients_send_676_faces"] = {**_bystander(url, photo, n),
                                                 "attacker_requests_answered": len(answers),
                                                 "attacker_answers": sorted(set(answers))[:4]}
        stop.set()
        for t in threads:
            t.join(120)
        # a maximal accepted sweep: FDFtNet runs (the method that trains most) up to the 15 estimated minutes
        z = H.labelled_zip(work / "sweep.zip", n=40, size=64)
        sweeper = _client(url, "203.0.113.50")
        job = sweeper.submit(handle_file(str(z)), None, None, "default-baseline", "5,10,15,20",
                             ["fdftnet"], 3, api_name="/compare_methods")
        time.sleep(20)  # the upload is cropped and the first runs train
        out["while_a_maximal_sweep_runs"] = {**_bystander(url, photo, n), "sweep": "k = 5,10,15,20 x fdftnet x 3 "
                                             "seeds = 12 runs, estimated 14 min (the limit is 15)",
                                             "sweep_still_running": not job.done()}
        if job.done():
            try:
                job.result()
            except Exception as e:  # noqa: BLE001 - recorded
                out["while_a_maximal_sweep_runs"]["sweep_error"] = str(e).splitlines()[0][:200]
        else:
            out["while_a_maximal_sweep_runs"]["sweep_status"] = str(job.outputs()[-1][1])[:200] if job.outputs() else ""
        job.cancel()
    finally:
        H.stop_app(proc)
    return out


def _tiny_checkpoint(folder: Path) -> dict[str, bytes]:
    import torch

    from fdftnet import BaselineDetector
    torch.manual_seed(0)
    BaselineDetector(backbone="squeezenet").save_pretrained(folder)
    return checkpoint_files(folder)


def run_hub(work: Path) -> dict:
    """Visitor-typed Hub ids against a fake Hub: the owner's private repo, a public model, a weight file that
    claims 3 GB, a 70 kB config; Authorization headers seen, bytes sent, files left, and the refusals."""
    files = _tiny_checkpoint(work / "tiny")
    big_config = json.dumps({"model_type": "baseline", "backbone": "squeezenet", "pad": "x" * 70_000}).encode()
    repos = {"owner/private": {"files": files, "token": PUBLIC["HF_TOKEN"]}, "someone/tiny": {"files": files},
             "someone/huge": {"files": files, "claimed": {"model.safetensors": 3 * 2**30}},
             "someone/bigconfig": {"files": {"config.json": big_config}}}
    with FakeHub(repos) as hub:
        proc, url, _ = _start(work, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
        answers = {}
        try:
            c = _client(url, "203.0.113.7")
            photo = ROOT / "lab" / "examples" / "astronaut-face.png"
            from gradio_client import handle_file
            for repo in repos:
                t = time.perf_counter()
                try:
                    c.predict(handle_file(str(photo)), repo, api_name="/detect")
                    answers[repo] = {"answer": "scored", "seconds": round(time.perf_counter() - t, 2)}
                except Exception as e:  # noqa: BLE001 - a refusal is an answer
                    msg = str(e).splitlines()[0][:200]
                    MESSAGES.append(msg)
                    answers[repo] = {"answer": f"refused: {msg}", "seconds": round(time.perf_counter() - t, 2)}
        finally:
            H.stop_app(proc)
        left = [str(p.relative_to(work)) for p in work.glob("fdftnet-lab-*/**/*huge*")]
    return {"requests_to_hub": len(hub.log), "requests_with_owner_token": len(hub.authorized()),
            "bytes_sent_for_the_3GB_repo": hub.sent.get("someone/huge", 0), "huge_repo_files_left": left, "repos": answers}


def run_uploads(work: Path, n: int = 8, mb: int = 90) -> dict:
    """One client with no session sends n x mb MB to /gradio_api/upload (the audit's 8 x 90 MB), then another client
    one upload; what was accepted and how much the upload folder grew."""
    import httpx
    proc, url, _ = _start(work)
    folder = work / "gradio"

    def size() -> int:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
    try:
        before, codes = size(), []
        blobs = [b"\x89PNG" + os.urandom(16) + bytes(mb * 2**20 - 20) for _ in range(n)]  # distinct: no dedup
        for blob in blobs:
            r = httpx.post(url + "gradio_api/upload", files={"files": ("x.png", blob, "image/png")},
                           headers={"x-forwarded-for": "203.0.113.8"}, timeout=120)
            codes.append(r.status_code)
            if r.status_code != 200:
                MESSAGES.append(r.text)
        grew = size() - before
        other = httpx.post(url + "gradio_api/upload", files={"files": ("y.png", b"\x89PNG" + bytes(1000), "image/png")},
                           headers={"x-forwarded-for": "198.51.100.8"}, timeout=60).status_code
        big = httpx.post(url + "gradio_api/upload", files={"files": ("z.png", bytes(101 * 2**20), "image/png")},
                         headers={"x-forwarded-for": "198.51.100.9"}, timeout=120)
        MESSAGES.append(big.text)
    finally:
        H.stop_app(proc)
    return {"uploads": f"{n} x {mb} MB from one client, no session", "status_codes": codes,
            "accepted": codes.count(200), "upload_folder_growth_mb": round(grew / 2**20),
            "another_client_small_upload": other, "one_101_mb_upload": big.status_code,
            "limits": "FDFTNET_UPLOAD_MB 100 a request, FDFTNET_CLIENT_MB 500 a client, FDFTNET_LAB_MB 2048 in all"}


def run_saturated(work: Path) -> dict:
    """The audit's model: the last layer x 1e37 (finite); what `fdftnet predict` answers (the owner's CLI: its
    message names the folder the owner typed; a visitor's Hub id is named by its repo id, see "hub")."""
    import torch
    from safetensors.torch import load_file, save_file
    _tiny_checkpoint(work / "m")
    w = load_file(work / "m" / "model.safetensors")
    w["backbone.classifier.weight"] = w["backbone.classifier.weight"] * 1e37
    save_file(w, work / "m" / "model.safetensors")
    assert torch.isfinite(w["backbone.classifier.weight"]).all()
    r = subprocess.run([sys.executable, "-m", "fdftnet", "predict", "--model", str(work / "m"),
                        str(ROOT / "lab" / "examples" / "astronaut-face.png")], capture_output=True, text=True,
                       cwd=str(ROOT), env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return {"exit_code": r.returncode, "stderr": r.stderr.strip()[:300]}


def run_disk_after_leave(work: Path, seconds: int = 30) -> dict:
    """Clients upload and fine-tune-less detect, then leave; the lab's footprint right after and once the cache age
    and session TTL (scaled down to `seconds` here; 540 s by default) plus one janitor round have passed."""
    proc, url, _ = _start(work, FDFTNET_CACHE_SECONDS=str(seconds), FDFTNET_SESSION_TTL=str(seconds))
    from gradio_client import handle_file

    def footprint() -> int:
        dirs = [*work.glob("fdftnet-lab-*"), work / "gradio"]
        return sum(f.stat().st_size for d in dirs if d.is_dir() for f in d.rglob("*") if f.is_file())
    try:
        startup = footprint()  # the app's own files: Gradio caches the Detect examples at start (kept on purpose)
        for i in range(5):
            _client(url, f"203.0.113.{20 + i}").predict([handle_file(str(ROOT / "lab" / "examples" / "astronaut.jpg"))],
                                                        "default", api_name="/detect_many")
        after = footprint() - startup
        time.sleep(seconds + 75)  # the age, then one round of Gradio's 60 s cleaner and the session janitor
        later = footprint() - startup
    finally:
        H.stop_app(proc)
    return {"clients": 5, "app_files_at_startup_bytes": startup, "visitor_bytes_after_requests": after,
            f"visitor_bytes_{seconds + 75}_s_after_the_last_client": later,
            "note": f"cache age and session TTL set to {seconds} s for the run; the defaults are 540 s, so with the "
                    f"60 s cleaning rounds nothing stays 10 minutes after the last client leaves"}


def run_paths(work: Path) -> dict:
    """Every refusal the other parts of this run provoked, searched for a server path."""
    leaks = [m for m in MESSAGES if _SERVER_PATH.search(m)]
    return {"messages_checked": len(MESSAGES), "with_a_server_path": len(leaks), "examples": leaks[:3]}


PARTS = {"many_faces": run_many_faces, "bystander": run_bystander, "hub": run_hub, "uploads": run_uploads,
         "saturated": run_saturated, "disk_after_leave": run_disk_after_leave, "paths": run_paths}
