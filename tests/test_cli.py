"""The `fdftnet predict` front door (#18.3, #19.2): the shipped default without --model, the names `default`
and `default-baseline` resolved locally and at once, one clear line for a name that is neither a folder nor
a valid Hub id (no Hub round trip: checked by counting connection attempts, not by a clock), a header before
the rows, `--json` JSON Lines in the shape of issue #19, faces detected by default (`--whole-image` for the
old centre-square scoring), and `fdftnet crop-faces`. Photos with faces are skimage's astronaut pasted on
canvases, as in test_faces.py.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants
from PIL import Image

from fdftnet.cli import main, resolve_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `bench` without an install

from bench import _hostile as H  # noqa: E402


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    """A checkpoints/ folder like the repository's: tiny fdftnet/ and baseline/, and default.json naming them."""
    return H.make_lab_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture
def offline(monkeypatch, shipped, network_attempts) -> list:
    """HF_HUB_OFFLINE, FDFTNET_CHECKPOINTS=shipped, and every DNS lookup or connection recorded (and refused)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once at import
    monkeypatch.setenv("FDFTNET_CHECKPOINTS", str(shipped))
    return network_attempts


def _image(path: Path, w: int = 100, h: int = 60, seed: int = 0) -> str:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return str(path)


# ----------------------------------------------------------------------------- the shipped default

@pytest.mark.parametrize("argv, folder, kind", [([], "fdftnet", "fdftnet"), (["--model", "default"], "fdftnet", "fdftnet"),
                                                (["--model", "default-baseline"], "baseline", "baseline")])
def test_predict_uses_the_shipped_default(offline, shipped, tmp_path, capsys, argv, folder, kind):
    img = _image(tmp_path / "face.png")
    assert main(["predict", *argv, "--whole-image", "--device", "cpu", img]) == 0
    head, columns, row = capsys.readouterr().out.splitlines()
    assert head.startswith("# model ") and f"= {shipped / folder} ({kind}, squeezenet), threshold 0." in head
    assert head.endswith("scores each image's centre square")
    assert columns.split("\t") == ["file", "face", "box", "score", "p_fake", "verdict"]
    file, face, box, score, p, verdict = row.split("\t")
    assert (file, face, box, score) == (img, "1", "20,0,80,60", "-") and 0 <= float(p) <= 1  # the centre square
    assert verdict in ("real", "fake") and offline == []  # nothing asked the Hub


def test_default_is_whatever_default_json_names(offline, tmp_path, monkeypatch):
    root = tmp_path / "ckpts"
    for name in ("new-fdftnet", "old-fdftnet", "base"):
        (root / name).mkdir(parents=True)
    (root / "default.json").write_text(json.dumps({"fdftnet": "new-fdftnet", "baseline": "base"}))
    monkeypatch.setenv("FDFTNET_CHECKPOINTS", str(root))
    assert resolve_model("default") == resolve_model(None) == str(root / "new-fdftnet")
    assert resolve_model("default-baseline") == str(root / "base")
    (root / "default.json").write_text(json.dumps({"fdftnet": "gone"}))
    for name in ("default", "default-baseline"):
        assert main(["predict", "--model", name, _image(tmp_path / "f.png")]) == 2


def test_repository_default_json_names_a_shipped_checkpoint(monkeypatch):
    monkeypatch.delenv("FDFTNET_CHECKPOINTS", raising=False)
    names = json.loads((ROOT / "checkpoints" / "default.json").read_text())
    assert resolve_model("default") == str(ROOT / "checkpoints" / names["fdftnet"])
    assert resolve_model("default-baseline") == str(ROOT / "checkpoints" / names["baseline"])


def test_predict_with_no_model_works_offline_from_anywhere(tmp_path):
    """The real console script, from a folder that has no checkpoints/: the repository's default answers."""
    img = _image(tmp_path / "face.png", 64, 64)
    env = {k: v for k, v in os.environ.items() if k != "FDFTNET_CHECKPOINTS"}
    r = subprocess.run([sys.executable, "-m", "fdftnet", "predict", img], cwd=tmp_path, capture_output=True,
                       text=True, env=dict(env, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT)), timeout=600)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    head, _, message, row = r.stdout.splitlines()  # a 64x64 image already is a face crop: used as is
    assert "(fdftnet, " in head and message == f"# {img}: already a face crop: used as is"
    assert row.startswith(f"{img}\t1\t0,0,64,64\t-\t")


# ----------------------------------------------------------------------------- names that are not models

@pytest.mark.parametrize("name, words", [
    ("checkpoints/<default>", "no checkpoint folder"),  # the README's old placeholder, typed in the repo
    ("models/<default>", "neither a checkpoint folder nor a valid Hub repo id"),
    ("my model", "neither a checkpoint folder nor a valid Hub repo id"),
    ("a/b/c", "no checkpoint folder"),
    ("./runs/missing", "no checkpoint folder"),
    ("checkpoints/typo", "no checkpoint folder"),  # checkpoints/ exists here: a path, not a Hub id
    ("face.png", "is a file"),
    ("user/not-cached", "not in the Hub cache"),  # a valid id, HF_HUB_OFFLINE set: the cache says no at once
])
def test_bad_model_name_is_one_line_at_once(offline, tmp_path, monkeypatch, capsys, name, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    _image(tmp_path / "face.png")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["predict", "--model", name, "face.png"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("fdftnet: error: ") and words in err, err
    assert offline == []  # no DNS lookup, no connection: so no retries either


def test_missing_default_json_is_one_line(offline, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FDFTNET_CHECKPOINTS", str(tmp_path / "empty"))
    assert main(["predict", _image(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no shipped fdftnet model" in err and "--model" in err


# ----------------------------------------------------------------------------- --json

def test_predict_whole_image_json_lines(offline, shipped, tmp_path, capsys):
    good = _image(tmp_path / "wide.png", 100, 60)
    square = _image(tmp_path / "square.png", 64, 64, seed=1)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert main(["predict", "--json", "--whole-image", "--device", "cpu", good, str(bad), square]) == 2  # 1 bad
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]  # every line is JSON: no header
    assert [r["file"] for r in records] == [good, str(bad), square]
    for r, box in zip(records[::2], ([20.0, 0.0, 80.0, 60.0], [0.0, 0.0, 64.0, 64.0])):
        assert set(r) == {"file", "faces", "message", "calibrated", "tested_on"} and r["message"] is None
        (face,) = r["faces"]
        assert set(face) == {"box", "score", "p_fake", "fake", "verdict", "reason"} and face["box"] == box and face["score"] is None
        assert 0 <= face["p_fake"] <= 1 and isinstance(face["fake"], bool)
    thr = float(__import__("fdftnet").load_model(shipped / "fdftnet").threshold)
    assert all(f["fake"] == (f["p_fake"] >= thr) for r in records for f in r["faces"])
    assert records[1]["faces"] == [] and "not an image" in records[1]["message"]
    assert err.count("\n") == 1 and "notes.png" in err


# ----------------------------------------------------------------------------- faces (#19.2)

@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict:
    """one.png (one face), two.png (two faces), blank.png (none), banner.png (40x2000): paths by name."""
    pytest.importorskip("facenet_pytorch")
    astronaut = pytest.importorskip("skimage.data").astronaut()  # 512x512, its face near (182..267, 62..175)
    root = tmp_path_factory.mktemp("photos")
    one = np.full((768, 1024, 3), 200, np.uint8)
    one[100:612, 50:562] = astronaut
    two = np.full((600, 1200, 3), 120, np.uint8)
    two[44:556, 40:552] = two[44:556, 640:1152] = astronaut
    arrays = {"one": one, "two": two, "blank": np.full((480, 640, 3), 128, np.uint8),
              "banner": np.full((40, 2000, 3), 128, np.uint8)}
    for name, arr in arrays.items():
        Image.fromarray(arr).save(root / f"{name}.png")
    return {name: str(root / f"{name}.png") for name in arrays}


def test_predict_finds_each_face(offline, photos, capsys):
    assert main(["predict", "--json", "--device", "cpu", photos["two"], photos["blank"], photos["banner"]]) == 0
    two, blank, banner = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert two["message"] is None and len(two["faces"]) == 2
    (a, b) = sorted(two["faces"], key=lambda f: f["box"][0])
    for face, x in ((a, 40), (b, 640)):  # each box on its astronaut's face (182..267 px across the picture)
        x0, y0, x1, y1 = face["box"]
        assert x + 160 < x0 < x + 200 and x + 250 < x1 < x + 290 and 44 + 40 < y0 < 44 + 90, face
        assert face["score"] > 0.95 and 0 <= face["p_fake"] <= 1 and isinstance(face["fake"], bool)
    assert blank == {"file": photos["blank"], "faces": [], "message": "no face found", "calibrated": False,
                     "tested_on": []}  # and exit status 0
    assert banner["faces"] == [] and "aspect ratio" in banner["message"]


def test_predict_rows_say_when_no_face_was_found(offline, photos, capsys):
    assert main(["predict", "--device", "cpu", photos["one"], photos["blank"]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("scores each face found (MTCNN)")
    assert lines[2].startswith(f"{photos['one']}\t1\t") and len(lines[2].split("\t")) == 6
    assert lines[3:] == [f"# {photos['blank']}: no face found",
                         "# 1 image with no face scored: --whole-image scores the whole picture instead"]


@pytest.mark.parametrize("argv, words", [(["--max-faces", "0"], "at least 1"), (["--min-face", "-3"], "at least 1")])
def test_predict_bad_face_options_are_one_line(offline, tmp_path, capsys, argv, words):
    assert main(["predict", *argv, _image(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


def test_crop_faces_makes_a_training_folder(offline, photos, tmp_path, capsys):
    src = tmp_path / "src"
    for cls, names in (("real", ("one", "blank")), ("fake", ("two",))):
        (src / cls).mkdir(parents=True)
        for name in names:
            (src / cls / f"{name}.png").write_bytes(Path(photos[name]).read_bytes())
    assert main(["crop-faces", str(src), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2 face crops from 3 photos") and "finetune: 1 real + 1 fake" in out[0]
    assert "1 photos had no face" in out[0] and out[1].startswith(f"  skipped {src / 'real' / 'blank.png'}: no face")
    for cls, name in (("real", "one"), ("fake", "two")):  # the largest face per photo, 64x64
        assert Image.open(tmp_path / "out" / "finetune" / cls / f"{name}.png").size == (64, 64)
    assert not (tmp_path / "out" / "finetune" / "real" / "blank.png").exists()


def test_crop_faces_refusals_are_one_line(offline, photos, tmp_path, capsys):
    (tmp_path / "flat").mkdir()
    assert main(["crop-faces", str(tmp_path / "flat"), str(tmp_path / "out")]) == 2  # no real/ or fake/
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "empty" / "real").mkdir(parents=True)
    (tmp_path / "empty" / "real" / "blank.png").write_bytes(Path(photos["blank"]).read_bytes())
    assert main(["crop-faces", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "fdftnet: error: no face in any photo: nothing to train on\n"


def test_without_facenet_a_photo_is_one_line_and_a_crop_still_works(offline, photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import fails: ModuleNotFoundError
    monkeypatch.setattr("fdftnet.faces._DETECTOR", None)
    crop = _image(tmp_path / "crop.png", 64, 64)
    assert main(["predict", "--json", "--device", "cpu", crop]) == 0  # a face crop needs no detector
    assert json.loads(capsys.readouterr().out)["message"] == "already a face crop: used as is"
    assert main(["predict", "--device", "cpu", photos["one"]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs facenet-pytorch" in err and "--whole-image" in err


# ----------------------------------------------------------------------------- issue #32.8

def test_predict_takes_folders(offline, tmp_path, capsys):
    (tmp_path / "photos" / "more").mkdir(parents=True)
    a = _image(tmp_path / "photos" / "a.png", 64, 64)
    b = _image(tmp_path / "photos" / "more" / "b.png", 64, 64, seed=1)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    assert main(["predict", "--json", str(tmp_path / "photos")]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in records] == [a, b] and all(r["faces"] for r in records)
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fdftnet: error: {tmp_path / 'empty'}: a folder with no image or video files") and "\n" not in err


def test_models_lists_the_checkpoints_model_accepts(offline, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    head, backbones = out.split("Backbones", 1)
    assert "default, fdftnet" in head and "default-baseline, baseline" in head  # the names, and what they resolve to
    assert "64px" in head and "efficientnet_lite0" in backbones and "128 px default" in backbones
