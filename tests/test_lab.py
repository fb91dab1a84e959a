"""The lab: handlers called as plain functions, then one gradio_client session against the launched app.

Tiny squeezenet checkpoints in a tmp checkpoints/ folder (FDFTNET_CHECKPOINTS), bench results in a tmp
folder (FDFTNET_RESULTS), HF_HUB_OFFLINE=1 so an unknown Hub id fails at once.
"""
import io
import json
import os
import socket
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app.py and lab/ live at the repo root
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from conftest import add_upsampling_artefact, make_face  # noqa: E402
from fdftnet import BaselineDetector, FDFtNet  # noqa: E402


def face_png(path: Path, seed: int, fake: bool = False, size: int = 64) -> str:
    img = make_face(np.random.default_rng(seed), size)
    Image.fromarray(add_upsampling_artefact(img) if fake else img).save(path)
    return str(path)


def labelled_zip(path: Path, n: int = 5) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            for cls in ("real", "fake"):
                buf = io.BytesIO()
                img = make_face(np.random.default_rng(i + (50 if cls == "fake" else 0)))
                Image.fromarray(add_upsampling_artefact(img) if cls == "fake" else img).save(buf, "PNG")
                zf.writestr(f"myset/{cls}/{cls}{i}.png", buf.getvalue())
    return str(path)


RUN = {"backbone": "squeezenet", "variant": "fdftnet-frozen", "dataset": "dfdc", "shots": 100, "seed": 0,
       "metrics": {"acc": 0.8, "auroc": 0.9, "ap": 0.9, "eer": 0.2, "roc": {"fpr": [0, 0.2, 1], "tpr": [0, 0.8, 1]},
                   "confusion": [[8, 2], [2, 8]]},
       "history": [{"epoch": 1, "train_loss": 0.6, "val_loss": 0.5, "val_acc": 0.7, "val_auroc": 0.8}]}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    ck = root / "checkpoints"
    torch.manual_seed(0)
    BaselineDetector(backbone="squeezenet").save_pretrained(ck / "base-squeezenet")
    FDFtNet(backbone="squeezenet", mb_blocks=2).save_pretrained(ck / "fdftnet-squeezenet")
    (ck / "default.json").write_text(json.dumps({"fdftnet": "fdftnet-squeezenet", "baseline": "base-squeezenet"}))
    results = root / "results"
    results.mkdir()
    (results / "reproduce.json").write_text(json.dumps({"runs": [RUN, dict(RUN, variant="baseline", shots=10)]}))
    (results / "broken.json").write_text("{not json")
    env = {"FDFTNET_CHECKPOINTS": str(ck), "FDFTNET_RESULTS": str(results)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield SimpleNamespace(root=root, ck=ck, zip=labelled_zip(root / "set.zip"),
                          real=face_png(root / "real.png", 1), fake=face_png(root / "fake.png", 2, True))
    for k, v in old.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


# ----------------------------------------------------------------------------------------------
# handlers as plain functions


def test_discovery_prefers_default_json(lab):
    from lab import state as st
    found = st.discover()
    assert found["default"] == {"fdftnet": str(lab.ck / "fdftnet-squeezenet"),
                                "baseline": str(lab.ck / "base-squeezenet")}
    assert [v for _, v in st.model_choices(None)] == [st.DEFAULT, st.DEFAULT_BASELINE]


def test_the_picker_keeps_every_shipped_checkpoint_beside_the_defaults(lab, tmp_path, monkeypatch):
    """A new default does not push the older shipped models out of Detect's picker."""
    import shutil
    from lab import state as st
    ck = tmp_path / "checkpoints"
    shutil.copytree(lab.ck, ck)
    shutil.copytree(ck / "fdftnet-squeezenet", ck / "fdftnet-older")
    shutil.copytree(ck / "base-squeezenet", ck / "base-older")
    monkeypatch.setenv("FDFTNET_CHECKPOINTS", str(ck))
    assert st.model_choices(None) == [("default FDFtNet", st.DEFAULT), ("default baseline", st.DEFAULT_BASELINE),
                                      ("FDFtNet: fdftnet-older", str(ck / "fdftnet-older")),
                                      ("baseline: base-older", str(ck / "base-older"))]
    assert st.resolve(str(ck / "fdftnet-older")) == str(ck / "fdftnet-older")


def test_detect_image_returns_probability_and_overlays(lab):
    from lab import detect
    for choice in ("default", "default-baseline", str(lab.ck / "fdftnet-squeezenet")):
        record, p, shown, rows, verdict, status = detect.detect_image({"path": lab.fake, "orig_name": "f.png"}, choice)
        face = record["faces"][0]  # a 64x64 face crop: used as is, one face
        assert 0 <= p <= 1 and p == face["p_fake"] and face["fake"] == (p >= record["threshold"])
        assert record["label"] == ("fake" if face["fake"] else "real") and "P(fake)" in verdict
        assert shown.shape == (64, 64, 3) and rows.count('class="face-row"') == 1
    assert "FTT attention" in detect.detect_image(lab.real, "default")[3]
    assert "Grad-CAM" in detect.detect_image(lab.real, "default-baseline")[3]


def _odd_images(d: Path) -> dict:
    """Files people upload: name -> (path, expected error or None when it must work)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    (d / "text.png").write_text("hello")
    (d / "empty.png").write_bytes(b"")
    Image.fromarray(rgb[:1, :1]).save(d / "one.png")
    Image.fromarray(rgb).save(d / "ok.png")
    (d / "cut.png").write_bytes((d / "ok.png").read_bytes()[:200])
    Image.new("1", (8000, 8000)).save(d / "bomb.png")  # 64 Mpx, a few KB on disk
    frames = [Image.fromarray(np.roll(rgb, i, 0)) for i in range(3)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(d / "16bit.png")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(d / "alpha.png")
    return {"text.png": "not an image", "empty.png": "empty file", "one.png": "too small", "cut.png": "corrupt",
            "bomb.png": "too many pixels", "anim.gif": None, "cmyk.jpg": None, "16bit.png": None, "alpha.png": None}


def test_bad_inputs_give_one_line_messages(lab, tmp_path, network_attempts):
    from lab import detect
    for name, err in _odd_images(tmp_path).items():
        if err is None:
            assert 0 <= detect.detect_image(str(tmp_path / name), "default")[1] <= 1, name
        else:
            with pytest.raises(gr.Error, match=err) as e:
                detect.detect_image(str(tmp_path / name), "default")
            assert "\n" not in e.value.message and "Traceback" not in e.value.message
    with pytest.raises(gr.Error, match="no image"):
        detect.detect_image(None, "default")
    with pytest.raises(gr.Error, match="nobody/no-such-model"):
        detect.detect_image(lab.real, "nobody/no-such-model")
    assert network_attempts == []  # never the 23 s of Hub retries: no DNS lookup, no connection (a count, not a clock)
    with pytest.raises(gr.Error, match="no checkpoint directory"):
        detect.detect_image(lab.real, "./no/such/dir")


def test_missing_default_checkpoint_is_explained(lab, tmp_path, monkeypatch):
    from lab import detect
    monkeypatch.setenv("FDFTNET_CHECKPOINTS", str(tmp_path / "empty"))
    assert "no default checkpoint yet" in detect.model_info("default")
    with pytest.raises(gr.Error, match="no default checkpoint yet"):
        detect.detect_image(lab.real, "default")


def test_internal_errors_are_not_shown(caplog):
    from lab import state as st
    boom = st.guard(lambda: 1 / 0)
    with pytest.raises(gr.Error) as e:
        boom()
    assert e.value.message == "internal error: ZeroDivisionError"
    assert "ZeroDivisionError" in caplog.text  # the traceback goes to the server log


def test_detect_many_table_csv_and_skips(lab, tmp_path):
    from lab import detect, state as st
    (tmp_path / "notes.png").write_text("not an image")
    session = st.new_session()
    files = [lab.real, lab.fake, str(tmp_path / "notes.png"), lab.zip]
    df, csv, gallery, status, session = detect.detect_many(files, "default", session, None)
    # 12 face crops, each used as is: one row per face
    assert len(df) == 12 and list(df.columns) == ["file", "face", "box", "P(fake)", "verdict", "note"]
    assert df["P(fake)"].is_monotonic_decreasing and Path(csv).read_text().startswith("file,face,box,P(fake)")
    assert "1 skipped" in status and "notes.png" in status and len(gallery) == 12
    with pytest.raises(gr.Error, match="no files"):
        detect.detect_many([], "default", session, None)
    st.drop_session(session)
    assert not Path(csv).exists()


def test_finetune_as_a_function_then_detect_with_it(lab):
    from lab import compare, detect, finetune, state as st
    session = st.new_session()
    outs = list(finetune.run_finetune(lab.zip, None, None, "default-baseline", 0, 1, True, 3, 10, "", session, None))
    assert len(outs) == 3  # setup, epoch 1, result
    fig, status, results, session, archive = outs[-1]
    assert "done" in status.lower() and "fine-tuned FDFtNet" in results and "AUROC" in results
    assert [r["variant"] for r in session["runs"]] == ["baseline", "fdftnet-frozen"]
    assert ("keep fine-tuning: " + session["models"][0]["label"], session["models"][0]["dir"]) in st.base_choices(session)
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert {"config.json", "model.safetensors"} <= set(names) and not any(n.startswith("last/") for n in names)
        assert {"calibration.json", "ood.safetensors"} <= set(names)  # recalibrated on the upload's hold-out
    model = session["models"][0]
    assert model["dir"] in [v for _, v in st.model_choices(session)]
    record = detect.detect_image(lab.fake, model["dir"])[0]
    assert 0 <= record["p_fake"] <= 1 and record["calibrated"]  # usable in Detect at once, with its calibration
    assert record["tested_on"] == ["your upload's hold-out"]
    # Compare sees it next to the bench results; the sweep runs on its hold-out
    upd = compare.refresh(session, None, None)
    assert "session upload #1" in upd[0]["choices"]
    fig, text = compare.run_sweep([model["dir"], model["base"]], "hold-out of fine-tuned #1", "validation", 4,
                                  ["noise"], session)
    assert text.startswith("4 images from") and len(fig.data) == 2
    assert finetune.push_model("me/x", "hf_secret", True, st.new_session())[1] == ""  # token box cleared
    msg, token = finetune.push_model("", "hf_secret", True, session)
    assert "repo id" in msg and token == "" and "hf_secret" not in msg
    # start from that FDFtNet: it is fine-tuned further, unfrozen this time, and compared with itself before
    first = session["models"][0]["dir"]
    *_, (fig, status, results, session, archive) = finetune.run_finetune(lab.zip, None, None, first, 0, 1, False, 3,
                                                                         10, "1e-4", session, None)
    assert "| FDFtNet before | fine-tuned FDFtNet |" in results
    assert [r["variant"] for r in session["runs"]][2:] == ["fdftnet-start", "fdftnet-unfrozen-adapt"]
    second = st.get_model(session["models"][1]["dir"])
    assert json.loads((Path(session["models"][1]["dir"]) / "training.json").read_text())["info"]["init_from"] == first
    assert second.freeze_backbone is False and second.config["mb_blocks"] == st.get_model(first).config["mb_blocks"]
    record = json.loads((Path(session["models"][1]["dir"]) / "training.json").read_text())
    assert record["train_config"]["backbone_lr"] == 1e-4 and "backbone lr 0.0001" in session["models"][1]["label"]
    st.drop_session(session)


def test_cancel_stops_training_and_adds_nothing(lab):
    from lab import finetune, state as st
    session, outs = st.new_session(), []
    for out in finetune.run_finetune(lab.zip, None, None, "default-baseline", 0, 5, True, 3, 10, "", session, None):
        outs.append(out)
        if len(outs) == 2:  # after epoch 1: what the Cancel button does (request.session_hash -> "local" here)
            finetune.cancel_finetune(None)
    assert len(outs) == 2 and session["models"] == [] and not st.CANCELLED
    st.drop_session(session)


@pytest.mark.parametrize("members, err", [
    ({"../evil.png": b"x"}, "outside"), ({"real/a.png": b"x"}, "real/a.png: not an image"),
    ({"real/inner.zip": b"PK"}, "archive inside"),
])
def test_finetune_refuses_bad_zips(lab, tmp_path, members, err):
    from lab import finetune, state as st
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    session = st.new_session()
    with pytest.raises(gr.Error, match=err):
        list(finetune.run_finetune(str(tmp_path / "bad.zip"), None, None, "default-baseline", 0, 1, True, 3, 10,
                                   "", session, None))
    with pytest.raises(gr.Error, match="no training images"):
        list(finetune.run_finetune(None, None, None, "default-baseline", 0, 1, True, 3, 10, "", session, None))
    with pytest.raises(gr.Error, match="'fast' is not a number"):  # an API caller's backbone lr, unfrozen
        list(finetune.run_finetune(lab.zip, None, None, "default-baseline", 0, 1, False, 3, 10, "fast", session, None))
    (tmp_path / "empty").mkdir()
    with pytest.raises(gr.Error, match="config.json"):
        list(finetune.run_finetune(lab.zip, None, None, str(tmp_path / "empty"), 0, 1, True, 3, 10, "", session, None))
    st.drop_session(session)


def test_compare_reads_bench_results(lab):
    from lab import compare
    runs, problems = compare.load_runs()
    assert len(runs) == 2 and problems == ["broken.json: JSONDecodeError"]
    ds, shots, variants, backbone, source, run, head, curves, roc, note = compare.refresh(None, None, None)
    assert ds["value"] == "dfdc" and shots["choices"] == ["10", "100"] and "unreadable" in note.lower()
    hist, conf = compare.show_run(run["choices"][0], None)
    assert len(hist.data) >= 3 and conf.data


def test_compare_opens_on_the_full_set_runs(lab, tmp_path, monkeypatch):
    """Benchmark rows trained on a whole split (shots: null) are what Compare shows first."""
    from lab import compare
    full = dict(RUN, shots=None, variant="fdftnet-frozen")
    (tmp_path / "r.json").write_text(json.dumps({"runs": [full, dict(RUN, variant="baseline", shots=10)]}))
    monkeypatch.setenv("FDFTNET_RESULTS", str(tmp_path))
    ds, shots, variants, backbone, source, run, head, curves, roc, note = compare.refresh(None, None, None)
    assert shots["choices"] == ["full set", "10"] and shots["value"] == "full set"
    assert len([t for t in roc.data if t.name != "chance"]) == 1  # the full-set run only, not the 10-shot one
    ds, shots, *_ = compare.refresh(None, None, "10")
    assert shots["value"] == "10"


# ----------------------------------------------------------------------------------------------
# gradio_client against the launched app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(lab):
    from gradio_client import Client

    import app
    app.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True)
    yield Client(app.demo.local_url, verbose=False, analytics_enabled=False)
    app.demo.close()


def test_client_detect_and_streamed_finetune(lab, client):
    from gradio_client import handle_file
    from gradio_client.utils import Status

    result = client.predict(handle_file(lab.fake), api_name="/detect")
    assert isinstance(result[1], float) and 0 <= result[1] <= 1 and result[0]["label"] in ("real", "fake")
    with pytest.raises(Exception, match="not an image"):
        client.predict(handle_file(str(Path(lab.root) / "results" / "broken.json")), api_name="/detect")

    args = (handle_file(lab.zip), None, None, "default-baseline", 0)
    job = client.submit(*args, 2, True, 3, 10, "", api_name="/finetune")
    codes, sizes = set(), []
    while not job.done():
        codes.add(job.status().code)
        sizes.append(len(job.outputs()))
        time.sleep(0.05)
    outputs = job.outputs()
    assert Status.PROGRESS in codes, codes
    assert len(outputs) == 4 and sizes == sorted(sizes) and len(set(sizes)) >= 2  # outputs grew while it ran
    assert "done" in outputs[-1][1].lower() and outputs[-1][3]  # status, checkpoint zip
    # detection is never queued behind a fine-tune; a running fine-tune can be cancelled through the API
    long = client.submit(*args, 40, True, 3, 10, "", api_name="/finetune")
    while len(long.outputs()) < 2 and not long.done():  # wait for its first epoch
        time.sleep(0.05)
    assert 0 <= client.predict(handle_file(lab.real), api_name="/detect")[1] <= 1
    assert not long.done()
    long.cancel()
    t0 = time.monotonic()
    while not long.done() and time.monotonic() - t0 < 600:  # a hang guard, not a speed bound
        time.sleep(0.1)
    assert long.done() and len(long.outputs()) < 40


def test_the_hold_out_table_explains_an_auroc_below_chance():
    """Issue #32.6: the starting baseline's AUROC 0.000 on the hold-out was shown without a word."""
    from lab.finetune import _results
    text = _results({"acc": 0.5, "auroc": 0.0, "ap": 0.4, "eer": 1.0}, {"acc": 1.0, "auroc": 1.0, "ap": 1.0, "eer": 0},
                    4)
    assert "| AUROC (ranking: 0.5 chance, 1 perfect) | 0.000 | 1.000 |" in text
    assert "below chance" in text and "every fake below every real" in text
    assert "below chance" not in _results({"auroc": 0.7}, {"auroc": 0.9}, 4)
