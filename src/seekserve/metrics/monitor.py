"""`Monitor`: the server's sampling loop for the GPUs and the live dashboard.

Every `interval_s` it reads the GPUs in a worker thread (NVML calls may block for milliseconds),
hands the readings to `ServerMetrics.gpus` for the next scrape, and appends a dashboard frame.
It runs as a task of the server's event loop from startup to shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from seekserve.metrics.hardware import GpuSampler
from seekserve.metrics.live import LiveStats
from seekserve.metrics.prometheus import ServerMetrics

__all__ = ["Monitor"]

log = logging.getLogger(__name__)

_WINDOW_S = 10.0
"""The dashboard's latency percentiles cover this much recent time."""
_HISTORY_S = 300.0
"""The dashboard's sparklines span this much time."""


class Monitor:
    """Samples hardware and dashboard figures every `interval_s` while `run()` runs."""

    def __init__(
        self, metrics: ServerMetrics, interval_s: float, gpu_sampler: GpuSampler | None = None
    ) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self.gpu_sampler = gpu_sampler or GpuSampler()
        self.window_s = _WINDOW_S
        self.history_s = _HISTORY_S
        self.live = LiveStats(
            metrics.registry,
            lambda: metrics.gpus,
            history=math.ceil(_HISTORY_S / interval_s),
            window=max(1, round(_WINDOW_S / interval_s)),
        )

    async def run(self) -> None:
        """Sample until cancelled; the GPUs are released when it stops."""
        await asyncio.to_thread(self.gpu_sampler.open)
        failing = False
        try:
            while True:
                started = time.monotonic()
                try:
                    await self._sample()
                    failing = False
                except Exception:  # a sampling bug must not stop serving; say so once per failure spell
                    if not failing:
                        log.exception("metrics sampling failed; retrying every %s s", self.interval_s)
                    failing = True
                await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            self.gpu_sampler.close()

    async def _sample(self) -> None:
        if self.gpu_sampler.num_gpus:
            self.metrics.gpus = await asyncio.to_thread(self.gpu_sampler.sample)
        self.live.tick(time.monotonic(), time.time())
