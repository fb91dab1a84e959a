"""Load: ~200 /detect calls from 4 concurrent gradio_client callers against the real app (a subprocess on
a loopback port) while a fine-tune runs in it: zero failures; latency p50/p95 printed. Bounded to ~60 s.
The load loop lives in bench/_hostile.py (bench/robustness.py runs it with more requests).
"""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `bench` without an install

from bench import _hostile as H  # noqa: E402

pytest.importorskip("gradio_client")


def test_detect_under_load_while_finetuning(tmp_path):
    proc, url, log = H.start_app(tmp_path, ROOT / "app.py", timeout=60, env=H.ONE_THREAD)
    try:
        stats = H.load_run(url, tmp_path / "client", requests=200, callers=4, timeout=90)
    finally:
        H.stop_app(proc)
    print(f"\nload: {stats['requests']} requests, {stats['callers']} callers, failed {stats['failed']}, "
          f"p50 {stats['p50_ms']} ms, p95 {stats['p95_ms']} ms, during fine-tune {stats['during_finetune']}")
    tail = log.read_text()[-3000:]
    assert stats["failed"] == 0 and stats["requests"] == 200, (stats, tail)
    assert stats["during_finetune"] and stats["finetune_error"] is None, (stats, tail)
    assert proc.poll() is not None  # the app is gone
