from __future__ import annotations

import random
import statistics

import pytest

from seekserve.bench.lengths import Exponential, Fixed, Normal, Uniform, parse_length
from seekserve.errors import ConfigError


def test_specs_parse_to_their_distributions() -> None:
    assert parse_length("256") == Fixed(256)
    assert parse_length(" uniform:64,512 ") == Uniform(64, 512)
    assert parse_length("normal:100,12.5") == Normal(100.0, 12.5)
    assert parse_length("exponential:40") == Exponential(40.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0", "at least 1"),
        ("1.5", "whole numbers"),
        ("abc", "not a number"),
        ("inf", "not a number"),
        ("uniform:9,3", "is empty"),
        ("uniform:4", "takes 2 number"),
        ("zipf:3", "unknown distribution 'zipf'"),
        ("normal:50,-1", "must not be negative"),
    ],
)
def test_bad_specs_name_the_option_and_the_accepted_forms(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        parse_length(spec, "output_len")
    assert f"output_len={spec!r}" in str(e.value)


def test_samples_follow_each_distribution() -> None:
    rng = random.Random(0)
    uniform = [Uniform(3, 7).sample(rng) for _ in range(20_000)]
    assert set(uniform) == {3, 4, 5, 6, 7}
    assert statistics.fmean(uniform) == pytest.approx(5.0, abs=0.05)
    normal = [Normal(200, 20).sample(rng) for _ in range(20_000)]
    assert statistics.fmean(normal) == pytest.approx(200, rel=0.01)
    assert statistics.stdev(normal) == pytest.approx(20, rel=0.05)
    expo = [Exponential(50).sample(rng) for _ in range(20_000)]
    assert statistics.fmean(expo) == pytest.approx(50, rel=0.03)
    assert min(expo) >= 1 and min(Normal(1, 50).sample(rng) for _ in range(1000)) == 1
    assert {Fixed(9).sample(rng) for _ in range(10)} == {9}
