"""Erlang's C formula against values worked by hand."""

from __future__ import annotations

import pytest

from seekserve.errors import ConfigError
from seekserve.plan.queueing import erlang_c, mmc_mean_wait


def test_erlang_c_by_hand() -> None:
    assert erlang_c(1, 0.7) == pytest.approx(0.7)  # M/M/1: an arrival waits with probability rho
    # c = 2, a = 1: (1/2! · 2/(2-1)) / (1 + 1 + 1) = 1/3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # c = 4, a = 3: a^4/4! · 4 = 13.5; 1 + 3 + 4.5 + 4.5 = 13; 13.5 / 26.5
    assert erlang_c(4, 3.0) == pytest.approx(13.5 / 26.5)
    assert erlang_c(200, 150.0) < 0.01  # large c without overflowing factorials


def test_mean_wait() -> None:
    assert mmc_mean_wait(1, 0.5, 1.0) == pytest.approx(1.0)  # rho / (mu - lambda)
    assert mmc_mean_wait(4, 3.0, 1.0) == pytest.approx(13.5 / 26.5)  # C / (c mu - lambda) = C / 1
    assert mmc_mean_wait(1, 5.0, 0.1) == pytest.approx(0.1)  # rho 0.5, mu 10: 0.5 / 5
    with pytest.raises(ConfigError, match="load < c"):
        erlang_c(2, 2.0)
