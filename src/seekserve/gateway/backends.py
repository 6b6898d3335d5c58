"""The gateway's view of its upstream engines: who serves which model, how loaded and how healthy each is.

A `Backend` is the live state of one configured upstream. Its fields are written by three owners:

    the proxy (proxy.py)          in_flight (+1 when a request is sent, -1 when its response ends)
    the health checker (health.py) healthy, models (when discovered), waiting/running/kv_usage from /metrics
    the breaker (breaker.py)       whether requests may be sent at all

and read by the router (routing.py), which only chooses among `BackendPool.candidates(...)`.
Everything runs on the gateway's one event loop, so no locks are needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from seekserve.gateway.breaker import CircuitBreaker
from seekserve.gateway.config import BackendConfig, BreakerConfig, EngineKind

__all__ = ["Backend", "BackendPool"]


@dataclass
class Backend:
    config: BackendConfig
    breaker: CircuitBreaker
    models: frozenset[str] = frozenset()
    """Models served: the configured list, else the last GET /v1/models answer."""
    in_flight: int = 0
    """Requests this gateway has outstanding on it (other gateways' are in `waiting`/`running`)."""
    healthy: bool = True
    """False after `health.unhealthy_after` failed active checks in a row; true again after one success."""
    waiting: float | None = None
    """num_requests_waiting from its /metrics at the last scrape; None when it exposes none."""
    running: float | None = None
    kv_usage: float | None = None
    """kv_cache_usage_perc (0..1) at the last scrape."""
    consecutive_check_failures: int = 0
    engine: EngineKind = EngineKind.OPENAI
    """The configured engine, or the one GET /v1/models names (`owned_by`) when configured `auto`."""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def saturated(self) -> bool:
        """At its max_concurrency: the router does not send it more until a request ends."""
        return self.in_flight >= self.config.max_concurrency

    @property
    def load(self) -> float:
        """Outstanding work for least-loaded routing: own in-flight requests plus the backend's queue.

        The scraped queue comes from every client of the backend (other gateways too); the in-flight
        count is fresh at every request while the scrape is up to `health.interval_s` old.
        """
        return self.in_flight + (self.waiting or 0.0)

    def available(self) -> bool:
        """May a request be sent now? Healthy, not saturated, and its breaker lets it through.

        Does not consume the breaker's half-open probe: `breaker.allow()` at send time does.
        """
        return self.healthy and not self.saturated and self.breaker.may_send()


@dataclass
class BackendPool:
    """All backends, by name, and the model → backends index the router picks from."""

    backends: dict[str, Backend] = field(default_factory=dict)

    @classmethod
    def build(cls, configs: Iterable[BackendConfig], breaker: BreakerConfig) -> BackendPool:
        pool = cls()
        for config in configs:
            engine = EngineKind.OPENAI if config.engine is EngineKind.AUTO else config.engine
            pool.backends[config.name] = Backend(
                config=config, breaker=CircuitBreaker(breaker), models=frozenset(config.models), engine=engine
            )
        return pool

    def __iter__(self) -> Iterator[Backend]:
        return iter(self.backends.values())

    def serving(self, model: str) -> list[Backend]:
        """Every backend that lists `model`, whatever its state."""
        return [b for b in self.backends.values() if model in b.models]

    def candidates(self, model: str, exclude: frozenset[str] = frozenset()) -> list[Backend]:
        """Backends of `model` a request may go to now, minus the names in `exclude` (already tried)."""
        return [b for b in self.serving(model) if b.name not in exclude and b.available()]

    def model_names(self) -> list[str]:
        return sorted({m for b in self.backends.values() for m in b.models})

    def carry_over(self, old: BackendPool) -> None:
        """After a config reload: a backend whose name and URL did not change keeps its live object
        (in-flight count, breaker, discovered models) with the new settings, so requests running across
        the reload release the same counter they took and no cooldown is reset."""
        for name, backend in list(self.backends.items()):
            previous = old.backends.get(name)
            if previous is None or previous.config.url != backend.config.url:
                continue
            previous.config = backend.config
            if backend.config.engine is not EngineKind.AUTO:
                previous.engine = backend.config.engine
            if backend.config.models:
                previous.models = backend.models
            self.backends[name] = previous
