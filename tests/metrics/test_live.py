from __future__ import annotations

import json

import pytest

from seekserve.engine.llm_engine import EngineStats
from seekserve.metrics import FinishedSequence, GpuSample, ServerMetrics
from seekserve.metrics.live import LiveStats

GPU = GpuSample(0, "NVIDIA H100", "GPU-a", 0.9, 0.4, 70 << 30, 80 << 30, 600.0, 70.0)


def finish(metrics: ServerMetrics, e2e_s: float) -> None:
    metrics.first_token(0.05, num_prompt_tokens=10)
    metrics.next_tokens(0.02, num_tokens=9)
    metrics.finished(FinishedSequence("length", 0.0, 0.01, 0.05, e2e_s - 0.01, e2e_s, 10, 10))


def test_frames_hold_rates_over_the_interval_and_percentiles_over_the_window() -> None:
    stats = [EngineStats(0, 0, 0.0, 0, 0, 0)]
    metrics = ServerMetrics("m", lambda: stats[0])
    metrics.gpus = (GPU,)
    live = LiveStats(metrics.registry, lambda: metrics.gpus, history=5, window=2)
    first = live.tick(10.0, 1000.0)
    assert (first.seq, first.generation_tokens_per_s, first.ttft, first.cpu_cores) == (0, 0.0, None, None)
    for _ in range(4):
        finish(metrics, e2e_s=0.3)
    metrics.error("timeout")
    stats[0] = EngineStats(3, 1, 0.5, 2, 100, 25)
    busy = live.tick(12.0, 1002.0)
    assert busy.generation_tokens_per_s == 20.0  # 40 tokens in 2 s
    assert busy.prompt_tokens_per_s == 20.0
    assert busy.requests_per_s == 2.0
    assert busy.errors_per_s == 0.5
    assert busy.preemptions_per_s == 1.0
    assert busy.prefix_cache_hit_rate == 0.25
    assert (busy.num_running, busy.num_waiting, busy.kv_cache_usage) == (3, 1, 0.5)
    assert busy.e2e is not None and 0.25 < busy.e2e.p50 <= busy.e2e.p99 <= 0.5  # the (0.25, 0.5] bucket
    assert busy.itl is not None and 0.015 < busy.itl.p99 <= 0.02
    assert busy.gpus == (GPU,)
    assert busy.cpu_cores is not None and busy.cpu_cores >= 0
    quiet = live.tick(13.0, 1003.0)
    assert quiet.generation_tokens_per_s == 0.0 and quiet.e2e == busy.e2e  # still in the window
    gone = live.tick(14.0, 1004.0)
    assert gone.e2e is None  # the window holds the last 2 intervals, all quiet
    assert [f.seq for f in live.frames(since=1)] == [2, 3]
    json.dumps([f.to_json() for f in live.frames()], allow_nan=False)


def test_history_keeps_the_newest_frames() -> None:
    metrics = ServerMetrics("m", lambda: None)
    live = LiveStats(metrics.registry, lambda: (), history=3, window=1)
    for t in range(5):
        frame = live.tick(float(t), float(t))
    assert [f.seq for f in live.frames()] == [2, 3, 4]
    assert frame.num_running is None  # no engine yet
    assert live.frames(since=4) == []


@pytest.mark.parametrize("window", [1, 10])
def test_quiet_server_frames_have_no_percentiles(window: int) -> None:
    metrics = ServerMetrics("m", lambda: None)
    live = LiveStats(metrics.registry, lambda: (), history=3, window=window)
    live.tick(0.0, 0.0)
    frame = live.tick(1.0, 1.0)
    assert (frame.ttft, frame.itl, frame.e2e, frame.prefix_cache_hit_rate) == (None, None, None, None)
