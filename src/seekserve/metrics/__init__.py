"""Monitoring of a serving process: Prometheus metrics with vLLM's names under the `seekserve:`
prefix, GPU and process sampling, and the figures of the built-in live dashboard.

    prometheus.py   ServerMetrics: the registry, histograms and counters, fed by the server
    tracker.py      RequestTracker: per-request latencies as the stream advances
    collectors.py   engine load and GPU readings, read from snapshots at scrape time
    hardware.py     GpuSampler: NVML readings per GPU (nothing, and one log line, without GPUs)
    live.py         LiveStats: the dashboard's frames (rates, windowed percentiles, load)
    monitor.py      Monitor: the sampling loop the server runs
    quantile.py     histogram_quantile as PromQL computes it
"""

from __future__ import annotations

from seekserve.metrics.hardware import GpuSample, GpuSampler
from seekserve.metrics.monitor import Monitor
from seekserve.metrics.prometheus import ERROR_TYPES, ErrorType, FinishedSequence, ServerMetrics
from seekserve.metrics.tracker import RequestTracker

__all__ = [
    "ERROR_TYPES",
    "ErrorType",
    "FinishedSequence",
    "GpuSample",
    "GpuSampler",
    "Monitor",
    "RequestTracker",
    "ServerMetrics",
]
