"""Custom collectors: series read from snapshots at scrape time rather than updated in place.

The engine thread replaces `AsyncEngine.stats` after every step and the hardware sampler replaces
its GPU readings every interval; a scrape reads whichever snapshot is current, so it never waits
on either. The engine's counters (preemptions, prefix-cache lookups) only grow, so they are
exported as Prometheus counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from seekserve.engine.async_engine import EngineStats
from seekserve.metrics.hardware import GpuSample

__all__ = ["GPU_GAUGES", "POOL_THREAD", "PREFIX", "EngineCollector", "GpuCollector", "RuntimeCollector"]

PREFIX = "seekserve:"
POOL_THREAD = re.compile(r"(asyncio_|uvloop_|ThreadPoolExecutor-\d+_)\d+$")
"""The names thread pools give their threads: the loop's default executor (asyncio, uvloop), any other."""

GPU_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("gpu_sm_utilization_perc", "sm_utilization", "Share of time a kernel ran on the GPU, 0 to 1."),
    (
        "gpu_memory_utilization_perc",
        "memory_utilization",
        "Share of time GPU memory was read or written, 0 to 1.",
    ),
    ("gpu_memory_used_bytes", "memory_used_bytes", "GPU memory in use, by any process."),
    ("gpu_memory_total_bytes", "memory_total_bytes", "GPU memory in all."),
    ("gpu_power_watts", "power_watts", "GPU power draw."),
    ("gpu_temperature_celsius", "temperature_celsius", "GPU core temperature."),
)
"""(series name, GpuSample field, help) of each per-GPU gauge."""


class EngineCollector(Collector):
    """Load gauges and counters from the engine's stats snapshot; nothing while the model loads."""

    def __init__(self, model_name: str, stats: Callable[[], EngineStats | None]) -> None:
        self._model_name = model_name
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is None:
            return
        label = [self._model_name]
        gauges = (
            ("num_requests_running", "Requests in the running batch.", stats.num_running),
            ("num_requests_waiting", "Requests waiting to be scheduled.", stats.num_waiting),
            ("kv_cache_usage_perc", "Share of KV cache blocks in use, 0 to 1.", stats.kv_cache_usage),
            ("kv_cache_used_blocks", "KV cache blocks referenced by a request.", stats.num_kv_blocks_used),
            (
                "kv_cache_block_references",
                "References to KV cache blocks held by requests (a shared block once per holder).",
                stats.num_kv_block_refs,
            ),
            (
                "kv_cache_cached_blocks",
                "KV cache blocks the prefix cache can reuse, in use or free.",
                stats.num_kv_blocks_cached,
            ),
        )
        for name, doc, value in gauges:
            gauge = GaugeMetricFamily(PREFIX + name, doc, labels=["model_name"])
            gauge.add_metric(label, value)
            yield gauge
        counters = (
            ("num_preemptions", "Sequences preempted for lack of KV blocks.", stats.num_preemptions),
            (
                "prefix_cache_queries",
                "Prompt tokens looked up in the prefix cache.",
                stats.prefix_cache_queries,
            ),
            ("prefix_cache_hits", "Prompt tokens found in the prefix cache.", stats.prefix_cache_hits),
            (
                "kv_cache_audit_failures",
                "Audits of the KV reference counts (run as the engine falls idle) that found an imbalance.",
                stats.num_kv_audit_failures,
            ),
        )
        for name, doc, value in counters:
            counter = CounterMetricFamily(PREFIX + name, doc, labels=["model_name"])
            counter.add_metric(label, value)
            yield counter


class GpuCollector(Collector):
    """One gauge per GPU reading, labelled `gpu` (NVML index) and `gpu_name`; nothing without GPUs."""

    def __init__(self, model_name: str, gpus: Callable[[], Sequence[GpuSample]]) -> None:
        self._model_name = model_name
        self._gpus = gpus

    def collect(self) -> Iterator[Metric]:
        gpus = self._gpus()
        if not gpus:
            return
        for name, field, doc in GPU_GAUGES:
            gauge = GaugeMetricFamily(PREFIX + name, doc, labels=["model_name", "gpu", "gpu_name"])
            for gpu in gpus:
                value = getattr(gpu, field)
                if value is not None:
                    gauge.add_metric([self._model_name, str(gpu.index), gpu.name], value)
            yield gauge


class RuntimeCollector(Collector):
    """What a leak would grow in a serving process: its event loop's tasks and its Python threads
    (those of thread pools apart).

    `event_loop_tasks` is read only when the scrape runs on the event loop (as /metrics does in the
    server and the gateway); elsewhere it is left out.
    """

    def collect(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily(PREFIX + "event_loop_tasks", "Tasks of the process's asyncio event loop.")
        with contextlib.suppress(RuntimeError):  # no running event loop in this thread
            tasks.add_metric([], len(asyncio.all_tasks()))
        if tasks.samples:
            yield tasks
        threads = GaugeMetricFamily(PREFIX + "python_threads", "Python threads alive in the process.")
        threads.add_metric([], threading.active_count())
        yield threads
        # Thread pools (concurrent.futures: the event loop's default executor behind asyncio.to_thread,
        # and any other) start threads as needed, up to their max_workers, and keep them: growth there
        # is a pool filling, not a leak. Their threads carry the pools' default names.
        pool = GaugeMetricFamily(PREFIX + "pool_threads", "Threads of thread pools (ThreadPoolExecutor).")
        pool.add_metric([], sum(1 for t in threading.enumerate() if POOL_THREAD.match(t.name)))
        yield pool
