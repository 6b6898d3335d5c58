"""`GatewayState`: everything built from one configuration, swapped whole on reload.

A request takes the state current when it arrives and keeps it to its end, so a reload (SIGHUP)
never changes the rules under a running request. Live objects that must outlast a reload move
over: backends whose name and URL are unchanged keep their in-flight counts and breakers
(`BackendPool.carry_over`), and the response cache and rate limiter are kept when their
section of the file is unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp

from seekserve.gateway.admission import AdmissionQueue
from seekserve.gateway.backends import BackendPool
from seekserve.gateway.cache import ResponseCache, make_cache
from seekserve.gateway.config import GatewayConfig
from seekserve.gateway.keys import KeyStore
from seekserve.gateway.ratelimit import RateLimiter, make_rate_limiter
from seekserve.gateway.retry import RetryBudget, RetryPolicy
from seekserve.gateway.routing import Router
from seekserve.search.service import WebSearch

__all__ = ["GatewayState"]

log = logging.getLogger("seekserve.gateway")


@dataclass
class GatewayState:
    config: GatewayConfig
    session: aiohttp.ClientSession
    pool: BackendPool
    router: Router
    keys: KeyStore
    limiter: RateLimiter
    cache: ResponseCache | None
    admission: AdmissionQueue
    retry: RetryPolicy
    budget: RetryBudget
    search: WebSearch | None = None
    """Web search (`search.web_search` auto|on); kept over a reload that leaves its section alone."""

    @classmethod
    def build(
        cls, config: GatewayConfig, session: aiohttp.ClientSession, previous: GatewayState | None = None
    ) -> GatewayState:
        pool = BackendPool.build(config.backends, config.breaker)
        same = previous is not None
        if previous is not None:
            pool.carry_over(previous.pool)
        cache_kept = same and previous is not None and previous.config.cache == config.cache
        limits_kept = same and previous is not None and previous.config.limits == config.limits
        queue_kept = same and previous is not None and previous.config.queue == config.queue
        cache = previous.cache if cache_kept and previous else make_cache(config.cache)
        return cls(
            config=config,
            session=session,
            pool=pool,
            router=_router(config, previous),
            keys=KeyStore(config.keys),
            limiter=previous.limiter if limits_kept and previous else make_rate_limiter(config.limits),
            cache=cache,
            admission=previous.admission if queue_kept and previous else AdmissionQueue(config.queue),
            retry=RetryPolicy(config.retry),
            budget=previous.budget
            if previous and previous.config.retry == config.retry
            else RetryBudget(config.retry),
            search=_search(config, previous, cache),
        )

    async def close_replaced(self, new: GatewayState) -> None:
        """Close what `new` did not take over (called after a reload, once requests drained)."""
        if self.cache is not None and self.cache is not new.cache:
            await self.cache.close()
        if self.limiter is not new.limiter:
            await self.limiter.close()
        if self.search is not None and self.search is not new.search:
            await self.search.aclose()

    async def close(self) -> None:
        if self.cache is not None:
            await self.cache.close()
        await self.limiter.close()
        if self.search is not None:
            await self.search.aclose()


def _search(
    config: GatewayConfig, previous: GatewayState | None, cache: ResponseCache | None
) -> WebSearch | None:
    """The search of `config` (results and pages kept in the response cache, when there is one);
    the previous one where neither its section nor the cache changed."""
    if config.search.web_search == "off":
        return None
    if (
        previous is not None
        and previous.search is not None
        and previous.config.search == config.search
        and previous.cache is cache
    ):
        return previous.search
    return WebSearch(config.search.search_config(), store=cache)


def _router(config: GatewayConfig, previous: GatewayState | None) -> Router:
    """The previous router (its prefix and session affinity) when its settings did not change."""
    if previous is None or _routing_settings(previous.config) != _routing_settings(config):
        return Router(config)
    names = {b.name for b in config.backends}
    for backend in previous.config.backends:
        if backend.name not in names:
            previous.router.forget(backend.name)
    return previous.router


def _routing_settings(config: GatewayConfig) -> tuple[int, int, int]:
    return config.prefix_chars, config.prefix_max_entries, config.prefix_imbalance
