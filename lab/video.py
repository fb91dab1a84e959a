"""Detect tab, video: a clip -> each person tracked through it, a verdict per person, P(fake) over time, and the
most suspicious frames with their boxes (fdftnet.video does the work; this module only adapts it).

Bounded like a photo: one detection at a time per client, face finding on one CPU thread, the clip's header checked
before a frame is decoded, and a time budget (FDFTNET_VIDEO_SECONDS) for decoding, detection and scoring.
"""
import os

import gradio as gr

from fdftnet.explain import draw_boxes
from fdftnet.video import VIDEO_EXTENSIONS, VideoLimits, analyze_video

from . import detect_view as view
from . import limits, plots
from . import state as st

MAX_FRAMES = 64  # frames a visitor may ask to be sampled


def video_limits() -> VideoLimits:
    return VideoLimits(max_seconds=float(limits.setting("FDFTNET_VIDEO_MAX_SECONDS")),
                       seconds=float(limits.setting("FDFTNET_VIDEO_SECONDS")))


def _shown_frames(record: dict, sampled, n: int = 4) -> list:
    """The n frames where the most suspicious person scored highest, every tracked face boxed in its verdict colour."""
    if not record["tracks"]:
        return []
    top = sorted(record["tracks"][0]["frames"], key=lambda f: -f["p_fake"])[:n]
    times = {round(t, 3): (rgb, k) for t, rgb, k in sampled}
    out = []
    for f in sorted(top, key=lambda f: f["t"]):
        if f["t"] not in times:
            continue
        rgb, k = times[f["t"]]
        here = [(t, g) for t in record["tracks"] for g in t["frames"] if g["t"] == f["t"]]
        shown = draw_boxes(rgb, [[v * k for v in g["box"]] for _, g in here], [str(t["track"]) for t, _ in here],
                           [view.VERDICT_RGB[t["verdict"]] for t, _ in here], max_side=640)
        out.append((shown, f"{f['t']:.1f} s: person {record['tracks'][0]['track']}, P(fake) {f['p_fake']:.2f}"))
    return out


def _summary(record: dict) -> str:
    if not record["tracks"]:
        return f"### No face\n_{record['message']}_"
    n = len(record["tracks"])
    head = f"### {record['verdict'].upper()}" + (f" (the most suspicious of {n} people)" if n > 1 else "")
    people = [f"person {t['track']}: **{t['verdict']}**, P(fake) = {t['p_fake']:.3f} over {t['n']} frames "
              f"({t['start']:.1f}-{t['end']:.1f} s)" + (f" ({t['reason']})" if t["verdict"] == "uncertain" else "")
              for t in record["tracks"]]
    return "  \n".join([head, " · ".join(people), view.tested_on(record),
                        f"_Each person's verdict is the {record['aggregation']} of the "
                        f"{record['frames_sampled']} frames sampled; the clip's is its most suspicious person's._"])


@st.guard
def detect_video(video, model: str = st.DEFAULT, frames: int = 32, session: dict | None = None,
                 request: gr.Request = None):
    """A clip -> (tracks JSON, the verdict, P(fake) over time per person, the most suspicious frames)."""
    path = video.get("path") if isinstance(video, dict) else video
    if not path:
        raise ValueError("no video: upload a clip first (" + " ".join(VIDEO_EXTENSIONS) + ")")
    if not 1 <= int(frames) <= MAX_FRAMES:
        raise ValueError(f"frames must be 1..{MAX_FRAMES}, got {frames}")
    net = st.get_model(model, session=session)
    limits.detection_threads()
    with limits.one_at_a_time(request, "detect"):
        record, sampled = analyze_video(net, path, frames=int(frames), limits=video_limits(), return_frames=True)
    record["file"] = os.path.basename(video.get("orig_name") or path) if isinstance(video, dict) else \
        os.path.basename(path)
    trust = getattr(net, "trust", None)
    return (record, _summary(record), plots.video_timeline(record, trust.band if trust else None),
            _shown_frames(record, sampled))


def render(choice, session) -> None:
    """The Video sub-tab of Detect (`choice`: the tab's model picker)."""
    with gr.Row():
        with gr.Column(scale=2):
            video = gr.File(label="Video clip (" + " ".join(VIDEO_EXTENSIONS) + ")", file_types=list(VIDEO_EXTENSIONS),
                            elem_id="video")
            frames = gr.Slider(4, MAX_FRAMES, value=32, step=1, precision=0, label="frames to sample over the clip")
            run_btn = gr.Button("Detect in the video", variant="primary")
            gr.Markdown(f"Clips up to {limits.setting('FDFTNET_VIDEO_MAX_SECONDS'):g} s; each is scored within "
                        f"{limits.setting('FDFTNET_VIDEO_SECONDS'):g} s of work on this server.")
        with gr.Column(scale=3):
            verdict = gr.Markdown(label="verdict per person", elem_id="video-verdict")
            timeline = gr.Plot(label="P(fake) over time", elem_id="video-timeline")
    shown = gr.Gallery(label="the most suspicious frames", columns=4, height="auto", object_fit="contain",
                       elem_id="video-frames")
    with gr.Accordion("JSON (what the /detect_video API returns)", open=False):
        record = gr.JSON(label="tracks")
    run_btn.click(detect_video, [video, choice, frames, session], [record, verdict, timeline, shown],
                  api_name="detect_video", concurrency_limit=2, concurrency_id="detect_video")
