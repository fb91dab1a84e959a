"""Load: 200 /detect calls from 4 concurrent gradio_client callers against the real app (a subprocess on a
loopback port) while a fine-tune runs in it: none fails, none is lost, and detection is not queued behind
the fine-tune. The work is bounded by count, never by a time window: every answer is awaited (the timeouts
only catch a hang), so a slow or busy machine makes the test slower, not red. Latency p50/p95 are printed,
not asserted; the speed figures live in bench/ (bench/robustness.py runs the same loop with more requests).
"""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `bench` without an install

from bench import _hostile as H  # noqa: E402

pytest.importorskip("gradio_client")

REQUESTS, CALLERS = 200, 4
HANG = 600  # s: a generous guard against a hang (app start, first epoch, any one call), not a speed bound


def test_detect_under_load_while_finetuning(tmp_path):
    proc, url, log = H.start_app(tmp_path, ROOT / "app.py", timeout=HANG, env=H.ONE_THREAD)
    try:
        stats = H.load_run(url, tmp_path / "client", requests=REQUESTS, callers=CALLERS, timeout=HANG)
    finally:
        H.stop_app(proc)
    print(f"\nload: {stats['requests']} requests, {stats['callers']} callers, failed {stats['failed']}, "
          f"p50 {stats['p50_ms']} ms, p95 {stats['p95_ms']} ms, {stats['answered_during_finetune']} answered "
          f"during the fine-tune")
    tail = log.read_text()[-3000:]
    assert stats["requests"] == REQUESTS and stats["failed"] == 0, (stats, tail)  # all sent, all answered
    assert stats["during_finetune"] and stats["finetune_error"] is None, (stats, tail)
    assert proc.poll() is not None  # the app is gone
