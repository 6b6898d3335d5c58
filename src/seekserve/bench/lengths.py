"""Token-length distributions for generated prompts and outputs, written on the command line as
`N` (fixed), `uniform:LOW,HIGH` (inclusive), `normal:MEAN,STD` or `exponential:MEAN`.

Every sample is a whole number of tokens, at least 1.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from seekserve.errors import ConfigError

__all__ = ["DISTRIBUTIONS", "Exponential", "Fixed", "LengthDistribution", "Normal", "Uniform", "parse_length"]

_FORMS = "N, uniform:LOW,HIGH, normal:MEAN,STD or exponential:MEAN (token counts, e.g. uniform:64,512)"


class LengthDistribution(ABC):
    """A distribution of token counts; parameters are checked on construction."""

    num_params: ClassVar[int]
    whole_params: ClassVar[bool] = True

    @abstractmethod
    def sample(self, rng: random.Random) -> int:
        """One length, at least 1."""

    @property
    @abstractmethod
    def mean(self) -> float:
        """The expected length (before rounding and clipping at 1)."""


def _check_at_least_one(**values: float) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{name}={value:g} must be at least 1 token")


@dataclass(frozen=True)
class Fixed(LengthDistribution):
    """Always `value` tokens."""

    value: int
    num_params: ClassVar[int] = 1

    def __post_init__(self) -> None:
        _check_at_least_one(value=self.value)

    def sample(self, rng: random.Random) -> int:
        return self.value

    @property
    def mean(self) -> float:
        return float(self.value)


@dataclass(frozen=True)
class Uniform(LengthDistribution):
    """Uniform over the integers from `low` to `high`, both included."""

    low: int
    high: int
    num_params: ClassVar[int] = 2

    def __post_init__(self) -> None:
        _check_at_least_one(low=self.low)
        if self.high < self.low:
            raise ConfigError(f"the range {self.low}..{self.high} is empty: give LOW <= HIGH")

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2


@dataclass(frozen=True)
class Normal(LengthDistribution):
    """Gaussian with the given mean and standard deviation, rounded and clipped at 1."""

    mean_tokens: float
    std: float
    num_params: ClassVar[int] = 2
    whole_params: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_at_least_one(mean=self.mean_tokens)
        if self.std < 0:
            raise ConfigError(f"std={self.std:g} must not be negative")

    def sample(self, rng: random.Random) -> int:
        return max(1, round(rng.gauss(self.mean_tokens, self.std)))

    @property
    def mean(self) -> float:
        return self.mean_tokens


@dataclass(frozen=True)
class Exponential(LengthDistribution):
    """Exponential with the given mean (many short, a few long), rounded and clipped at 1."""

    mean_tokens: float
    num_params: ClassVar[int] = 1
    whole_params: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_at_least_one(mean=self.mean_tokens)

    def sample(self, rng: random.Random) -> int:
        return max(1, round(rng.expovariate(1.0 / self.mean_tokens)))

    @property
    def mean(self) -> float:
        return self.mean_tokens


DISTRIBUTIONS: dict[str, type[LengthDistribution]] = {
    "uniform": Uniform,
    "normal": Normal,
    "exponential": Exponential,
}


def parse_length(spec: str, what: str = "length") -> LengthDistribution:
    """Parse a length spec such as "256" or "uniform:64,512"; `what` names the option in errors."""
    name, sep, rest = spec.strip().partition(":")
    if sep and name not in DISTRIBUTIONS:
        raise ConfigError(f"{what}={spec!r}: unknown distribution {name!r}; write {_FORMS}")
    cls = DISTRIBUTIONS[name] if sep else Fixed
    parts = rest.split(",") if sep else [name]
    try:
        values = [float(p) for p in parts]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(spec)
    except ValueError:
        raise ConfigError(f"{what}={spec!r} is not a number or distribution; write {_FORMS}") from None
    if len(values) != cls.num_params:
        raise ConfigError(f"{what}={spec!r} takes {cls.num_params} number(s); write {_FORMS}")
    if cls.whole_params and any(v != int(v) for v in values):
        raise ConfigError(f"{what}={spec!r}: token counts must be whole numbers")
    try:
        return cls(*(int(v) if cls.whole_params else v for v in values))
    except ConfigError as e:
        raise ConfigError(f"{what}={spec!r}: {e}; write {_FORMS}") from None
