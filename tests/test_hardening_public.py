"""Issue #31 (hardening II): what one anonymous visitor of a public Space could do to the owner or to every other
visitor, each audit failure reproduced and refused.

1 many faces stall /detect -> candidate caps and a time budget (fdftnet.mtcnn; also tests/test_mtcnn.py)
2 four clients block everyone -> one detection / training job at a time per client (lab.limits)
3 one sweep holds the training queue -> a run and minutes budget per sweep, a bounded wait for the training slot
4 the model picker lends the owner's token -> visitor-typed Hub ids are fetched anonymously
5 a huge weight file downloaded and kept -> its size checked before download, downloads in the session folder
6 server paths in messages -> messages name the repo or the file, never a server path
7 Gradio's upload route bypasses the disk caps -> lab.gatekeeper in front of it, per client
8 huge but finite weights answer "real" for everything -> a probe at load time (fdftnet.models._probe)

Handlers are called as plain functions on test_lab's tiny checkpoints; the upload guard is checked against the
launched app; the Hub is bench._fakehub on loopback.
"""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app.py, lab/ and bench/ live at the repo root

import gradio as gr  # noqa: E402

from bench._fakehub import FakeHub, checkpoint_files  # noqa: E402
from fdftnet import BaselineDetector  # noqa: E402
from fdftnet.data import DataError  # noqa: E402
from fdftnet.models import CheckpointError  # noqa: E402
from test_lab import client, lab  # noqa: E402,F401 - fixtures


def visitor(ip: str, session_hash: str = "s1") -> SimpleNamespace:
    """A gr.Request stand-in: the client address and session the lab reads."""
    return SimpleNamespace(client=SimpleNamespace(host=ip), headers={}, session_hash=session_hash)


@pytest.fixture
def public(monkeypatch):
    monkeypatch.setenv("FDFTNET_PUBLIC", "1")
    monkeypatch.delenv("SPACE_ID", raising=False)


@pytest.fixture(scope="module")
def tiled_faces(tmp_path_factory) -> str:
    """The audit's 676 faces of 40 px in one small PNG."""
    skdata = pytest.importorskip("skimage.data")
    face = Image.fromarray(skdata.astronaut()).crop((150, 30, 300, 200)).resize((40, 40))
    path = tmp_path_factory.mktemp("tiled") / "faces.png"
    Image.fromarray(np.tile(np.asarray(face), (26, 26, 1))).save(path)
    return str(path)


# ----------------------------------------------------------------------------------------------
# 1. many faces


def test_many_faces_are_capped_and_said(lab, tiled_faces):
    pytest.importorskip("facenet_pytorch")
    from lab import detect
    torch.set_num_threads(1)
    record, *_, verdict, status = detect.detect_image({"path": tiled_faces, "orig_name": "faces.png"}, "default")
    assert 0 < len(record["faces"]) <= 20
    assert "kept the 20 largest" in record["message"] or "most likely candidates" in record["message"]


def test_a_photo_over_the_detection_budget_is_one_line(lab, tiled_faces, monkeypatch):
    pytest.importorskip("facenet_pytorch")
    from lab import detect
    monkeypatch.setenv("FDFTNET_DETECT_SECONDS", "0")
    with pytest.raises(gr.Error, match=r"took longer than its 0 s budget") as e:
        detect.detect_image({"path": tiled_faces, "orig_name": "faces.png"}, "default")
    assert "\n" not in e.value.message


def test_a_batch_over_the_request_budget_scores_what_fits_and_lists_the_rest(lab, monkeypatch):
    from lab import detect, state as st
    monkeypatch.setenv("FDFTNET_BATCH_SECONDS", "0")
    with pytest.raises(gr.Error, match="none of the 2 files could be scored: the request's 0 s time budget"):
        detect.detect_many([lab.real, lab.fake], "default", st.new_session())
    monkeypatch.setenv("FDFTNET_BATCH_SECONDS", "60")
    df, _, _, status, _ = detect.detect_many([lab.real, lab.fake], "default", st.new_session())
    assert len(df) == 2 and "Time budget reached" not in status


def test_batch_limits_are_checked_from_the_headers_before_any_work(lab, monkeypatch, tmp_path):
    """120 photos gave 2.5 min of work, then a refusal blaming one file (issue #32.3): now the images over the
    request's pixel limit are set aside before any decoding, the rest scored, the skipped named."""
    from lab import detect, state as st
    big = []
    for i in range(3):
        p = tmp_path / f"photo{i}.png"
        Image.fromarray(np.full((1000, 1000, 3), 100 + i, np.uint8)).save(p)  # 1 Mpx each
        big.append(str(p))
    monkeypatch.setattr(detect, "lab_budget", lambda max_images=detect.MAX_FILES: detect.DecodeBudget(
        max_pixels=2_000_000, total_pixels=2_500_000, max_images=max_images))
    keep, over = detect.plan_batch([(p, Path(p).name) for p in big])
    assert [n for _, n in keep] == ["photo0.png", "photo1.png"] and over == ["photo2.png"]
    decoded = []
    real_faces = detect._faces
    monkeypatch.setattr(detect, "_faces", lambda path, *a, **k: decoded.append(path) or real_faces(path, *a, **k))
    df, _, _, status, _ = detect.detect_many(big, "default", st.new_session())
    assert decoded == big[:2]  # the third was never opened past its header
    assert "**1 not scored, over this request's limits** (at most 500 images and 2.5 Mpx in all" in status
    assert "photo2.png" in status


# ----------------------------------------------------------------------------------------------
# 2. one job at a time per client


def test_a_client_runs_one_detection_at_a_time_other_clients_do_not_wait(lab, public):
    from lab import detect, limits
    attacker, bystander = visitor("203.0.113.7"), visitor("198.51.100.2")
    with limits.one_at_a_time(attacker, "detect"):  # the attacker's first photo is still being worked on
        with pytest.raises(gr.Error, match="already have a face detection running"):
            detect.detect_image(lab.real, "default", None, False, attacker)
        assert detect.detect_image(lab.real, "default", None, False, bystander)[0]["faces"]
    assert detect.detect_image(lab.real, "default", None, False, attacker)[0]["faces"]  # and again once it ended


def test_clients_behind_a_proxy_are_told_apart_by_the_address_it_saw(monkeypatch):
    from lab import limits
    req = SimpleNamespace(client=SimpleNamespace(host="10.0.0.1"), headers={"x-forwarded-for": "1.2.3.4, 5.6.7.8"})
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("FDFTNET_PROXY_HOPS", raising=False)
    assert limits.client_of(req) == "10.0.0.1"  # no proxy trusted: the header is the client's own words
    monkeypatch.setenv("FDFTNET_PROXY_HOPS", "1")
    assert limits.client_of(req) == "5.6.7.8"  # what the one trusted proxy appended, not the spoofable first entry
    monkeypatch.delenv("FDFTNET_PROXY_HOPS")
    monkeypatch.setenv("SPACE_ID", "user/space")
    assert limits.client_of(req) == "5.6.7.8"


# ----------------------------------------------------------------------------------------------
# 3. the training queue


def test_a_sweep_over_the_budget_is_refused_before_any_work(lab):
    from lab import methods
    shots = ",".join(str(k) for k in range(1, 39))
    all_methods = [m for _, m in methods.METHOD_INFO]
    with pytest.raises(gr.Error, match=r"950 runs \(38 k values x 5 methods x 5 seeds\) is over this server's limit "
                                       r"of 40 runs a sweep") as e:
        next(methods.compare_methods(None, None, None, "default-baseline", shots, all_methods, 5))
    assert "\n" not in e.value.message
    with pytest.raises(gr.Error, match=r"min of training is over this server's limit of 15 min a sweep"):
        next(methods.compare_methods(None, None, None, "default-baseline", "5,10,20,30,40",
                                     ["baseline-full", "fdftnet"], 4))  # 40 runs, about 53 min


def test_the_training_slot_waits_at_most_the_limit(monkeypatch):
    from lab import limits
    monkeypatch.setenv("FDFTNET_QUEUE_WAIT", "0.5")
    queue = limits.TrainingQueue()
    holder = queue.wait()
    with pytest.raises(StopIteration) as got:
        next(holder)  # nobody ahead: the slot at once
    token = got.value.value
    waiter = queue.wait(poll=0.05)
    assert next(waiter) == 1  # told how many are ahead
    with pytest.raises(DataError, match=r"training queue is full: 1 job still ahead after 0 s of waiting"):
        for _ in waiter:
            pass
    assert len(queue) == 1  # the refused job left the line
    queue.release(token)
    with queue.hold():
        assert len(queue) == 1


def test_a_finetune_waits_for_the_slot_then_is_refused(lab, monkeypatch):
    from lab import finetune, limits
    monkeypatch.setenv("FDFTNET_QUEUE_WAIT", "0.5")
    with limits.TRAINING.hold():  # a sweep of another visitor holds the slot
        run = finetune.run_finetune(lab.zip, None, None, "default-baseline", 0, 1)
        first = next(run)
        assert "waiting for the training slot: 1 job ahead" in first[1]
        with pytest.raises(gr.Error, match="training queue is full"):
            next(run)


# ----------------------------------------------------------------------------------------------
# 4-6. the Hub


@pytest.fixture
def fake_hub(lab, tmp_path, monkeypatch):
    """A loopback Hub with a private repo of the server's owner, a public tiny model and a public model whose weight
    file claims 3 GB; the server has its owner's HF_TOKEN."""
    from huggingface_hub import constants

    from lab import state as st
    torch.manual_seed(0)
    BaselineDetector(backbone="squeezenet").save_pretrained(tmp_path / "tiny")
    files = checkpoint_files(tmp_path / "tiny")
    big_config = {"files": {"config.json": json.dumps({"model_type": "baseline", "backbone": "squeezenet",
                                                        "pad": "x" * 70_000}).encode()}}
    repos = {"owner/private": {"files": files, "token": "hf_owner_secret"}, "someone/tiny": {"files": files},
             "someone/huge": {"files": files, "claimed": {"model.safetensors": 3 * 2**30}},
             "someone/bigconfig": big_config}
    with FakeHub(repos) as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_TOKEN", "hf_owner_secret")
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
        st._HUB.update(t=0.0, ok=False)
        yield hub
    st._HUB.update(t=0.0, ok=False)


def test_hub_ids_typed_by_a_visitor_never_carry_the_owners_token(fake_hub):
    from lab import state as st
    session = st.new_session()
    with pytest.raises(CheckpointError, match="owner/private"):
        st.get_model("owner/private", session=session)  # private: the anonymous request does not see it
    model = st.get_model("someone/tiny", session=session)  # public: loads, anonymously
    assert model.model_type == "baseline"
    assert st.resolve("someone/tiny", session).startswith(session["dir"])  # inside the session: its disk counted
    assert fake_hub.log and fake_hub.authorized() == []


def test_a_huge_weight_file_is_refused_before_download_and_nothing_stays(fake_hub):
    from lab import state as st
    session = st.new_session()
    with pytest.raises(CheckpointError) as e:
        st.get_model("someone/huge", session=session)
    msg = str(e.value)
    assert msg.startswith("someone/huge: model.safetensors is 3,072 MB, more than the") and "not downloaded" in msg
    assert not [r for r in fake_hub.log if r[0] == "GET" and r[1].endswith("model.safetensors")]
    assert fake_hub.sent.get("someone/huge", 0) < 1024  # its config.json (177 bytes), not a byte of the weights
    assert not list(Path(session["dir"]).rglob("*.safetensors")) and not list(Path(session["dir"]).rglob("*huge*"))


def test_refusals_name_the_repo_never_a_server_path(fake_hub, tmp_path):
    from lab import state as st
    session = st.new_session()
    messages = []
    for repo in ("someone/huge", "someone/bigconfig", "owner/private", "someone/missing"):
        with pytest.raises(CheckpointError) as e:
            st.get_model(repo, session=session)
        messages.append(str(e.value))
    assert "config.json is over" in messages[1] and messages[1].startswith("someone/bigconfig")
    for m in messages:
        assert "/tmp" not in m and session["dir"] not in m and "\n" not in m, m
    # and whatever a handler raises reaches the visitor without the server's folders
    guarded = st.guard(lambda: (_ for _ in ()).throw(DataError(f"{tmp_path}/uploads/x1/photo.jpg: not an image")))
    with pytest.raises(gr.Error) as e:
        guarded()
    assert e.value.message == "photo.jpg: not an image"


# ----------------------------------------------------------------------------------------------
# 7. Gradio's upload route


def _upload(url: str, nbytes: int, ip: str | None = None):
    import httpx
    headers = {"x-forwarded-for": ip} if ip else {}
    files = {"files": ("blob.png", b"\x89PNG" + bytes(nbytes - 4), "image/png")}
    return httpx.post(url + "gradio_api/upload", files=files, headers=headers, timeout=60)


def test_the_upload_route_is_capped_per_request_and_per_client(client, monkeypatch):
    from gradio.utils import get_upload_folder

    import app
    from lab import state as st
    url = app.demo.local_url
    folder = Path(get_upload_folder())
    before = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
    monkeypatch.setenv("FDFTNET_UPLOAD_MB", "1")
    r = _upload(url, 3 * 2**20)
    assert r.status_code == 413 and r.text.startswith("this upload is 3 MB, over this server's limit of 1 MB")
    after = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
    assert after - before < 2**20  # nothing of it was stored
    # one client, no session at all: its uploads count against it, whatever page loads or sessions it has
    monkeypatch.setenv("FDFTNET_PUBLIC", "1")
    monkeypatch.setenv("FDFTNET_PROXY_HOPS", "1")
    monkeypatch.setenv("FDFTNET_CLIENT_MB", "2")
    answers = [_upload(url, 900_000, ip="203.0.113.9").status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    assert _upload(url, 900_000, ip="198.51.100.3").status_code == 200  # another visitor is not affected
    monkeypatch.setenv("FDFTNET_LAB_MB", "0")
    assert _upload(url, 1000, ip="198.51.100.4").status_code == 507
    assert app.demo.delete_cache == (60, 540) and st.footprint() >= 0


# ----------------------------------------------------------------------------------------------
# 8. saturated weights


@pytest.mark.parametrize("scale", [1e30, 1e37])
def test_huge_finite_weights_are_refused_at_load(tmp_path, scale):
    from safetensors.torch import load_file, save_file

    from fdftnet.checkpoint import load_model
    torch.manual_seed(0)
    BaselineDetector(backbone="squeezenet").save_pretrained(tmp_path / "m")
    weights = load_file(tmp_path / "m" / "model.safetensors")
    weights["backbone.classifier.weight"] = weights["backbone.classifier.weight"] * scale  # the last layer
    save_file(weights, tmp_path / "m" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"(saturated|NaN or infinite)") as e:
        load_model(tmp_path / "m")
    assert "\n" not in str(e.value)
    BaselineDetector(backbone="squeezenet").save_pretrained(tmp_path / "ok")
    assert load_model(tmp_path / "ok").model_type == "baseline"
