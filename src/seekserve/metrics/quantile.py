"""Quantiles of Prometheus histograms, estimated the way PromQL's `histogram_quantile` does."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

__all__ = ["histogram_quantile"]


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The q-quantile (0..1) of observations in cumulative buckets; None when there are none.

    `bounds` are the bucket upper bounds in ascending order, the last one +Inf; `counts` the
    cumulative counts of those buckets (as `_bucket{le=...}` series, or their increase over a
    window). Within the bucket holding the rank, the value is interpolated linearly from the
    bucket's lower bound (0 for the first); a rank in the +Inf bucket gives the highest finite bound.
    """
    if len(bounds) != len(counts) or len(bounds) < 2 or not math.isinf(bounds[-1]):
        raise ValueError(f"need matching bounds and counts ending with +Inf, got {bounds!r} and {counts!r}")
    monotonic = list(itertools.accumulate(counts, max))  # as PromQL repairs float noise
    total = monotonic[-1]
    if total <= 0:
        return None
    rank = q * total
    b = next(i for i, c in enumerate(monotonic) if c >= rank)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], monotonic[b]
    if b > 0:
        start = bounds[b - 1]
        count -= monotonic[b - 1]
        rank -= monotonic[b - 1]
    return start + (end - start) * (rank / count) if count > 0 else start
