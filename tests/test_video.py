"""fdftnet.video and the Detect tab's video (issue #33): clips the tests make with PyAV (bench/_clips.py) of
skimage's astronaut moving across a background: one face, two faces, no face, a portrait clip with a rotation
matrix, and the hostile files (a header that lies about its length or its frame size, truncated, audio only, a
still image renamed .mp4), each answered in one line."""
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("av")
pytest.importorskip("facenet_pytorch")
pytest.importorskip("skimage.data")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _clips as C  # noqa: E402
from fdftnet import BaselineDetector  # noqa: E402
from fdftnet.cli import main  # noqa: E402
from fdftnet.video import VideoError, analyze_video, link_tracks, probe, sample_frames  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    one = C.make_clip(d / "one.mp4", seconds=3)
    face = C.astronaut_face(150)
    return {"one": one, "two": C.make_clip(d / "two.webm", faces=[face, face[:, ::-1].copy()], seconds=3,
                                           codec="libvpx-vp9"),
            "none": C.make_clip(d / "none.mkv", faces=[], seconds=2),
            "portrait": C.make_clip(d / "portrait.mov", seconds=2, width=360, height=640, rotate=90),
            "lying_length": C.lying_duration(one, d / "lying_length.mp4"),
            "lying_size": C.lying_size_y4m(d / "lying_size.mp4"),
            "truncated": C.truncated(one, d / "truncated.mp4"),
            "audio": C.audio_only(d / "audio.mp4"), "still": C.still_renamed(d / "still.mp4"),
            "empty": _empty(d / "empty.avi")}


def _empty(p: Path) -> Path:
    p.write_bytes(b"")
    return p


@pytest.fixture(scope="module")
def model():
    import torch
    torch.manual_seed(0)
    return BaselineDetector(backbone="squeezenet").eval()


def test_one_face_is_one_track_over_the_whole_clip(clips, model):
    rec = analyze_video(model, clips["one"], frames=12)
    assert rec["frames_sampled"] == 12 and rec["frames_with_faces"] == 12 and rec["duration"] == pytest.approx(3.0)
    (track,) = rec["tracks"]
    assert track["n"] == 12 and track["start"] < 0.3 and track["end"] > 2.7
    xs = [f["box"][0] for f in track["frames"]]
    assert xs == sorted(xs)  # the face moves left to right: the frames are in time order
    assert rec["verdict"] == track["verdict"] and rec["p_fake"] == track["p_fake"]
    assert rec["aggregation"] == "mean of the per-frame logit margins"
    json.dumps(rec)  # the record is what --json and the API return


def test_two_faces_are_two_tracks_and_a_clip_without_faces_says_so(clips, model):
    rec = analyze_video(model, clips["two"], frames=10)
    assert [t["n"] for t in rec["tracks"]] == [10, 10]
    tops = [sum(f["box"][1] for f in t["frames"]) / 10 for t in rec["tracks"]]
    assert abs(tops[0] - tops[1]) > 150  # one along the top, one along the bottom: never swapped
    assert rec["tracks"][0]["p_fake"] >= rec["tracks"][1]["p_fake"]  # most suspicious first
    none = analyze_video(model, clips["none"], frames=8)
    assert none["tracks"] == [] and none["verdict"] is None and "no face found in any of the 8 frames" in none["message"]


def test_a_portrait_clip_is_turned_upright(clips, model):
    frames, info = sample_frames(clips["portrait"], 3)
    assert (info["width"], info["height"]) == (640, 360) and frames[0][1].shape == (640, 360, 3)
    assert analyze_video(model, clips["portrait"], frames=4)["frames_with_faces"] == 4  # upside down: no face


@pytest.mark.parametrize("name, words", [
    ("lying_size", "not a video file"), ("truncated", "not a video file"), ("audio", r"no video stream \(audio only\)"),
    ("still", "a still image, not a video"), ("empty", "empty file"),
])
def test_hostile_clips_are_one_line(clips, model, name, words):
    with pytest.raises(VideoError, match=words) as e:
        analyze_video(model, clips[name], frames=8)
    assert "\n" not in str(e.value) and str(clips[name].parent) not in str(e.value)


def test_a_header_that_claims_a_million_frames_costs_no_more_than_the_clip(clips, model):
    """Its movie and track headers claim 40,000 s (10^6 frames); FFmpeg times the clip by its sample table, and the
    decoding is counted against the frame cap whatever a header says: the clip is what it really is."""
    rec = analyze_video(model, clips["lying_length"], frames=6)
    assert rec["duration"] == pytest.approx(3.0) and rec["frames_sampled"] == 6 and len(rec["tracks"]) == 1


def test_limits_are_checked_from_the_header(clips):
    from fdftnet.video import VideoLimits
    with pytest.raises(VideoError, match="over this server's limit of 320 px a side"):
        probe(clips["one"], VideoLimits(max_side=320))
    with pytest.raises(VideoError, match="3 s long, over the limit of 2 s"):
        probe(clips["one"], VideoLimits(max_seconds=2))


def test_tracks_link_by_overlap_and_distance():
    boxes = [[(0, 0, 50, 50), (300, 0, 350, 50)], [(40, 0, 90, 50), (260, 0, 310, 50)], [], [(80, 0, 130, 50)]]
    assert link_tracks(boxes) == [[(0, 0), (1, 0), (3, 0)], [(0, 1), (1, 1)]]
    assert len(link_tracks(boxes, max_gap=1)) == 3  # a face unseen for two samples starts a new track


def test_cli_prints_one_line_per_track(clips, tmp_path, capsys, monkeypatch):
    from bench import _hostile as H
    ck = H.make_lab_checkpoints(tmp_path / "ck")
    monkeypatch.setenv("FDFTNET_CHECKPOINTS", str(ck))
    assert main(["predict", "--frames", "6", str(clips["two"])]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith(str(clips["two"]) + "\t")]
    assert len(rows) == 2 and any("2 face tracks" in line for line in out)
    assert main(["predict", "--json", "--frames", "6", str(clips["one"])]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(rec["tracks"]) == 1 and len(rec["tracks"][0]["frames"]) == 6
    assert main(["predict", str(clips["audio"])]) == 2
    assert capsys.readouterr().err.strip() == "fdftnet: error: audio.mp4: no video stream (audio only)"


def test_lab_detect_video_gives_verdicts_timeline_and_frames(clips, monkeypatch):
    from lab import video
    monkeypatch.setattr(video.st, "get_model", lambda *a, **k: BaselineDetector(backbone="squeezenet").eval())
    record, verdict, timeline, frames = video.detect_video(
        {"path": str(clips["two"]), "orig_name": "party.webm"}, "default", 8)
    assert record["file"] == "party.webm" and len(record["tracks"]) == 2
    assert "person 1" in verdict and "person 2" in verdict and "most suspicious" in verdict
    assert len(timeline.data) == 2 and all(len(t.x) == 8 for t in timeline.data)
    assert 1 <= len(frames) <= 4 and frames[0][0].ndim == 3
    import gradio as gr
    with pytest.raises(gr.Error, match="still image") as e:
        video.detect_video(str(clips["still"]), "default", 8)
    assert "\n" not in e.value.message
