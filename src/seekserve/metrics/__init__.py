"""Prometheus metrics of a serving process, with vLLM's names under the `seekserve:` prefix."""

from __future__ import annotations

from seekserve.metrics.prometheus import ServerMetrics
from seekserve.metrics.records import RequestRecord

__all__ = ["RequestRecord", "ServerMetrics"]
