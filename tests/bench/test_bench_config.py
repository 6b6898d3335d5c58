from __future__ import annotations

import math
from typing import Any

import pytest

from seekserve.bench.config import BenchConfig, parse_slo
from seekserve.errors import ConfigError

BASE: dict[str, Any] = {"base_url": "http://127.0.0.1:8000", "model": "m"}


def test_defaults_send_100_requests_at_once() -> None:
    config = BenchConfig(**BASE)
    assert config.max_requests == 100 and config.resolved_arrival == "all-at-once"
    assert math.isinf(config.request_rate)


def test_a_rate_defaults_to_poisson_and_a_duration_lifts_the_request_count() -> None:
    assert BenchConfig(**BASE, request_rate=2.0).resolved_arrival == "poisson"
    assert BenchConfig(**BASE, request_rate=2.0, duration_s=10).max_requests is None
    assert BenchConfig(**BASE, duration_s=10, num_requests=5).max_requests == 5
    assert BenchConfig(**BASE, duration_s=10, max_concurrency=4).max_requests is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base_url": "127.0.0.1:8000"}, "base_url='127.0.0.1:8000' is invalid"),
        ({"model": ""}, "model is empty"),
        ({"num_requests": 0}, "num_requests=0 is invalid"),
        ({"request_rate": -1.0}, "request_rate=-1.0 is invalid"),
        ({"arrival": "poisson"}, "arrival=poisson needs a finite request_rate"),
        ({"arrival": "all-at-once", "request_rate": 5.0}, "has no meaning with arrival=all-at-once"),
        ({"request_rate": 5.0, "burstiness": 0.5}, "add --arrival gamma"),
        ({"arrival": "gamma", "request_rate": 5.0, "burstiness": 0.0}, "burstiness=0.0 is invalid"),
        ({"duration_s": 10.0}, "without end"),
        ({"duration_s": -1.0}, "duration_s=-1.0 is invalid"),
        ({"stall_threshold_s": 0.0}, "stall_threshold_s=0.0 is invalid"),
        ({"slos": {"latency": 1.0}}, "METRIC one of ttft, itl, tpot, e2e"),
        ({"dataset": "csv:/x"}, "use random, shared-prefix[:N,LEN], jsonl:PATH or sharegpt:PATH"),
        ({"dataset": "jsonl:/no/such/file"}, "does not exist"),
        ({"input_len": "uniform:5"}, "input_len='uniform:5' takes 2"),
        ({"output_len": "0"}, "output_len='0'"),
        ({"endpoint": "embeddings"}, "use chat or completions"),
        ({"num_warmup": -1}, "num_warmup=-1"),
        ({"top_p": 0.0}, "top_p=0.0 is invalid: it must be in (0, 1]"),
        ({"top_p": 1.5}, "top_p=1.5 is invalid"),
    ],
)
def test_bad_values_are_rejected_with_the_fix(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        BenchConfig(**{**BASE, **options})


def test_slos_parse_seconds_and_milliseconds() -> None:
    assert parse_slo("ttft=0.5") == ("ttft", 0.5)
    assert parse_slo("ITL=100ms") == ("itl", pytest.approx(0.1))
    assert parse_slo("e2e=2s") == ("e2e", 2.0)
    for bad in ("ttft", "ttft=fast", "ttft=0", "tpot=-1"):
        with pytest.raises(ConfigError, match="SLO"):
            parse_slo(bad)
