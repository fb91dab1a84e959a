"""Detect on real photos (issue 19.3, 20.4, 20.5): faces found and boxed, one row per face, the no-face choice,
face crops used as is, one-line errors kept in the page, the API as a client sees it.

Real faces: skimage's data.astronaut() (public domain) pasted into canvases, as in test_faces.py. Models: the
tiny checkpoints of test_lab's `lab` fixture; `client` launches app.demo against them.
"""
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("facenet_pytorch")
skdata = pytest.importorskip("skimage.data")

import gradio as gr  # noqa: E402

from test_lab import client, lab  # noqa: E402,F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # MTCNN on one thread (conftest)

ASTRO_FACE = np.array([182, 62, 267, 175]) / 512  # the face box as a fraction of the astronaut picture
PLACES = [(380, 40, 400), (20, 60, 300)]  # (x, y, side) of the two astronauts; the larger is face 1


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    astro = skdata.astronaut()
    canvas = np.full((480, 800, 3), 128, np.uint8)
    for x, y, side in PLACES:
        canvas[y:y + side, x:x + side] = np.asarray(Image.fromarray(astro).resize((side, side)))
    Image.fromarray(canvas).save(d / "two.png")
    Image.fromarray(np.full((480, 640, 3), 200, np.uint8)).save(d / "blank.png")
    from fdftnet.faces import find_faces
    Image.fromarray(find_faces(astro).faces[0].crop).save(d / "crop.png")
    (d / "notes.png").write_text("not an image")
    return {k: str(d / f"{k}.png") for k in ("two", "blank", "crop", "notes")}


def expected_box(x, y, side):
    return np.array([x, y, x, y]) + ASTRO_FACE * side


# ----------------------------------------------------------------------------------------------
# /detect as a function


def test_two_faces_two_rows_with_boxes_on_them(lab, photos):  # noqa: F811
    from lab import detect, detect_view as view
    record, top, shown, rows, verdict, status = detect.detect_image(photos["two"], "default")
    assert [set(f) for f in record["faces"]] == [{"box", "score", "p_fake", "fake", "verdict", "reason"}] * 2  # predict's
    for face, place in zip(record["faces"], PLACES):
        assert np.abs(np.array(face["box"]) - expected_box(*place)).max() < 0.1 * place[2]
        assert 0 <= face["p_fake"] <= 1 and face["fake"] == (face["p_fake"] >= record["threshold"])
    assert top == max(f["p_fake"] for f in record["faces"]) and record["label"] in ("real", "fake")
    assert record["message"] is None and status == ""
    # the boxes are drawn on the photo, in each face's verdict colour
    assert shown.shape == (480, 800, 3)
    for face in record["faces"]:
        x0, y0, x1, y1 = (round(v) for v in face["box"])
        colour = view.VERDICT_RGB[face["verdict"]]
        assert (np.abs(shown[(y0 + y1) // 2, x0 - 1:x0 + 2].astype(int) - colour).sum(1) < 30).any()
    assert len(re.findall(r'class="face-row"', rows)) == 2 and rows.count("data:image/png;base64") == 2 * 2 + 1
    assert "colour scale" in rows and rows.count("<b>FAKE</b>") + rows.count("<b>REAL</b>") == 2
    assert "2 faces" in verdict and verdict.count("P(fake) =") == 2 and "confidence" not in verdict + rows


def test_blank_photo_says_no_face_and_the_whole_image_choice_works(lab, photos):  # noqa: F811
    from lab import detect
    record, top, shown, rows, verdict, status = detect.detect_image(photos["blank"], "default")
    assert record["faces"] == [] and record["message"] == "no face found" and record["label"] is None
    assert top is None and rows == "" and "No face found" in status and "score the whole image anyway" in status
    record, top, shown, rows, verdict, status = detect.detect_image(photos["blank"], "default", None, True)
    assert len(record["faces"]) == 1 and record["faces"][0]["box"] == [80.0, 0.0, 560.0, 480.0]  # its centre square
    assert "whole image" in record["message"] and 0 <= top <= 1 and rows.count('class="face-row"') == 1


def test_a_face_crop_is_used_as_is(lab, photos):  # noqa: F811
    from lab import detect
    record, top, shown, rows, verdict, status = detect.detect_image({"path": photos["crop"], "orig_name": "c.png"})
    assert record["message"] == "already a face crop: used as is" and record["file"] == "c.png"
    assert [f["box"] for f in record["faces"]] == [[0.0, 0.0, 64.0, 64.0]] and record["faces"][0]["score"] is None
    assert "already a face crop" in verdict and shown.shape == (64, 64, 3)


def test_bad_input_one_line_in_the_log_and_in_the_page(lab, photos, caplog):  # noqa: F811
    from lab import detect
    req = gr.Request(session_hash="page-1")
    with caplog.at_level(logging.INFO, logger="fdftnet.lab"), pytest.raises(gr.Error, match="not an image") as e:
        detect.detect_image(photos["notes"], "default", None, False, req)
    assert "\n" not in e.value.message
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and refused[0].exc_info is None and "Traceback" not in caplog.text
    assert detect.status_of(req) == f"**Could not score this:** {e.value.message}"  # the status line's text
    assert "see the message above" in detect.status_of(req)  # read once
    assert detect.failed_detect(req)[:4] == (None, None, None, "")  # the last photo's results are cleared
    assert detect.detect_upload(None, "default", None, False, req) == (None, None, None, "", "", "")  # emptied


def test_detect_many_rows_per_face(lab, photos):  # noqa: F811
    from lab import detect, state as st
    session = st.new_session()
    files = [photos["two"], photos["blank"], photos["crop"], photos["notes"]]
    df, csv, gallery, status, session = detect.detect_many(files, "default", session)
    assert list(df.columns) == ["file", "face", "box", "P(fake)", "verdict", "note"]
    assert sorted(df["file"]) == ["blank.png", "crop.png", "two.png", "two.png"]
    two = df[df["file"] == "two.png"].sort_values("face")
    assert list(two["face"]) == [1, 2] and all(re.fullmatch(r"\d+,\d+,\d+,\d+", b) for b in two["box"])
    assert df[df["file"] == "blank.png"]["verdict"].item() == "no face"
    assert df[df["file"] == "crop.png"]["note"].item() == "already a face crop: used as is"
    assert Path(csv).read_text().startswith("file,face,box,P(fake),verdict,note\n") and len(gallery) == 3
    assert "3 faces" in status and "1 with no face found" in status and "1 skipped" in status
    df, *_ = detect.detect_many([photos["blank"]], "default", session, True)
    assert len(df) == 1 and df["verdict"].item() in ("real", "fake") and "whole image" in df["note"].item()
    st.drop_session(session)


def test_about_this_model_comes_from_its_records(lab, tmp_path):  # noqa: F811
    from lab import detect
    text = detect.model_info("default")
    assert text.startswith("**About this model:** FDFtNet") and "no training record" in text
    assert "Few-shot fine-tune" in text
    ck = tmp_path / "ck"
    ck.mkdir()
    for f in (lab.ck / "fdftnet-squeezenet").iterdir():
        (ck / f.name).write_bytes(f.read_bytes())
    (ck / "training.json").write_text(json.dumps({"info": {"data": "../shared/data/gan64",
                                                           "train_counts": {"real": 10, "fake": 10}}}))
    (ck / "eval.json").write_text(json.dumps({"acc": 0.9, "auroc": 0.95, "data": "gan64", "split": "test"}))
    text = detect.model_info(str(ck))
    assert "trained on **gan64** (10 real + 10 fake face crops)" in text and "ACC 90.0%, AUROC 0.950" in text
    (ck / "families.json").write_text(json.dumps({"families": [  # a model trained in stages: the families it met
        {"family": "DFDC face swaps", "trained_on": "dfdc-full train", "tested_on": []},
        {"family": "GAN faces", "trained_on": "gan finetune", "tested_on": []},
        {"family": "self-blends", "trained_on": None, "tested_on": []}]}))
    text = detect.model_info(str(ck))
    assert "trained on **DFDC face swaps** and **GAN faces** (its model card lists the data)" in text


# ----------------------------------------------------------------------------------------------
# the package parts this uses


def test_load_photo_decodes_once_at_full_size_within_the_budget(tmp_path):
    from fdftnet import faces
    from fdftnet.data import load_image
    from fdftnet.data.images import BudgetError, DecodeBudget
    arr = np.random.default_rng(0).integers(0, 255, (1200, 1000, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "p.jpg", quality=95)
    full = load_image(tmp_path / "p.jpg", size=None)
    assert full.shape == (1200, 1000, 3) and full.flags.writeable  # no JPEG draft, no crop, no resize
    budget = DecodeBudget(max_pixels=2_000_000, total_pixels=2_000_000)
    assert faces.load_photo(tmp_path / "p.jpg", budget=budget).shape == (1200, 1000, 3)
    assert budget.pixels == 1200 * 1000  # charged the full size once
    with pytest.raises(BudgetError, match="more than 2 Mpx"):
        faces.load_photo(tmp_path / "p.jpg", budget=budget)
    assert load_image(tmp_path / "p.jpg").shape == (64, 64, 3)  # the default path is unchanged
    # a JPEG at least twice max_side decodes at a DCT scale keeping >= max_side px; the budget sees that size
    budget = DecodeBudget(max_pixels=400_000)
    assert faces.load_photo(tmp_path / "p.jpg", budget=budget, max_side=500).shape == (600, 500, 3)
    assert budget.pixels == 600 * 500
    assert faces.load_photo(tmp_path / "p.jpg", max_side=700).shape == (1200, 1000, 3)  # under twice: full size


def test_whole_image_boxes_and_colour_scale():
    from fdftnet import explain, faces
    res = faces.whole_image(np.zeros((100, 300, 3), np.uint8))
    assert res.faces[0].box == (100.0, 0.0, 200.0, 100.0) and res.faces[0].crop.shape == (64, 64, 3)
    bar = explain.colour_scale(50, 4)
    assert bar.shape == (4, 50, 3) and bar[0, 0, 2] > bar[0, 0, 0] and bar[0, -1, 0] > bar[0, -1, 2]  # blue -> red
    big = np.zeros((2000, 1000, 3), np.uint8)
    shown = explain.draw_boxes(big, [(100, 200, 500, 700)], ["1"], [(255, 0, 0)])
    assert shown.shape == (1024, 512, 3) and (shown[350, 50:52] == (255, 0, 0)).all(1).any()  # scaled with the photo


# ----------------------------------------------------------------------------------------------
# gradio_client against the launched app


def test_client_detect_api(lab, client, photos):  # noqa: F811
    from gradio_client import handle_file
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert not [k for k in api if k.startswith("/lambda")]
    for name in ("/detect", "/detect_many"):
        params = {p["parameter_name"]: p for p in api[name]["parameters"]}
        assert list(params) == (["photo"] if name == "/detect" else ["files"]) + ["model", "whole_image"]
        assert params["whole_image"]["parameter_has_default"] and params["model"]["parameter_has_default"]
        assert not [r["label"] for r in api[name]["returns"] if not r["label"] or r["label"].startswith("value_")]
    assert [r["label"] for r in api["/detect"]["returns"]][:2] == ["faces", "highest P(fake)"]
    record, top, *_ = client.predict(handle_file(photos["two"]), api_name="/detect")
    assert len(record["faces"]) == 2 and isinstance(top, float) and record["label"] in ("real", "fake")
    record, top, *_, status = client.predict(handle_file(photos["blank"]), api_name="/detect")
    assert record["faces"] == [] and top is None and "No face found" in status
    record, *_ = client.predict(handle_file(photos["blank"]), "default", True, api_name="/detect")
    assert len(record["faces"]) == 1
    with pytest.raises(Exception, match="not an image"):
        client.predict(handle_file(photos["notes"]), api_name="/detect")
    table, *_ = client.predict([handle_file(photos["two"]), handle_file(photos["blank"])], api_name="/detect_many")
    faces = [row[1] for row in table["data"]]
    assert sorted(f for f in faces if f is not None) == [1, 2] and all(isinstance(f, int) for f in faces if f)
