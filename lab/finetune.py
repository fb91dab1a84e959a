"""Few-shot tab: fine-tune FDFtNet with a tiny uploaded set, live, then use, download or push it.

It starts from a baseline (new FTT and MBblockV3 on its backbone) or from a trained FDFtNet (keep fine-tuning it:
adapt a detector to a new generator)."""
import logging
import shutil
import tempfile
import threading
from pathlib import Path

import gradio as gr

from fdftnet.archive import holdout_split, zip_dir
from fdftnet.data import DataError
from fdftnet.inference import evaluate
from fdftnet.metrics import jsonable
from fdftnet.models import crop_size_of
from fdftnet.checkpoint import load_model
from fdftnet.train import TrainConfig, finetune, load_data
from fdftnet.trust import fit_trust

from . import limits, methods, plots
from . import state as st
from .uploads import prepare_upload, pseudo_fake_examples

log = logging.getLogger("fdftnet.lab")
HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_auroc")
BACKBONE_LRS = [("the same as the new layers (1e-3)", ""), ("1e-4", "1e-4"), ("1e-5", "1e-5")]
NO_TOKEN = "paste a write token: the lab pushes only with your own token (huggingface.co/settings/tokens)"


def _prepare(zip_file, real_files, fake_files, root: Path, progress, reals_only: bool,
             size: int) -> tuple[dict, dict, str]:
    """Upload -> one face crop per photo at `size` px -> (split counts, TrainConfig data settings, skipped note);
    progress(done, total) after each photo.

    Labelled: root/data/{finetune,validation}/{real,fake}, 25% per class (at least 2) held out. Reals only (issue 21):
    TrainConfig holds 25% of the reals out itself and validates on them plus one fixed self-blend of each."""
    faces, counts, note = prepare_upload(zip_file, real_files, fake_files, root, reals_only=reals_only, size=size,
                                         progress=progress)
    if reals_only:
        held = max(2, round(0.25 * counts["real"]))
        split = {"finetune": {"real": counts["real"] - held, "fake": 0}, "validation": {"real": held, "fake": held}}
        return split, dict(data=str(faces.parent), train_split=faces.name, val_split=None, holdout=held,
                           pseudo_fakes="self-blend", reals_only=True), note
    split = holdout_split(faces, root / "data", holdout=0.25, min_holdout=2)
    return split, dict(data=str(root / "data"), train_split="finetune", val_split="validation"), note


def _free(run_dir: Path, out: Path) -> None:
    """What a finished fine-tune no longer needs: the raw upload, its training split, the resume state."""
    for d in (run_dir / "crops", run_dir / "data" / "finetune", out / "last"):
        shutil.rmtree(d, ignore_errors=True)


def _results(base_m: dict, ft_m: dict, n: int, start: str = "baseline", reals_only: bool = False) -> str:
    rows = [("accuracy at each model's threshold", "acc"), ("AUROC (ranking: 0.5 chance, 1 perfect)", "auroc"),
            ("average precision", "ap"), ("equal error rate (lower is better)", "eer")]
    fmt = lambda v: "–" if v is None or v != v else f"{v:.3f}"  # noqa: E731 - NaN/None -> dash
    lines = [f"| on the {n} held-out images | {start} | fine-tuned FDFtNet |", "|---|---|---|"]
    lines += [f"| {name} | {fmt(base_m.get(k))} | {fmt(ft_m.get(k))} |" for name, k in rows]
    notes = []
    for who, m in ((start, base_m), ("the fine-tuned model", ft_m)):
        a = m.get("auroc")
        if a is not None and a == a and a < 0.5:
            notes.append(f"{who}'s AUROC {a:.3f} is below chance: it scores this upload's fakes *lower* than its "
                         f"reals ({'every fake below every real' if a == 0 else 'mostly'}), as a detector does on a "
                         f"kind of fake it never met; the fine-tune is how it learns this kind")
    pseudo = (" Its fakes are self-blends of its reals: no real fake was seen, so try the model on real fakes "
              "before trusting it." if reals_only else "")
    return "\n".join(lines) + ("\n\n" + "  \n".join(f"*{x}.*" for x in notes) if notes else "") + (
        "\n\n*The hold-out also chose the best epoch and the fine-tuned model's threshold, so with a handful of "
        "images treat these numbers as a sanity check, not a benchmark." + pseudo + "*")


def _parse_lr(text) -> float | None:
    """'' -> None (the same lr as the new layers); '1e-4' -> 1e-4; anything else is a one-line error."""
    text = str(text or "").strip()
    if not text:
        return None
    try:
        lr = float(text)
    except ValueError:
        raise ValueError(f"backbone learning rate: {text!r} is not a number") from None
    if not 0 <= lr < 1:
        raise ValueError(f"backbone learning rate: {text} is outside [0, 1)")
    return lr


@st.guard
def run_finetune(zip_file=None, real_files=None, fake_files=None, start_from: str = st.DEFAULT_BASELINE,
                 shots: int = 0, epochs: int = 5, freeze_backbone: bool = True, cutout_holes: int = 3,
                 cutout_size: int = 10, backbone_lr: str = "", session: dict | None = None, reals_only: bool = False,
                 request: gr.Request = None, progress=gr.Progress()):
    """Fine-tune FDFtNet on a labelled upload (a zip with real/ and fake/, or two lists of images), 25% held out;
    reals_only: real photos alone (a zip or the real list), the fakes self-blended from them (issue 21).

    Yields (curves, status, results, session, checkpoint zip) after setup, each epoch and at the end.
    backbone_lr: "" (the backbone trains at the same lr as the new layers) or a number as text, used only when
    the backbone is not frozen."""
    base, frozen, alpha, beta = start_from, freeze_backbone, cutout_holes, cutout_size  # the API's names, the code's
    session = session if session is not None else st.new_session()
    sid = getattr(request, "session_hash", None) or "local"
    st.CANCELLED.discard(sid)  # a Cancel clicked when nothing ran must not stop this run
    backbone_lr = None if frozen else _parse_lr(backbone_lr)  # a frozen backbone does not train: no lr
    base = base or st.DEFAULT_BASELINE
    base_dir = st.resolve(base, session)
    # a baseline gets new FTT and MBblockV3; an FDFtNet is fine-tuned further (a clear error now if neither loads)
    adapt = st.get_model(base, session=session).model_type == "fdftnet"
    if len(st.session_models(session)) >= st.MAX_MODELS:
        raise DataError(f"this session already holds {st.MAX_MODELS} fine-tuned models: reload the page to start a "
                        f"fresh session")
    st.check_room(session)
    with limits.one_at_a_time(request, "train"):
        # one job trains at a time: wait for the slot (at most FDFTNET_QUEUE_WAIT s), saying how many are ahead
        limits.training_threads()
        token = yield from limits.wait_turn(
            lambda ahead: (gr.skip(), limits.queue_note(ahead), gr.skip(), session, gr.skip()))
        k = len(session["models"]) + 1
        run_dir = Path(tempfile.mkdtemp(prefix=f"finetune{k}-", dir=st.session_dir(session, request)))
        try:
            yield from _train(run_dir, k, zip_file, real_files, fake_files, base, base_dir, adapt, shots, epochs,
                              frozen, alpha, beta, backbone_lr, session, sid, progress, bool(reals_only))
        finally:
            limits.TRAINING.release(token)
            failed = not any(m["dir"].startswith(str(run_dir)) for m in session["models"])
            # on a thread of its own: a /cancel waits for this generator to close, and must not wait for the cleanup
            threading.Thread(target=_cleanup, args=(run_dir if failed else None,), daemon=True).start()


def _cleanup(run_dir: Path | None) -> None:
    """After a fine-tune: a failed or cancelled run's folder goes (nothing of it stays on disk), and the training
    model, optimizer and decoded batches go back to the OS."""
    if run_dir is not None:
        shutil.rmtree(run_dir, ignore_errors=True)
    st.release_memory()


def _train(run_dir, k, zip_file, real_files, fake_files, base, base_dir, adapt, shots, epochs, frozen, alpha, beta,
           backbone_lr, session, sid, progress, reals_only):
    """run_finetune's body: prepare the upload, train, evaluate on the hold-out, add the model to the session."""
    size = crop_size_of(st.get_model(base, session=session))  # the upload is cropped as the starting model reads
    found = {"done": 0, "total": 0}

    def finding():
        if found["total"]:
            progress(found["done"] / found["total"], desc="finding faces")
        return (gr.skip(), f"finding the faces of your upload: {found['done']} of {found['total'] or '…'} photos",
                gr.skip(), session, gr.skip())
    split, data, skipped = yield from st.in_background(
        lambda: _prepare(zip_file, real_files, fake_files, run_dir, lambda d, t: found.update(done=d, total=t),
                         reals_only, size), finding)
    n_train = split["finetune"]["real"] if reals_only else min(split["finetune"].values())
    shots = int(shots or 0)
    if shots > n_train:
        gr.Info(f"{n_train} training images per class after the hold-out: using all of them")
    cfg = TrainConfig(stage="finetune", **data, **{"init_from" if adapt else "backbone_from": base_dir},
                      out=str(run_dir / "model"),
                      epochs=int(epochs), shots=shots if 0 < shots <= n_train else None, freeze_backbone=bool(frozen),
                      cutout_holes=int(alpha), cutout_scale=int(beta), backbone_lr=backbone_lr,
                      batch_size=32,  # few-shot sets are tiny: several steps per epoch instead of one
                      meta={"source": "fdftnet lab"})
    history, done = [], None
    tr, va = split["finetune"], split["validation"]
    fakes = "a self-blend of each real per batch" if reals_only else f"{tr['fake']} fake faces"
    held = f"{va['real']} reals + a self-blend of each" if reals_only else f"{va['real']} + {va['fake']}"
    yield plots.training_curves([]), (f"training on {tr['real']} real faces + {fakes}, holding out {held} …"
                                      + (f"  \n{skipped}" if skipped else "")), "", session, None
    gen = finetune(cfg)
    try:
        for ev in gen:
            if sid in st.CANCELLED:
                st.CANCELLED.discard(sid)
                return
            if ev["type"] == "step":
                progress((ev["epoch"] - 1 + ev["step"] / ev["steps"]) / cfg.epochs,
                         desc=f"epoch {ev['epoch']}/{cfg.epochs}")
            elif ev["type"] == "epoch":
                history.append({k_: ev[k_] for k_ in HISTORY_KEYS})
                yield plots.training_curves(history), (f"epoch {ev['epoch']}/{cfg.epochs}: validation ACC "
                                                       f"{ev['val_acc']:.3f}, AUROC {ev['val_auroc']:.3f}"), \
                    gr.skip(), session, gr.skip()
            elif ev["type"] == "done":
                done = ev
    finally:
        gen.close()
    progress(1.0, desc="evaluating on the hold-out")
    train, val = load_data(cfg, size=size)  # the run's own hold-out (reals only: with its fixed self-blends)
    base_m = evaluate(st.get_model(base, session=session), val)
    # recalibrated on the visitor's hold-out (P(fake), the uncertain band) with its training faces as the OOD bank,
    # written beside the weights before the model is cached, so Detect's verdicts use it
    fit_trust(load_model(cfg.out), val, train, fitted_on="this upload's hold-out",
              tested_on=[{"family": "your upload's hold-out", "n": len(val)}]).save(cfg.out)
    model = st.get_model(cfg.out, session=session)  # cached now, so Detect uses it at once
    ft_m = evaluate(model, val)
    if sid in st.CANCELLED:  # Cancel came after the last epoch: keep the promise that nothing is added
        st.CANCELLED.discard(sid)
        return
    variant = f"fdftnet-{'frozen' if frozen else 'unfrozen'}" + ("-adapt" if adapt else "") + (
        "-reals-only" if reals_only else "")
    start = "FDFtNet before" if adapt else "baseline"
    used = cfg.shots or n_train
    lr_note = f" (backbone lr {backbone_lr:g})" if backbone_lr is not None else ""
    session["models"].append({"label": f"fine-tuned #{k}: {model.backbone_name}, {variant[8:]}{lr_note}, "
                                       f"{used} shots/class",
                              "dir": cfg.out, "base": base_dir, "data": None if reals_only else cfg.data})
    common = {"backbone": model.backbone_name, "dataset": f"session upload #{k}", "shots": used, "seed": cfg.seed}
    session["runs"] += [{**common, "variant": "fdftnet-start" if adapt else "baseline", "metrics": jsonable(base_m),
                         "history": []},
                        {**common, "variant": variant, "metrics": jsonable(ft_m), "history": history}]
    _free(run_dir, Path(cfg.out))
    archive = zip_dir(cfg.out, run_dir / f"fdftnet-finetuned-{k}.zip")
    status = (f"**Done:** best epoch {done['best_epoch']} of {done['epochs_run']}. The model is now in Detect's "
              f"picker as “fine-tuned #{k}”." + (f"  \n{skipped}" if skipped else ""))
    results = _results(base_m, ft_m, len(val), start, reals_only)
    yield plots.training_curves(history), status, results, session, archive


def preview_pseudo_fakes(zip_file, real_files, reals_only: bool):
    """Reals-only: a few face crops of the upload beside the self-blends training will make of them."""
    if not reals_only:
        return gr.update(visible=False, value=None)
    if not (zip_file or real_files):
        return gr.update(visible=True, value=None, label="upload real photos to see the pseudo-fakes made of them")
    try:
        return gr.update(visible=True, value=pseudo_fake_examples(zip_file, real_files),
                         label="pseudo-fakes that training will make from your reals (first faces of the upload)")
    except DataError as e:  # shown in the gallery's label; the run itself reports the full reason
        return gr.update(visible=True, value=None, label=f"no preview: {str(e).splitlines()[0]}")


def cancel_finetune(request: gr.Request) -> str:
    st.CANCELLED.add(getattr(request, "session_hash", None) or "local")
    return "**Cancelled:** training stopped; nothing was added to Detect."


def push_model(repo_id: str, token: str, private: bool, session: dict):
    """Push the latest fine-tuned model; the token is used for this call only and the box is cleared."""
    try:
        if not st.session_models(session):
            raise ValueError("fine-tune a model first")
        if not (repo_id or "").strip():
            raise ValueError("type a Hub repo id, e.g. your-name/fdftnet-my-faces")
        if not (token or "").strip():  # never the server's HF_TOKEN or login: a visitor would commit as its owner
            raise ValueError(NO_TOKEN)
        try:
            from fdftnet import hub
        except ImportError:
            raise ValueError("pushing is not available: this fdftnet has no hub module") from None
        url = hub.push(st.session_models(session)[-1]["dir"], repo_id.strip(), private=bool(private),
                       token=token.strip())
        return f"Pushed to {url or repo_id}", ""
    except Exception as e:  # noqa: BLE001 - any push failure becomes one line; the token never reaches a log
        log.warning("push failed: %s", type(e).__name__)
        return f"**Push failed:** {(str(e).splitlines() or [type(e).__name__])[0]}", ""


def render(session: gr.State, demo: gr.Blocks) -> None:
    with gr.Row():
        with gr.Column():
            zip_file = gr.File(label="Labelled zip: real/ and fake/ folders", file_types=[".zip"], elem_id="ft-zip")
            with gr.Accordion("…or drop real and fake images separately", open=False):
                real_files = gr.File(label="real images", file_count="multiple", file_types=["image"])
                fake_files = gr.File(label="fake images", file_count="multiple", file_types=["image"])
        with gr.Column():
            base = gr.Dropdown(st.base_choices(), value=st.DEFAULT_BASELINE, allow_custom_value=True,
                               label="Start from", info="the detector to adapt to your faces (the default is a good "
                               "start); or type a Hub id USER/NAME")
            gr.Markdown("Photos are fine: each gives its largest face, cropped the way the training faces were "
                        "(a picture that already is a face crop is used as is); photos with no face are skipped "
                        "and named in the status.")
    with gr.Tab("One model"):
        _render_one(zip_file, real_files, fake_files, base, session)
    with gr.Tab("Compare methods (shots sweep)"):
        methods.render(zip_file, real_files, fake_files, base, session)
    gr.on([demo.load, session.change], lambda s, b: gr.update(choices=st.base_choices(s), value=b), [session, base],
          base, api_visibility="private")


def _render_one(zip_file, real_files, fake_files, base, session: gr.State) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            reals_only = gr.Checkbox(False, label="I only have real photos (of this person or source)",
                                     info="the fakes are then made from your real photos: each face blended with a "
                                     "changed copy of itself", elem_id="ft-reals-only")
            examples = gr.Gallery(label="pseudo-fakes that training will make from your reals", columns=4,
                                  height="auto", visible=False, elem_id="ft-pseudo")
            epochs = gr.Slider(1, 50, value=5, step=1, precision=0, label="training rounds (epochs)",
                               info="each round shows the model every training face once", elem_id="ft-epochs")
            with gr.Accordion("Advanced settings", open=False, elem_id="ft-advanced"):
                shots = gr.Slider(0, 200, value=0, step=1, precision=0, label="faces per class to train on (0 = all)",
                                  info="fewer than you uploaded: a random draw of that many per class")
                frozen = gr.Checkbox(value=True, label="keep the pretrained detector fixed",
                                     info="train only the new layers FDFtNet adds (faster; the paper's best)")
                backbone_lr = gr.Dropdown(BACKBONE_LRS, value="", label="how fast the pretrained detector may change",
                                          info="only when it is not kept fixed: its learning rate (a tenth, 1e-4, was "
                                          "best on DFDC face swaps)")
                with gr.Row():
                    alpha = gr.Slider(0, 5, value=3, step=1, precision=0, label="blank-out patches (0 = off)",
                                      info="up to this many random squares blanked in each training face (Cutout)")
                    beta = gr.Slider(1, 10, value=10, step=1, precision=0, label="patch size",
                                     info="patch sides up to 4 px x this (Cutout)")
            with gr.Row():
                run_btn = gr.Button("Fine-tune", variant="primary")
                cancel_btn = gr.Button("Cancel", variant="secondary")
        with gr.Column(scale=2):
            status = gr.Markdown("Upload a small labelled set (at least 4 images per class); 25% of each class is "
                                 "held out to compare the starting model with the fine-tuned one.", elem_id="ft-status",
                                 label="status")
            curves = gr.Plot(label="training curves", elem_id="ft-curves")
            results = gr.Markdown(elem_id="ft-results", label="results on the hold-out")
            archive = gr.File(label="checkpoint zip", elem_id="ft-archive")
            with gr.Accordion("Push the latest fine-tuned model to the Hugging Face Hub", open=False):
                with gr.Row():
                    repo = gr.Textbox(label="repo id", placeholder="your-name/fdftnet-my-faces")
                    token = gr.Textbox(label="write token (used once, never stored)", type="password")
                    private = gr.Checkbox(label="private", value=True)
                push_btn = gr.Button("Push")
                push_status = gr.Markdown()

    gr.on([reals_only.change, zip_file.change, real_files.change], preview_pseudo_fakes,
          [zip_file, real_files, reals_only], examples, api_visibility="private")
    inputs = [zip_file, real_files, fake_files, base, shots, epochs, frozen, alpha, beta, backbone_lr, session,
              reals_only]
    run_ev = run_btn.click(run_finetune, inputs, [curves, status, results, session, archive],
                           api_name="finetune", concurrency_limit=None, concurrency_id="train",
                           show_progress_on=archive)  # the bar fills the empty checkpoint box; curves stay visible
    cancel_btn.click(cancel_finetune, None, results, cancels=[run_ev], api_visibility="private")
    push_btn.click(push_model, [repo, token, private, session], [push_status, token], api_visibility="private")
