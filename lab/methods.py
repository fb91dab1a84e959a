"""Few-shot tab, "Compare methods": the shots sweep (fdftnet.sweep) on the uploaded faces, drawn as it runs.

For each seed and k it trains every chosen method from the same baseline on the same k faces per class and scores
them all on the same held-out faces; ACC and AUROC vs k appear point by point (mean ± 1 sd over seeds). The best
run (highest AUROC, then larger k: fdftnet.sweep's rule) joins Detect's picker, as a single fine-tune does.
"""
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from fdftnet.data import DataError
from fdftnet.models import crop_size_of
from fdftnet.sweep import METHODS, SweepConfig, run_sweep, summarize

from . import limits, plots
from . import state as st
from .uploads import prepare_upload

DEFAULT_METHODS = ["fdftnet", "baseline-head", "baseline-full", "linear-probe"]
METHOD_INFO = [("FDFtNet: new attention and MobileNet layers on the detector kept fixed", "fdftnet"),
               ("the default FDFtNet, trained further", "fdftnet-adapt"),
               ("baseline, last layer retrained", "baseline-head"),
               ("baseline, all layers retrained (at lr 1e-4)", "baseline-full"),
               ("linear probe on the baseline's features", "linear-probe")]
STEPS = 30  # optimizer steps per run: half fdftnet.sweep's 60, so the default sweep takes minutes on a CPU
# wall seconds per 30-step run from the default baseline (EfficientNet-Lite0) on the shared 2-core CPU at load ~8,
# loading, training and scoring included: the browser test's sweep (16 + 16 gan64 crops, k = 2, 5, 10, fdftnet +
# baseline-head + linear-probe, 2 seeds: 18 runs) took about 15 min there. Training alone is half of
# bench/results/sweep_gan64.json's 60-step train_seconds; loading and scoring each model cost the rest.
SECONDS = {"fdftnet": 70, "fdftnet-adapt": 70, "baseline-head": 50, "baseline-full": 90, "linear-probe": 30}
ESTIMATE = ("{runs} runs (methods × shots × seeds): about {minutes} min on a busy shared 2-core CPU with the default "
            "baseline, less on a quiet machine or a GPU. Points appear as runs finish; Cancel stops at the next step.")


AUTO = "auto"
AUTO_KS = (2, 5, 10, 20, 50, 100)  # auto picks the three largest of these that fit the upload


def auto_shots(counts: dict) -> list[int]:
    """k values for an upload of `counts` faces per class: the three largest of AUTO_KS with k + 2 faces in each class
    (k to train on, at least 2 held out to score on); DataError when not even the smallest fits."""
    fit = [k for k in AUTO_KS if k + 2 <= min(counts.values())]
    if not fit:
        raise DataError(f"too few faces to compare methods: {counts['real']} real and {counts['fake']} fake; "
                        f"at least {AUTO_KS[0] + 2} per class are needed")
    return fit[-3:]


def parse_shots(text) -> list[int]:
    """'5, 10,20' -> [5, 10, 20]; 'auto' (or nothing) -> [] (auto_shots decides once the faces are counted);
    a one-line ValueError for anything else."""
    if str(text or "").strip().lower() in ("", AUTO):
        return []
    parts = [p for p in re.split(r"[,\s]+", str(text or "").strip()) if p]
    if not parts or not all(p.isdigit() and 0 < int(p) <= 500 for p in parts):
        raise ValueError(f"shots: {str(text)[:40]!r} is not a list of whole numbers 1-500, e.g. 5,10,20")
    return sorted({int(p) for p in parts})


def _cost(shots: list[int], methods: list[str], seeds: int) -> tuple[int, float]:
    """(runs, estimated minutes) of a sweep."""
    per_k = len(shots) * int(seeds)
    return per_k * len(methods), per_k * sum(SECONDS.get(m, 30) for m in methods) / 60


def estimate(shots, methods, seeds) -> str:
    try:
        ks = parse_shots(shots)
        runs, minutes = _cost(ks or [0] * 3, list(methods or []), int(seeds or 0))  # auto: at most 3 k values
    except (ValueError, TypeError):
        return "shots: auto, or a list of whole numbers, e.g. 5,10,20"
    return ("at most " if not ks else "") + ESTIMATE.format(runs=runs, minutes=max(1, round(minutes)))


def check_budget(shots: list[int], methods: list[str], seeds: int) -> None:
    """A sweep over this server's limits (FDFTNET_SWEEP_MAX_RUNS runs, FDFTNET_SWEEP_MAX_MINUTES estimated minutes)
    is refused before any work, in one line that says the limit."""
    runs, minutes = _cost(shots, methods, seeds)
    max_runs, max_minutes = int(limits.setting("FDFTNET_SWEEP_MAX_RUNS")), float(limits.setting(
        "FDFTNET_SWEEP_MAX_MINUTES"))
    if runs > max_runs:
        raise DataError(f"{runs} runs ({len(shots)} k values x {len(methods)} methods x {seeds} seeds) is over this "
                        f"server's limit of {max_runs} runs a sweep: use fewer k values, methods or seeds "
                        f"(`fdftnet sweep` on your own machine has no limit)")
    if minutes > max_minutes:
        raise DataError(f"about {minutes:.0f} min of training is over this server's limit of {max_minutes:g} min a "
                        f"sweep: use fewer k values, methods or seeds (`fdftnet sweep` on your own machine has no "
                        f"limit)")


def summary_table(runs: list[dict]) -> str:
    """fdftnet.sweep.summarize as Markdown: one row per method, 'ACC / AUROC' mean ± sd per k."""
    rows = summarize(runs)
    ks = sorted({r["k"] for r in rows})
    cell = {(r["method"], r["k"]): r for r in rows}
    def f(r, m):  # mean, and ± sd over seeds when there are several
        if r[m + "_mean"] is None:
            return "–"
        return f"{r[m + '_mean']:.3f}" + (f" ± {r[m + '_sd']:.3f}" if r.get("n", 2) > 1 else "")
    lines = ["| ACC / AUROC | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for m in dict.fromkeys(r["method"] for r in rows):
        lines.append(f"| {plots.plain_name(m)} | " + " | ".join(f"{f(cell[m, k], 'acc')} / {f(cell[m, k], 'auroc')}"
                                                             if (m, k) in cell else "" for k in ks) + " |")
    return "\n".join(lines)


@st.guard
def compare_methods(zip_file=None, real_files=None, fake_files=None, start_from: str = st.DEFAULT_BASELINE,
                    shots: str = AUTO, methods: list | None = None, seeds: int = 2, session: dict | None = None,
                    request: gr.Request = None, progress=gr.Progress()):
    """Yields (ACC/AUROC vs shots figure, status, summary table, session) after setup, after each run, at the end."""
    session = session if session is not None else st.new_session()
    sid = getattr(request, "session_hash", None) or "local"
    st.CANCELLED.discard(sid)
    shots, methods = parse_shots(shots), list(methods or DEFAULT_METHODS)
    check_budget(shots or [0] * 3, methods, int(seeds))  # auto: at most 3 k values, checked again once chosen
    base_dir = st.resolve(start_from or st.DEFAULT_BASELINE, session)
    if st.get_model(base_dir, session=session).model_type != "baseline":
        raise DataError("compare methods starts every method from a baseline: pick a baseline under Start from")
    if len(st.session_models(session)) >= st.MAX_MODELS:
        raise DataError(f"this session already holds {st.MAX_MODELS} fine-tuned models: reload the page to start a "
                        f"fresh session")
    st.check_room(session)
    with limits.one_at_a_time(request, "train"):
        limits.training_threads()
        token = yield from limits.wait_turn(lambda ahead: (gr.skip(), limits.queue_note(ahead), gr.skip(), session))
        n = len(session.get("uploads", [])) + 1
        run_dir = Path(tempfile.mkdtemp(prefix=f"sweep{n}-", dir=st.session_dir(session, request)))
        kept = False
        try:
            kept = yield from _sweep(run_dir, n, zip_file, real_files, fake_files, base_dir, shots, methods,
                                     int(seeds), session, sid, progress)
        finally:
            limits.TRAINING.release(token)
            threading.Thread(target=_cleanup, args=(run_dir, kept), daemon=True).start()


def _time_left(seconds: float) -> str:
    if seconds <= 0:
        return "finishing"
    return f"about {seconds / 60:.0f} min left" if seconds >= 90 else f"about {seconds:.0f} s left"


def _rank(run: dict) -> tuple:
    """fdftnet.sweep's "best": the highest AUROC (NaN lowest), then the larger k; the first of equals."""
    return (run["auroc"] if run["auroc"] == run["auroc"] else -1, run["k"])


def cancel_methods(request: gr.Request) -> str:
    st.CANCELLED.add(getattr(request, "session_hash", None) or "local")
    return "**Cancelled:** the sweep stopped; nothing was added to Detect."


def _cleanup(run_dir: Path, kept: bool) -> None:
    if not kept:  # failed or cancelled: nothing of it stays on disk
        shutil.rmtree(run_dir, ignore_errors=True)
    st.release_memory()


def _sweep(run_dir, n, zip_file, real_files, fake_files, base_dir, shots, methods, seeds, session, sid, progress):
    size = crop_size_of(st.get_model(base_dir, session=session))  # faces cropped as the starting baseline reads
    found = {"done": 0, "total": 0}

    def finding():
        if found["total"]:
            progress(found["done"] / found["total"], desc="finding faces")
        return (gr.skip(), f"finding the faces of your upload: {found['done']} of {found['total'] or '…'} photos",
                gr.skip(), session)
    faces, counts, skipped = yield from st.in_background(
        lambda: prepare_upload(zip_file, real_files, fake_files, run_dir, size=size,
                               progress=lambda d, t: found.update(done=d, total=t),
                               need_per_class=max(shots) + 2 if shots else 0), finding)
    if not shots:  # auto: from the faces found
        shots = auto_shots(counts)
        check_budget(shots, methods, seeds)
    adapt = st.resolve(st.DEFAULT, session) if "fdftnet-adapt" in methods else None
    cfg = SweepConfig(data=str(faces), init_from=base_dir, fdftnet_from=adapt, shots=shots, methods=methods,
                      seeds=seeds, steps=STEPS, work_dir=str(run_dir / "runs"), keep_models=True)
    runs, best, total, told = [], None, len(shots) * len(methods) * seeds, 0.0
    title = lambda: f"your upload: {len(runs)}/{total} runs"  # noqa: E731
    wait = f"the first point appears when the first run finishes (about {SECONDS[methods[0]]} s)"
    t0 = time.monotonic()
    stop_at = t0 + 2 * 60 * float(limits.setting("FDFTNET_SWEEP_MAX_MINUTES"))  # an estimate far off: stop anyway
    stopped = False
    gen = run_sweep(cfg)
    try:
        for ev in gen:
            if sid in st.CANCELLED:
                st.CANCELLED.discard(sid)
                return False
            if time.monotonic() > stop_at and runs:
                stopped = True
                break
            if ev["type"] == "start":
                t = ev["n_test"]
                yield plots.shots_bands([], placeholder=wait), (
                    f"{counts['real']} real + {counts['fake']} fake faces; k = {', '.join(map(str, shots))}: each "
                    f"method trains on k per class and is scored on the same {t['real']} + {t['fake']} held-out "
                    f"faces. " + estimate(",".join(map(str, shots)), methods, seeds)
                    + (f"  \n{skipped}" if skipped else "")), "", session
            elif ev["type"] == "progress":
                done = (len(runs) + ev["epoch"] / ev["epochs"]) / total
                progress(done, desc=f"{ev['method']}, k = {ev['k']}, seed {ev['seed']}")
                if time.monotonic() - told > 5:  # the time left, measured: elapsed / share done
                    told = time.monotonic()
                    left = (told - t0) / max(done, 1e-6) * (1 - done)
                    yield gr.skip(), (f"{len(runs)}/{total} runs done; training {ev['method']}, k = {ev['k']}, "
                                      f"seed {ev['seed']}; {_time_left(left)} (measured so far)"), gr.skip(), session
            elif ev["type"] == "run":
                runs.append(ev)
                if best is None or _rank(ev) > _rank(best):
                    best, beaten = ev, best
                else:
                    beaten = ev
                if beaten is not None and beaten.get("model"):  # only the best checkpoint is kept
                    shutil.rmtree(beaten["model"], ignore_errors=True)
                left = (time.monotonic() - t0) / len(runs) * (total - len(runs))
                yield plots.shots_bands(runs, title()), (
                    f"{len(runs)}/{total} runs: {ev['method']}, k = {ev['k']}, seed {ev['seed']}: ACC "
                    f"{ev['acc']:.3f}, AUROC {ev['auroc']:.3f}; {_time_left(left)}"), gr.skip(), session
    finally:
        gen.close()
    if not runs or sid in st.CANCELLED:
        st.CANCELLED.discard(sid)
        return False
    backbone = st.get_model(base_dir, session=session).backbone_name
    label = (f"sweep #{n} best: {plots.plain_name(best['method'])}, {best['k']} faces per class"
             + (f", seed {best['seed'] + 1} of {seeds}" if seeds > 1 else ""))
    session["models"].append({"label": label, "dir": best["model"], "base": base_dir, "data": None})
    session.setdefault("uploads", []).append({"name": f"upload of sweep #{n}", "root": str(faces.parent),
                                              "split": faces.name})
    session["runs"] += [{"backbone": backbone, "variant": r["method"], "dataset": f"session sweep #{n}",
                         "shots": r["k"], "seed": r["seed"], "history": [],
                         "metrics": {m: r[m] for m in ("acc", "auroc", "ap")}} for r in runs]
    cut = (f"**Stopped at this server's time limit** (twice the {limits.setting('FDFTNET_SWEEP_MAX_MINUTES'):g} min a "
           f"sweep may take) after {len(runs)} of {total} runs; what finished is kept.  \n" if stopped else "")
    status = cut + (f"**Done:** {len(runs)} runs (k = {', '.join(map(str, shots))}). The best (AUROC "
                    f"{best['auroc']:.3f}) is now in Detect's picker as "
              f"“sweep #{n} best”, and the curves are in Compare (dataset “session sweep #{n}”)."
              + (f"  \n{skipped}" if skipped else ""))
    over = ", mean ± 1 sd over seeds" if seeds > 1 else ""
    yield plots.shots_bands(runs, f"your upload: {len(runs)} runs{over}"), status, summary_table(runs), session
    return True


def render(zip_file, real_files, fake_files, base, session: gr.State) -> None:
    """The "Compare methods" sub-tab, reading the Few-shot tab's upload and starting model."""
    with gr.Row():
        with gr.Column(scale=1):
            shots = gr.Textbox(AUTO, label="shots per class (k): auto, or comma-separated numbers",
                               info="auto: up to three k values your upload fits (k faces per class to train on, at "
                               "least 2 more held out to score on)", elem_id="cm-shots")
            methods = gr.CheckboxGroup(METHOD_INFO, value=DEFAULT_METHODS, label="methods", elem_id="cm-methods")
            seeds = gr.Slider(1, 5, value=2, step=1, precision=0, label="seeds", elem_id="cm-seeds",
                              info="each seed draws other shots and held-out faces: the band is ± 1 sd over them")
            eta = gr.Markdown(estimate(AUTO, DEFAULT_METHODS, 2), elem_id="cm-eta")
            with gr.Row():
                run_btn = gr.Button("Compare methods", variant="primary", min_width=180)
                cancel_btn = gr.Button("Cancel", variant="secondary", elem_id="cm-cancel")
        with gr.Column(scale=2):
            status = gr.Markdown("Upload at least k + 2 faces per class for the largest k: the faces beyond the "
                                 "drawn shots are held out to score every method on.", label="sweep status",
                                 elem_id="cm-status")
            curves = gr.Plot(label="ACC and AUROC vs shots", elem_id="cm-curves")
            table = gr.Markdown(label="summary", elem_id="cm-table")
    gr.on([shots.change, methods.change, seeds.change], estimate, [shots, methods, seeds], eta,
          api_visibility="private")
    ev = run_btn.click(compare_methods, [zip_file, real_files, fake_files, base, shots, methods, seeds, session],
                       [curves, status, table, session], api_name="compare_methods", concurrency_limit=None,
                       concurrency_id="train", show_progress_on=status)
    cancel_btn.click(cancel_methods, None, status, cancels=[ev], api_visibility="private")
