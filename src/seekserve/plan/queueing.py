"""Closed forms of queueing theory that the fleet simulator is checked against (tests, benchmarks).

M/M/c: Poisson arrivals at rate λ, c servers, exponential service of mean 1/μ, offered load a = λ/μ,
utilization ρ = a/c < 1. The probability that an arrival waits is Erlang's C formula

    C(c, a) = (a^c / c!) · c/(c - a)  /  ( Σ_{k<c} a^k / k!  +  (a^c / c!) · c/(c - a) )

and the mean wait in queue is W_q = C(c, a) / (c μ - λ); M/M/1 is c = 1: W_q = ρ / (μ - λ).
"""

from __future__ import annotations

from seekserve.errors import ConfigError

__all__ = ["erlang_c", "mmc_mean_wait"]


def erlang_c(num_servers: int, offered_load: float) -> float:
    """The probability that an arrival waits in an M/M/c queue (computed without large factorials)."""
    c, a = num_servers, offered_load
    if c < 1 or not 0 <= a < c:
        raise ConfigError(f"M/M/c needs c >= 1 and 0 <= load < c, got c={c}, load={a}")
    term, total = 1.0, 1.0  # a^k / k! for k = 0, and the sum up to k
    for k in range(1, c):
        term *= a / k
        total += term
    last = term * a / c * c / (c - a)  # (a^c / c!) · c/(c - a)
    return last / (total + last)


def mmc_mean_wait(num_servers: int, rate: float, mean_service_s: float) -> float:
    """Mean time in queue (before service) of an M/M/c queue."""
    mu = 1.0 / mean_service_s
    return erlang_c(num_servers, rate / mu) / (num_servers * mu - rate)
