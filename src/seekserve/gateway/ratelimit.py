"""Per-key rate limits: requests per minute (GCRA) and tokens per minute (a bucket that may go into debt).

    RateLimiter (ABC)
     ├── MemoryRateLimiter   state in this process (`limits.url` unset)
     └── RedisRateLimiter    state in Redis, shared by every gateway replica (`limits.url: redis://...`)

rpm, GCRA: each request moves the key's theoretical arrival time (TAT) on by one emission interval
T = ceil(60 s / rpm) (whole microseconds, rounded up so the sustained rate never exceeds rpm). A
request is refused while its new TAT would lie more than rpm * T (one minute) ahead of now. So a key
that has been idle for a minute may send `rpm` requests at once (the burst is one minute's worth),
and after that one every T: rpm=60 lets 60 through at t=0, then one per second. A refusal says when
the next request would pass and changes nothing.

tpm, a token bucket of `tpm` tokens refilled at tpm per minute: `consume_tokens` debits it as a stream
runs and may drive it below zero (a long completion is not cut off). `acquire_request` refuses while
the tokens used in the last minute's worth of refill (the debt) are at least `tpm`, and says when one
token will be free. The bucket is kept as a TAT too: debt = (TAT - now) * tpm / 60 s.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from seekserve.errors import ConfigError, SeekserveError
from seekserve.gateway.config import KeyConfig, LimitsConfig, redacted_url

__all__ = [
    "LimitsUnavailable",
    "MemoryRateLimiter",
    "RateLimited",
    "RateLimiter",
    "RedisRateLimiter",
    "make_rate_limiter",
]

logger = logging.getLogger(__name__)

_MINUTE_US = 60_000_000
_LIMIT_UNITS = {"rpm": "requests", "tpm": "tokens"}


class RateLimited(SeekserveError):
    """A key is over its rpm or tpm limit; the edge answers 429 with Retry-After."""

    def __init__(self, label: str, limit: str, per_minute: int, retry_after_s: float) -> None:
        super().__init__(
            f"API key {label!r} is over its limit of {per_minute} {_LIMIT_UNITS[limit]} per minute "
            f"({limit}): retry in {retry_after_s:.1f} s, or raise the key's {limit} in the gateway config"
        )
        self.limit = limit
        """"rpm" or "tpm": which limit refused the request."""
        self.retry_after_s = retry_after_s
        """Seconds until a request of this key would pass (if nothing else uses the key meanwhile)."""


class LimitsUnavailable(SeekserveError):
    """The shared limits cannot be checked (Redis is unreachable) and `limits.fail_open` is false; the
    edge answers 503 with Retry-After."""

    def __init__(self, url: str, retry_after_s: float) -> None:
        super().__init__(
            f"rate limits cannot be checked: their Redis at {url} is unreachable and the gateway is set "
            f"to refuse rather than let requests through unlimited (limits.fail_open: false); retry in "
            f"{retry_after_s:.0f} s"
        )
        self.retry_after_s = retry_after_s


def _interval_us(rpm: int) -> int:
    """GCRA emission interval: whole microseconds, rounded up."""
    return -(-_MINUTE_US // rpm)


class RateLimiter(ABC):
    """Checks and debits a key's limits. One instance per gateway process, used on its event loop.

    Keys without rpm and tpm cost nothing. A refused request leaves the state unchanged.
    """

    @abstractmethod
    async def acquire_request(self, key: KeyConfig) -> None:
        """Admit one request of `key` or raise `RateLimited`.

        Counts the request against `key.rpm` (GCRA; no-op when None) and refuses with limit "tpm"
        when the key's token bucket is already empty (its debt is at least `key.tpm`).
        """

    @abstractmethod
    async def consume_tokens(self, key: KeyConfig, count: int) -> None:
        """Debit `count` tokens (prompt or completion) from `key`'s bucket as a stream runs.

        Never raises and never refuses: the bucket may go into debt, and later requests of the key
        are refused until it refills. A no-op when `key.tpm` is None or `count` is not positive.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the limiter is not used afterwards."""


class MemoryRateLimiter(RateLimiter):
    """Limits kept in this process: exact, and reset when the gateway restarts.

    State is one TAT per key and limit, in dicts keyed by the key's hash (bounded by the configured
    keys). `clock` returns seconds (monotonic); tests pass a fake one.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rpm_tat: dict[str, int] = {}
        self._tpm_tat: dict[str, float] = {}

    async def acquire_request(self, key: KeyConfig) -> None:
        if key.rpm is None and key.tpm is None:
            return
        now = round(self._clock() * 1e6)
        if key.tpm is not None:
            debt_us = self._tpm_tat.get(key.key_sha256, 0.0) - now
            if debt_us >= _MINUTE_US:
                retry_us = debt_us - _MINUTE_US + _MINUTE_US / key.tpm
                raise RateLimited(key.label, "tpm", key.tpm, retry_us / 1e6)
        if key.rpm is not None:
            interval = _interval_us(key.rpm)
            tat = max(self._rpm_tat.get(key.key_sha256, 0), now) + interval
            allow_at = tat - interval * key.rpm
            if now < allow_at:
                raise RateLimited(key.label, "rpm", key.rpm, (allow_at - now) / 1e6)
            self._rpm_tat[key.key_sha256] = tat

    async def consume_tokens(self, key: KeyConfig, count: int) -> None:
        if key.tpm is None or count <= 0:
            return
        now = self._clock() * 1e6
        tat = max(self._tpm_tat.get(key.key_sha256, 0.0), now)
        self._tpm_tat[key.key_sha256] = tat + count * _MINUTE_US / key.tpm

    async def close(self) -> None:
        return None


# Both scripts read the clock with TIME inside Redis, so every replica uses the same clock, and run
# atomically, so concurrent replicas cannot both take the last slot. Times are microseconds; the keys
# expire once the state they hold equals a fresh one (TAT <= now), plus a second.
_ACQUIRE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tpm = tonumber(ARGV[3])
if tpm > 0 then
  local debt = tonumber(redis.call('GET', KEYS[2]) or '0') - now
  if debt >= 60000000 then
    return {2, math.ceil(debt - 60000000 + 60000000 / tpm)}
  end
end
local interval = tonumber(ARGV[1])
if interval > 0 then
  local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) + interval
  local allow_at = tat - tonumber(ARGV[2])
  if now < allow_at then
    return {1, allow_at - now}
  end
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
return {0, 0}
"""

_CONSUME_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return 0
"""

_CODE_LIMIT = {1: "rpm", 2: "tpm"}


class RedisRateLimiter(RateLimiter):
    """Limits shared by every gateway replica through one Redis, with the same GCRA and bucket.

    The state of a key lives in `seekserve:gw:rl:{<key_sha256>}:rpm` and `...:tpm` (the braces are a
    Redis Cluster hash tag, so both keys sit in one slot), updated by Lua scripts (EVALSHA) that read
    Redis's own clock, so replicas with skewed clocks agree. Each check is one round trip.

    When Redis cannot be reached (connection refused, `timeout_s` passed, any Redis error), `errors`
    is incremented and a warning is logged, and for the next `down_s` seconds Redis is not tried, so
    an outage neither adds latency to every request nor floods the log. Meanwhile a limited key's
    request is let through unlimited (`fail_open`, the default) or refused with `LimitsUnavailable`;
    tokens streamed meanwhile are not debited. Limits apply again once Redis answers.
    """

    def __init__(
        self,
        url: str,
        *,
        fail_open: bool = True,
        timeout_s: float = 0.5,
        down_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError
        except ImportError as exc:
            raise ConfigError(
                f"limits.url {redacted_url(url)!r} needs the Redis client: pip install 'seekserve[gateway]'"
            ) from exc
        self._client = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),  # one immediate retry on a stale pooled connection
        )
        self._acquire = self._client.register_script(_ACQUIRE_LUA)
        self._consume = self._client.register_script(_CONSUME_LUA)
        self._redis_errors: tuple[type[Exception], ...] = (RedisError, OSError)
        self._url = redacted_url(url)  # logged when Redis fails: without its password
        self._fail_open = fail_open
        self._down_s = down_s
        self._clock = clock
        self._down_until = -math.inf
        self._names: dict[str, list[str]] = {}
        self.errors = 0
        """Redis calls that failed (each one let its request through unlimited)."""

    def _keys_of(self, key: KeyConfig) -> list[str]:
        names = self._names.get(key.key_sha256)
        if names is None:
            prefix = f"seekserve:gw:rl:{{{key.key_sha256}}}"
            names = self._names[key.key_sha256] = [f"{prefix}:rpm", f"{prefix}:tpm"]
        return names

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self._down_until = self._clock() + self._down_s
        logger.warning(
            "rate-limit Redis %s failed (%s: %s): requests of limited keys %s for the next %.1f s; "
            "check that Redis is up and reachable from the gateway",
            self._url,
            type(exc).__name__,
            exc,
            "pass without rpm/tpm limits" if self._fail_open else "are refused with 503",
            self._down_s,
        )

    def _unavailable(self) -> None:
        """What a limited key's request gets while Redis is down: through, or LimitsUnavailable."""
        if not self._fail_open:
            raise LimitsUnavailable(self._url, max(self._down_until - self._clock(), 1.0))

    async def acquire_request(self, key: KeyConfig) -> None:
        if key.rpm is None and key.tpm is None:
            return
        if self._clock() < self._down_until:
            self._unavailable()
            return
        interval = 0 if key.rpm is None else _interval_us(key.rpm)
        args = [interval, interval * (key.rpm or 0), key.tpm or 0]
        try:
            code, retry_us = await self._acquire(keys=self._keys_of(key), args=args)
        except self._redis_errors as exc:
            self._failed(exc)
            self._unavailable()
            return
        if code:
            limit = _CODE_LIMIT[code]
            per_minute = key.rpm if limit == "rpm" else key.tpm
            assert per_minute is not None, f"Redis refused on {limit}, which {key.label} does not set"
            raise RateLimited(key.label, limit, per_minute, retry_us / 1e6)

    async def consume_tokens(self, key: KeyConfig, count: int) -> None:
        if key.tpm is None or count <= 0 or self._clock() < self._down_until:
            return
        try:
            await self._consume(keys=self._keys_of(key)[1:], args=[repr(count * _MINUTE_US / key.tpm)])
        except self._redis_errors as exc:
            self._failed(exc)

    async def close(self) -> None:
        await self._client.aclose()


def make_rate_limiter(config: LimitsConfig) -> RateLimiter:
    """In-process limits when `config.url` is None, else limits shared through that Redis."""
    if config.url is None:
        return MemoryRateLimiter()
    return RedisRateLimiter(config.url, fail_open=config.fail_open)
