"""FDFtNet lab: detect fake faces, fine-tune FDFtNet on a few examples, compare it with its baseline.

    python app.py          # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

The tabs live in lab/ (STYLE.md A1/A2); fdftnet/ does the work and never imports gradio.
"""
import logging
import os
import signal
import sys

import gradio as gr

from fdftnet.train import flush_denormals
from lab import compare, detect, finetune
from lab import state as st

flush_denormals()  # before any worker thread starts: fine-tunes on CPU stay fast as they go on
st.clean_stale()  # session folders of servers that died; this one's go at exit (lab/state.py)

# delete_cache: gradio's copies of uploads and outputs older than an hour go every 10 min (API clients too)
with gr.Blocks(title="FDFtNet lab", delete_cache=(600, 3600)) as demo:
    gr.Markdown("# FDFtNet lab\nIs this face real or generated? FDFtNet (Jeon et al., IFIP SEC 2020) adds a "
                "Fine-Tune Transformer and MobileNetV3 blocks to a pretrained detector and fine-tunes them on a "
                "few examples. Images are judged at 64×64, as in the paper.")
    # one plain dict per browser session (deep-copyable); its temp folder goes when the session does
    session = gr.State(st.new_session(), delete_callback=st.drop_session)
    with gr.Tab("Detect"):
        detect.render(session, demo)
    with gr.Tab("Few-shot fine-tune"):
        finetune.render(session, demo)
    with gr.Tab("Compare"):
        compare.render(session, demo)
    demo.queue(default_concurrency_limit=2)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stop by SIGTERM runs atexit: session folders go
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                max_file_size="100mb")
