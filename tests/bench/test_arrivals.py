from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from seekserve.bench.arrivals import AllAtOnce, Constant, Gamma, Poisson, Trace, make_arrival
from seekserve.bench.config import BenchConfig
from seekserve.bench.datasets import BenchRequest
from seekserve.errors import ConfigError

N = 40_000


def gaps(process: object, n: int = N, seed: int = 1) -> list[float]:
    requests = (BenchRequest("p", 1) for _ in range(n))
    offsets = [t for t, _ in process.schedule(requests, random.Random(seed))]  # type: ignore[attr-defined]
    assert offsets[0] == 0.0 and offsets == sorted(offsets)
    return [b - a for a, b in itertools.pairwise(offsets)]


def cv(values: list[float]) -> float:
    return statistics.pstdev(values) / statistics.fmean(values)


def test_poisson_has_the_mean_rate_and_exponential_gaps() -> None:
    g = gaps(Poisson(rate=8.0))
    assert 1 / statistics.fmean(g) == pytest.approx(8.0, rel=0.02)
    assert cv(g) == pytest.approx(1.0, rel=0.03)
    # memoryless: P(gap > mean) = 1/e
    assert sum(x > 1 / 8 for x in g) / len(g) == pytest.approx(math.exp(-1), abs=0.01)


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gamma_keeps_the_rate_and_sets_the_cv_by_burstiness(burstiness: float) -> None:
    g = gaps(Gamma(rate=20.0, burstiness=burstiness))
    assert 1 / statistics.fmean(g) == pytest.approx(20.0, rel=0.03)
    assert cv(g) == pytest.approx(1 / math.sqrt(burstiness), rel=0.05)


def test_constant_and_all_at_once_are_exact() -> None:
    assert gaps(Constant(rate=4.0), n=100) == [0.25] * 99
    assert gaps(AllAtOnce(), n=100) == [0.0] * 99


def test_trace_uses_each_records_offset_and_rejects_bad_traces() -> None:
    records = [BenchRequest("a", 1, arrival_s=0.0), BenchRequest("b", 1, arrival_s=1.5)]
    assert [t for t, _ in Trace().schedule(records, random.Random(0))] == [0.0, 1.5]
    with pytest.raises(ConfigError, match="record 1 of the dataset has no arrival_s"):
        list(Trace().schedule([records[0], BenchRequest("c", 1)], random.Random(0)))
    with pytest.raises(ConfigError, match="before record 0"):
        list(Trace().schedule(records[::-1], random.Random(0)))


def test_the_config_picks_the_process() -> None:
    base = {"base_url": "http://x", "model": "m"}
    assert make_arrival(BenchConfig(**base)) == AllAtOnce()
    assert make_arrival(BenchConfig(**base, request_rate=3.0)) == Poisson(3.0)
    assert make_arrival(BenchConfig(**base, request_rate=3.0, arrival="constant")) == Constant(3.0)
    gamma = BenchConfig(**base, request_rate=3.0, arrival="gamma", burstiness=0.5)
    assert make_arrival(gamma) == Gamma(3.0, 0.5)


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert gaps(Gamma(5.0, 0.5), n=50, seed=3) == gaps(Gamma(5.0, 0.5), n=50, seed=3)
    assert gaps(Gamma(5.0, 0.5), n=50, seed=3) != gaps(Gamma(5.0, 0.5), n=50, seed=4)
