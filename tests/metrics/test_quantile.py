from __future__ import annotations

import math

import pytest

from seekserve.metrics.quantile import histogram_quantile

BOUNDS = [0.1, 0.5, 1.0, math.inf]


def test_interpolates_within_the_bucket_holding_the_rank() -> None:
    counts = [10.0, 30.0, 40.0, 40.0]  # 10 in (0, 0.1], 20 in (0.1, 0.5], 10 in (0.5, 1]
    assert histogram_quantile(0.5, BOUNDS, counts) == pytest.approx(0.1 + 0.4 * (20 - 10) / 20)
    assert histogram_quantile(0.99, BOUNDS, counts) == pytest.approx(0.5 + 0.5 * (39.6 - 30) / 10)
    assert histogram_quantile(0.1, BOUNDS, counts) == pytest.approx(0.1 * 4 / 10)  # first bucket from 0


def test_a_rank_in_the_inf_bucket_gives_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, BOUNDS, [0.0, 0.0, 1.0, 5.0]) == 1.0


def test_no_observations_give_none_and_bad_buckets_an_error() -> None:
    assert histogram_quantile(0.5, BOUNDS, [0.0] * 4) is None
    with pytest.raises(ValueError, match="ending with \\+Inf"):
        histogram_quantile(0.5, [0.1, 0.5], [1.0, 2.0])


def test_non_monotonic_counts_are_repaired_as_promql_does() -> None:
    assert histogram_quantile(0.5, BOUNDS, [10.0, 9.0, 20.0, 20.0]) == histogram_quantile(
        0.5, BOUNDS, [10.0, 10.0, 20.0, 20.0]
    )
