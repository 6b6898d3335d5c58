from __future__ import annotations

import asyncio
import logging

import pytest

from metrics.fake_nvml import FakeGpu, FakeNvml
from seekserve.metrics import GpuSampler, Monitor, ServerMetrics

INTERVAL_S = 0.1


async def run_for(monitor: Monitor, seconds: float) -> None:
    task = asyncio.create_task(monitor.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_samples_gpus_and_frames_every_interval_and_releases_nvml() -> None:
    nvml = FakeNvml([FakeGpu("NVIDIA L4", "GPU-b", gpu_percent=50)])
    metrics = ServerMetrics("m", lambda: None)
    monitor = Monitor(metrics, INTERVAL_S, GpuSampler(nvml, visible_devices=None))
    asyncio.run(run_for(monitor, 0.45))
    assert [g.sm_utilization for g in metrics.gpus] == [0.5]
    frames = monitor.live.frames()
    assert len(frames) >= 2 and frames[-1].gpus == metrics.gpus
    assert nvml.calls == ["init", "shutdown"]
    assert (monitor.window_s, monitor.history_s) == (10.0, 300.0)


def test_a_failing_sample_is_logged_once_and_sampling_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ServerMetrics("m", lambda: None)
    monitor = Monitor(metrics, INTERVAL_S, GpuSampler(FakeNvml([]), visible_devices=None))
    ticks: list[float] = []
    tick = monitor.live.tick

    def flaky_tick(now: float, unix_time: float) -> object:
        ticks.append(now)
        if len(ticks) <= 2:
            raise RuntimeError("broken registry")
        return tick(now, unix_time)

    monitor.live.tick = flaky_tick  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="seekserve.metrics")
    asyncio.run(run_for(monitor, 0.8))
    assert len(ticks) >= 3 and monitor.live.frames(), "sampling went on after the failures"
    assert [r.getMessage() for r in caplog.records] == ["metrics sampling failed; retrying every 0.1 s"]
