"""Arrival processes: when each request of a run is sent, as offsets in seconds from the start.

all-at-once  every request at 0 (with --max-concurrency: a closed loop that refills each slot)
constant     one request every 1/rate seconds
poisson      exponential gaps with mean 1/rate (independent arrivals; CV of the gaps 1)
gamma        gamma gaps with mean 1/rate and shape `burstiness` (CV 1/sqrt(burstiness)):
             below 1 requests come in bursts, above 1 more evenly, 1 is Poisson
trace        the `arrival_s` each dataset record carries (a recorded or designed workload)
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from seekserve.bench.config import BenchConfig
from seekserve.bench.datasets import BenchRequest
from seekserve.errors import ConfigError

__all__ = ["ARRIVALS", "AllAtOnce", "ArrivalProcess", "Constant", "Gamma", "Poisson", "Trace", "make_arrival"]


class ArrivalProcess(ABC):
    """Pairs each request with its send offset; offsets never decrease."""

    @abstractmethod
    def schedule(
        self, requests: Iterable[BenchRequest], rng: random.Random
    ) -> Iterator[tuple[float, BenchRequest]]:
        """(offset in seconds from the start, request) for each request, in send order."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: BenchConfig) -> ArrivalProcess:
        """The process a config asks for."""


class _Renewal(ArrivalProcess):
    """Independent gaps drawn from one distribution; the first request goes at 0."""

    @abstractmethod
    def gap(self, rng: random.Random) -> float:
        """One inter-arrival gap in seconds."""

    def schedule(
        self, requests: Iterable[BenchRequest], rng: random.Random
    ) -> Iterator[tuple[float, BenchRequest]]:
        offset = 0.0
        for i, request in enumerate(requests):
            if i:
                offset += self.gap(rng)
            yield offset, request


@dataclass(frozen=True)
class AllAtOnce(_Renewal):
    def gap(self, rng: random.Random) -> float:
        return 0.0

    @classmethod
    def from_config(cls, config: BenchConfig) -> AllAtOnce:
        return cls()


@dataclass(frozen=True)
class Constant(_Renewal):
    rate: float

    def gap(self, rng: random.Random) -> float:
        return 1.0 / self.rate

    @classmethod
    def from_config(cls, config: BenchConfig) -> Constant:
        return cls(config.request_rate)


@dataclass(frozen=True)
class Gamma(_Renewal):
    rate: float
    burstiness: float = 1.0

    def gap(self, rng: random.Random) -> float:
        # shape k, scale 1/(rate k): mean 1/rate, variance 1/(rate^2 k)
        return rng.gammavariate(self.burstiness, 1.0 / (self.rate * self.burstiness))

    @classmethod
    def from_config(cls, config: BenchConfig) -> Gamma:
        return cls(config.request_rate, config.burstiness)


@dataclass(frozen=True)
class Poisson(_Renewal):
    rate: float

    def gap(self, rng: random.Random) -> float:
        return rng.expovariate(self.rate)

    @classmethod
    def from_config(cls, config: BenchConfig) -> Poisson:
        return cls(config.request_rate)


class Trace(ArrivalProcess):
    """Offsets from the records themselves; they must not decrease."""

    def schedule(
        self, requests: Iterable[BenchRequest], rng: random.Random
    ) -> Iterator[tuple[float, BenchRequest]]:
        previous = 0.0
        for i, request in enumerate(requests):
            if request.arrival_s is None:
                raise ConfigError(
                    f"record {i} of the dataset has no arrival_s, which --arrival trace needs: "
                    f"add it to every JSONL line or choose another --arrival"
                )
            if request.arrival_s < previous:
                raise ConfigError(
                    f"record {i} arrives at {request.arrival_s:g} s, before record {i - 1} "
                    f"({previous:g} s): sort the trace by arrival_s"
                )
            previous = request.arrival_s
            yield request.arrival_s, request

    @classmethod
    def from_config(cls, config: BenchConfig) -> Trace:
        return cls()


ARRIVALS: dict[str, type[ArrivalProcess]] = {
    "all-at-once": AllAtOnce,
    "constant": Constant,
    "poisson": Poisson,
    "gamma": Gamma,
    "trace": Trace,
}


def make_arrival(config: BenchConfig) -> ArrivalProcess:
    """The arrival process of a config (its default resolved)."""
    return ARRIVALS[config.resolved_arrival].from_config(config)
