"""The lab's shots sweep ("compare methods"), the Compare tab's loaders and views, and the face crops of uploads.

Handlers are called as plain functions with the tiny squeezenet checkpoints of tests/test_lab.py's `lab` fixture;
the Compare tab reads tiny result files written here (FDFTNET_RESULTS).
"""
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_lab import RUN, lab, labelled_zip  # noqa: F401 - `lab` is a fixture (tiny checkpoints, bench results)

import gradio as gr  # noqa: E402  (after test_lab: it sets the environment gradio reads)


@pytest.fixture
def quick(monkeypatch):
    """Sweeps of 6 optimizer steps (the least fdftnet.sweep allows with its 6 checks)."""
    from lab import methods
    monkeypatch.setattr(methods, "STEPS", 6)


# ----------------------------------------------------------------------------------------------
# Few-shot: compare methods


def test_compare_methods_streams_points_and_sends_the_best_to_detect(lab, quick, tmp_path):  # noqa: F811
    from lab import compare, detect, methods, state as st
    session = st.new_session()
    outs = list(methods.compare_methods(labelled_zip(tmp_path / "set.zip", n=5), None, None, "default-baseline",
                                        "1,2", ["fdftnet", "linear-probe"], 2, session, None))
    start = next(i for i, o in enumerate(outs) if "5 real + 5 fake faces" in str(o[1]))  # after face-finding updates
    assert "8 runs" in outs[start][1] and "k = 1, 2" in outs[start][1]
    ran = [o for o in outs[start:-1] if re.match(r"\d+/8 runs: ", str(o[1]))]  # (and measured time-left updates)
    assert len(ran) == 8  # one per run (2 methods x 2 k x 2 seeds), then the result
    lines = [sum(1 for t in fig.data if t.mode == "lines+markers") for fig, *_ in ran]
    assert lines[0] == 2 and lines[-1] == 4  # one method, then two, in both panels: points appear as runs end
    fig, status, table, session = outs[-1]
    assert any(t.fill == "toself" for t in fig.data)  # two seeds per k: a +-1 sd band
    assert "**Done:** 8 runs (k = 1, 2)" in status and "| FDFtNet (new layers) |" in table and "k = 2" in table
    best = session["models"][-1]
    assert best["label"].startswith("sweep #1 best: ") and "seed" in best["label"] and best["data"] is None
    assert not re.search(r"linear-probe|fdftnet(?!\w)", best["label"])  # plain words, not the method's id
    kept = [p.parent for p in Path(best["dir"]).parents[2].rglob("config.json")]
    assert kept == [Path(best["dir"])]  # only the best run's checkpoint stays on disk
    assert best["dir"] in [v for _, v in st.model_choices(session)]
    assert 0 <= detect.detect_image(lab.fake, best["dir"])[1] <= 1  # usable in Detect at once
    # Compare: its runs are a dataset with a "this session" shots curve; its faces join the robustness sweep
    ds, shots, variants, backbone, source, *_ = compare.refresh(session, "session sweep #1", None)
    assert ds["value"] == "session sweep #1" and source["value"] == "this session"
    assert "upload of sweep #1" in compare.sweep_datasets(session)
    fig, text = compare.run_sweep(["default"], "upload of sweep #1", "faces", 4, ["noise"], session)
    assert text.startswith("8 images from upload of sweep #1")
    st.drop_session(session)


def test_compare_methods_refuses_bad_settings_in_one_line(lab, quick, tmp_path):  # noqa: F811
    from lab import methods, state as st
    session, z = st.new_session(), labelled_zip(tmp_path / "set.zip", n=5)
    cases = [("5,ten", ["fdftnet"], "default-baseline", "not a list of whole numbers"),
             ("0", ["fdftnet"], "default-baseline", "not a list of whole numbers"),
             ("2", ["nonsense"], "default-baseline", "unknown method nonsense"),
             ("2", ["fdftnet"], "default", "starts every method from a baseline"),
             ("4", ["fdftnet"], "default-baseline", "needs 6")]  # 5 faces per class: k = 4 leaves 1 to score on
    for shots, chosen, base, err in cases:
        with pytest.raises(gr.Error, match=err) as e:
            list(methods.compare_methods(z, None, None, base, shots, chosen, 1, session, None))
        assert "\n" not in e.value.message
    assert session["models"] == [] and not session.get("uploads")
    st.drop_session(session)


def test_compare_methods_cancel_adds_nothing(lab, quick, tmp_path):  # noqa: F811
    from lab import methods, state as st
    session, outs = st.new_session(), []
    for out in methods.compare_methods(labelled_zip(tmp_path / "set.zip", n=5), None, None, "default-baseline",
                                       "1,2", ["fdftnet"], 2, session, None):
        outs.append(out)
        methods.cancel_methods(None)  # what the Cancel button does (request.session_hash -> "local" here)
    assert len(outs) == 1 and session["models"] == [] and not st.CANCELLED
    st.drop_session(session)


def test_estimate_says_runs_and_minutes():
    from lab import methods
    text = methods.estimate("5,10,20", methods.DEFAULT_METHODS, 2)
    assert text.startswith("24 runs") and " min " in text
    assert "whole numbers" in methods.estimate("five", ["fdftnet"], 2)


# ----------------------------------------------------------------------------------------------
# Compare: loaders, headline, curves, ROC, empty state


def _results(d: Path) -> Path:
    """Two backbones x (baseline, two FDFtNet recipes) x seeds on the full set, job records, a sweep file."""
    runs = []
    for bb, shift in (("squeezenet", 0.0), ("xception", 0.1)):
        for seed in (0, 1):
            runs += [dict(RUN, backbone=bb, variant="baseline", shots=None, seed=seed, key=f"{bb}/b/{seed}",
                          metrics=dict(RUN["metrics"], acc=0.6 + shift + 0.01 * seed, auroc=0.7 + shift)),
                     dict(RUN, backbone=bb, variant="fdftnet-frozen", shots=None, seed=seed, key=f"{bb}/f/{seed}",
                          metrics=dict(RUN["metrics"], acc=0.7 + shift, auroc=0.8 + shift + 0.01 * seed))]
        runs.append(dict(RUN, backbone=bb, variant="fdftnet-unfrozen", shots=None, seed=0, key=f"{bb}/u/0"))
    d.mkdir(exist_ok=True)
    (d / "reproduce.json").write_text(json.dumps({"runs": runs}))
    (d / "face_speed.json").write_text(json.dumps({"runs": 30}))  # another kind of file: not a problem
    jobs = d / "jobs" / "dfdc"
    jobs.mkdir(parents=True)
    (jobs / "again.json").write_text(json.dumps(dict(runs[0], test=runs[0]["metrics"])))  # gathered already
    (jobs / "new.json").write_text(json.dumps(dict(RUN, key="dfdc/fewshot/k10", variant="fdftnet", shots=10,
                                                   test=RUN["metrics"])))
    sweep = [{"method": m, "k": k, "seed": s, "acc": 0.5 + k / 100 + s / 50, "auroc": 0.6 + k / 100}
             for m in ("fdftnet", "baseline-head") for k in (5, 10) for s in (0, 1)]
    (d / "sweep_dfdc.json").write_text(json.dumps({"config": {"data": "/data/dfdc", "init_from": "x/base-squeezenet"},
                                                   "runs": sweep, "summary": []}))
    return d


def test_compare_reads_runs_jobs_and_sweeps(tmp_path, monkeypatch):
    from lab import compare, results
    monkeypatch.setenv("FDFTNET_RESULTS", str(_results(tmp_path / "r")))
    runs, problems = results.load_runs()
    assert problems == [] and len(runs) == 11  # 10 gathered + the one job record not in reproduce.json
    points, problems = results.load_sweeps()
    assert problems == [] and len(points) == 8 and {p["dataset"] for p in points} == {"dfdc"}
    ds, shots, variants, backbone, source, run, head, curves, roc, note = compare.refresh(None, None, None)
    assert ds["value"] == "dfdc" and shots["choices"] == ["full set", "10"] and shots["value"] == "full set"
    # headline: per backbone the baseline and its most-seeded FDFtNet recipe, mean +- sd, a zoomed axis
    assert variants["value"] == [] and {t.name for t in head.data} == {"baseline", "FDFtNet"}
    acc = next(t for t in head.data if t.name == "baseline" and t.xaxis == "x")
    assert list(acc.y) == pytest.approx([0.605, 0.705]) and acc.error_y.array[0] == pytest.approx(0.00707, abs=1e-4)
    assert head.layout.yaxis.range[0] > 0.4  # zoomed to the data, not 0-1
    # shots curves: the sweep file first, a line per method with a band
    assert source["choices"][0] == "sweep_dfdc.json" and source["value"] == "sweep_dfdc.json"
    assert {t.name for t in curves.data if t.mode == "lines+markers"} == {"FDFtNet (new layers)",
                                                                          "baseline, last layer retrained"}
    assert sum(t.fill == "toself" for t in curves.data) == 4  # 2 methods x 2 panels
    # ROC: one backbone, by default the headline pair only (named with their recipes), the legend above the plot
    # where it cannot cover the tick labels (issue #32.6)
    assert backbone["value"] in ("squeezenet", "xception")
    lines = [t.name for t in roc.data if t.name != "chance"]
    assert len(lines) == 2 and lines[0].startswith("baseline (") and lines[1].startswith("FDFtNet (")
    assert roc.layout.legend.orientation == "h" and roc.layout.legend.y > 1 and head.layout.legend.y > 1
    assert ("FDFtNet, detector kept fixed [fdftnet-frozen]", "fdftnet-frozen") in variants["choices"]
    # ticked variants replace the headline pair; the benchmark jobs are the other source
    *_, head, curves, roc, note = compare.refresh(None, "dfdc", "full set", "xception", ["fdftnet-unfrozen"],
                                                 results.JOBS)
    assert [t.name for t in head.data] == ["FDFtNet, detector trained too"] * 2 and roc.layout.title.text.endswith(
        "xception")
    assert {t.name for t in curves.data if t.mode == "lines+markers"} == {"FDFtNet (new layers)"}


def test_compare_empty_state_says_what_to_do(tmp_path, monkeypatch):
    from lab import compare
    monkeypatch.setenv("FDFTNET_RESULTS", str(tmp_path / "none"))
    ds, shots, variants, backbone, source, run, head, curves, roc, note = compare.refresh(None, None, None)
    assert "No results yet" in note and "Few-shot" in note and ds["choices"] == []
    texts = lambda fig: " ".join(a.text for a in fig.layout.annotations)  # noqa: E731
    assert "Few-shot" in texts(head) and "compare methods" in texts(curves) and texts(roc)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "sweep_x.json").write_text("{not json")
    monkeypatch.setenv("FDFTNET_RESULTS", str(broken))
    assert "sweep_x.json: JSONDecodeError" in compare.refresh(None, None, None)[-1]


# ----------------------------------------------------------------------------------------------
# uploads of photos: the largest face of each, photos without one skipped and named

skdata = pytest.importorskip("skimage.data")


def _photo_zip(path: Path, n: int = 4) -> str:
    """real/: n photos with the astronaut's face in a 640x480 canvas + one blank photo; fake/: n 64 px crops."""
    from conftest import add_upsampling_artefact, make_face
    face = np.asarray(Image.fromarray(skdata.astronaut()).resize((300, 300)))
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n + 1):
            canvas = np.full((480, 640, 3), 90 + 10 * i, np.uint8)
            if i < n:
                canvas[60 + 10 * i:360 + 10 * i, 100 + 20 * i:400 + 20 * i] = face
            name = f"real/photo{i}.jpg" if i < n else "real/empty-room.jpg"
            zf.writestr(name, _bytes(canvas, "JPEG"))
            if i < n:
                fake = add_upsampling_artefact(make_face(np.random.default_rng(i)))
                zf.writestr(f"fake/crop{i}.png", _bytes(fake, "PNG"))
    return str(path)


def _bytes(arr, fmt) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def test_uploaded_photos_become_face_crops_and_skipped_ones_are_named(tmp_path):
    from lab.uploads import prepare_upload
    from fdftnet.data import DataError
    faces, counts, note = prepare_upload(_photo_zip(tmp_path / "photos.zip"), None, None, tmp_path / "run")
    assert counts == {"real": 4, "fake": 4}
    crops = sorted((faces / "real").iterdir())
    assert [Image.open(p).size for p in crops] == [(64, 64)] * 4
    assert "**1 photo skipped**" in note and "real/empty-room.jpg" in note and "no face" in note
    assert not (tmp_path / "run" / "upload").exists()  # the photos go once cropped
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (640, 480), (120, 120, 120)).save(blank)
    crops = [str(p) for p in sorted((faces / "fake").iterdir())]
    with pytest.raises(DataError, match=r"too few faces after cropping \(real has 0; .*: 4 photos had no face"):
        prepare_upload(None, [str(blank)] * 4, crops, tmp_path / "run2")


def test_reals_only_preview_pairs_each_face_with_its_self_blend(tmp_path):
    from lab.uploads import pseudo_fake_examples
    from fdftnet.data import DataError
    shown = pseudo_fake_examples(_photo_zip(tmp_path / "photos.zip"), None, n=2)
    assert [c for _, c in shown] == ["real 1", "self-blend 1", "real 2", "self-blend 2"]
    assert all(im.shape == (64, 64, 3) and im.dtype == np.uint8 for im, _ in shown)
    assert not np.array_equal(shown[0][0], shown[1][0])  # the blend changed the face
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (640, 480), (120, 120, 120)).save(blank)
    with pytest.raises(DataError, match="no face found in the first photos"):
        pseudo_fake_examples(None, [str(blank)] * 3)


def test_finetune_status_names_skipped_photos(lab, tmp_path):  # noqa: F811
    from lab import finetune, state as st
    session = st.new_session()
    *_, (fig, status, results, session, archive) = finetune.run_finetune(
        _photo_zip(tmp_path / "photos.zip"), None, None, "default-baseline", 0, 1, True, 3, 10, "", session, None)
    assert "**Done:**" in status and "real/empty-room.jpg" in status
    st.drop_session(session)


# ----------------------------------------------------------------------------------------------
# the API as a client sees it (docs/api.md)

from test_lab import client  # noqa: E402, F401 - fixture: the launched app and a gradio_client


def test_api_lists_only_documented_endpoints_with_named_outputs(client):  # noqa: F811
    import re
    info = client.view_api(return_format="dict", print_info=False)
    named = info["named_endpoints"]
    assert info["unnamed_endpoints"] == {} and not [n for n in named if n.startswith("/lambda")]
    doc = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    assert set(re.findall(r'api_name="(/\w+)"', doc)) == set(named)  # one example per endpoint, no more
    assert {f"## {n}" for n in named} <= set(doc.splitlines())
    for name, ep in named.items():
        assert not [r["label"] for r in ep["returns"] if r["label"].startswith("value_")], name
        assert not [p["label"] for p in ep["parameters"] if p["label"].startswith("parameter_")], name
    types = {(n, p["parameter_name"]): (p["python_type"]["type"], p["parameter_has_default"])
             for n, ep in named.items() for p in ep["parameters"]}
    for n in ("/finetune", "/compare_methods"):  # a zip or two image lists: each optional
        assert all(types[n, k][1] for k in ("zip_file", "real_files", "fake_files")), n
    for key in [("/finetune", k) for k in ("shots", "epochs", "cutout_holes", "cutout_size")] + [
            ("/compare_methods", "seeds"), ("/robustness", "images_per_class")]:
        assert types[key][0] == "int", key
    # named for a caller (issue #32.7), not for the code: no choice / chosen / kinds / limit, a short output name
    params = {n: [p["parameter_name"] for p in ep["parameters"]] for n, ep in named.items()}
    assert params["/detect"][:3] == ["photo", "model", "whole_image"]
    assert params["/detect_many"][:3] == ["files", "model", "whole_image"]
    assert params["/robustness"][:5] == ["models", "dataset", "split", "images_per_class", "corruptions"]
    assert {"start_from", "freeze_backbone"} <= set(params["/finetune"]) and "start_from" in params["/compare_methods"]
    assert "checkpoint zip" in [r["label"] for r in named["/finetune"]["returns"]]  # view_api: checkpoint_zip
    for n, ps in params.items():
        assert not {"choice", "chosen", "kinds", "limit", "alpha", "beta", "base"} & set(ps), (n, ps)


# ----------------------------------------------------------------------------------------------
# reals only (issue 21): the fake class is self-blended from the upload's reals


def test_reals_only_upload_previews_self_blends_then_fine_tunes(lab, tmp_path):  # noqa: F811
    from conftest import make_face
    from lab import finetune, state as st
    z = tmp_path / "me.zip"
    with zipfile.ZipFile(z, "w") as zf:  # any layout: every image is a real one
        for i in range(8):
            zf.writestr(f"holiday/me{i}.png", _bytes(make_face(np.random.default_rng(i)), "PNG"))
    shown = finetune.preview_pseudo_fakes(str(z), None, True)
    assert shown["visible"] and [c for _, c in shown["value"][:2]] == ["real 1", "self-blend 1"]
    assert len(shown["value"]) == 8 and shown["value"][1][0].shape == (64, 64, 3)
    assert finetune.preview_pseudo_fakes(str(z), None, False)["visible"] is False
    session = st.new_session()
    outs = list(finetune.run_finetune(str(z), None, None, "default-baseline", 0, 1, True, 3, 10, "", session, True,
                                      None))
    assert "training on 6 real faces + a self-blend of each real per batch, holding out 2 reals" in outs[0][1]
    fig, status, results, session, archive = outs[-1]
    assert "**Done:**" in status and "self-blends of its reals" in results
    model = session["models"][0]
    assert "reals-only" in model["label"] and model["data"] is None
    assert session["runs"][-1]["variant"] == "fdftnet-frozen-reals-only"
    record = json.loads((Path(model["dir"]) / "training.json").read_text())
    assert record["train_config"]["reals_only"] is True and record["train_config"]["pseudo_fakes"] == "self-blend"
    with pytest.raises(gr.Error, match="the zip has a fake/ folder"):
        list(finetune.run_finetune(lab.zip, None, None, "default-baseline", 0, 1, True, 3, 10, "", session, True, None))
    st.drop_session(session)


def test_k_is_chosen_from_the_upload_and_refused_before_any_face_is_looked_for(lab, tmp_path, monkeypatch):  # noqa: F811
    """Issue #32.5: default k = 5, 10, 20 on a 20 + 20 upload worked for 56 s, then failed in a fading toast."""
    from fdftnet.data import DataError
    from lab import methods, state as st, uploads
    assert methods.auto_shots({"real": 22, "fake": 20}) == [2, 5, 10]  # 20 + 2 > 20: k = 20 would leave none
    assert methods.auto_shots({"real": 200, "fake": 120}) == [20, 50, 100]
    with pytest.raises(DataError, match="at least 4 per class"):
        methods.auto_shots({"real": 3, "fake": 30})
    looked = []
    monkeypatch.setattr(uploads, "crop_folder", lambda *a, **k: looked.append(a) or {})
    with pytest.raises(gr.Error, match=r"the largest k needs 22 photos per class .* this upload has 5 real and "
                                       r"5 fake: use a smaller k, or leave k on auto"):
        list(methods.compare_methods(labelled_zip(tmp_path / "set.zip", n=5), None, None, "default-baseline", "5,20",
                                     ["linear-probe"], 1, st.new_session(), None))
    assert looked == []  # refused from the file counts, before face finding
