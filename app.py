"""FDFtNet lab: detect fake faces, fine-tune FDFtNet on a few examples, compare it with its baseline.

    python app.py          # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

The tabs live in lab/ (STYLE.md A1/A2); fdftnet/ does the work and never imports gradio.
"""
import logging
import os
import signal
import sys

import gradio as gr
from starlette.middleware import Middleware

from fdftnet.train import flush_denormals
from lab import compare, detect, finetune, limits
from lab import state as st
from lab.gatekeeper import UploadGuard

flush_denormals()  # before any worker thread starts: fine-tunes on CPU stay fast as they go on
st.clean_stale()  # session folders of servers that died; this one's go at exit (lab/state.py)

# delete_cache: gradio's copies of uploads and outputs go every minute once FDFTNET_CACHE_SECONDS old (API clients too)
with gr.Blocks(title="FDFtNet lab", delete_cache=(60, limits.setting("FDFTNET_CACHE_SECONDS"))) as demo:
    gr.Markdown("# FDFtNet lab\nIs this face real or generated? FDFtNet (Jeon et al., IFIP SEC 2020) adds a "
                "Fine-Tune Transformer and MobileNetV3 blocks to a pretrained detector and fine-tunes them on a "
                "few examples. Each face is judged at the chosen model's own crop size.")
    # one plain dict per browser session (deep-copyable); its temp folder goes when the session does
    session = gr.State(st.new_session(), delete_callback=st.drop_session)
    with gr.Tab("Detect"):
        detect.render(session, demo)
    with gr.Tab("Few-shot fine-tune"):
        finetune.render(session, demo)
    with gr.Tab("Compare"):
        compare.render(session, demo)
    demo.queue(default_concurrency_limit=2)


def launch(**kwargs):
    """demo.launch with the lab's guard on Gradio's upload route and its per-file size cap (lab/limits.py)."""
    return demo.launch(app_kwargs={"middleware": [Middleware(UploadGuard)]},
                       max_file_size=f"{limits.setting('FDFTNET_UPLOAD_MB'):g}mb", **kwargs)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stop by SIGTERM runs atexit: session folders go
    launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
           server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
