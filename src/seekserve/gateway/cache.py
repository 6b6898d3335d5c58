"""Exact-match response cache: a deterministic request answered again without an engine.

A request is cacheable when its answer is a function of the request alone (temperature 0, top_k 1
or a seed; one choice). Its key hashes the request minus the fields that do not change the answer.
The value is one complete answer in the format of answers.py (re-exported here), returned whole or
replayed as a stream.

    MemoryCache     this process only, an LRU of cache.max_entries
    RedisCache      shared by every gateway replica (redis://host:6379/0)
    MemcachedCache  shared by every gateway replica (memcached://host:11211)

A cache never fails a request. A backend error is a miss: it is counted in `errors`, logged once
per failure burst, and the backend is then left alone for `RECHECK_S`, so a dead or black-holed
server costs one short timeout per second instead of one per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast
from urllib.parse import urlsplit

from seekserve.errors import ConfigError
from seekserve.gateway.answers import (
    answer_as_chunks,
    assemble_answer,
    decode_answer,
    encode_answer,
)
from seekserve.gateway.config import CacheConfig, CacheKind, redacted_url
from seekserve.search.cache import MemoryCache as TtlLru

if TYPE_CHECKING:
    import aiomcache

__all__ = [
    "KEY_PREFIX",
    "MemcachedCache",
    "MemoryCache",
    "RedisCache",
    "ResponseCache",
    "answer_as_chunks",
    "assemble_answer",
    "cache_key",
    "decode_answer",
    "encode_answer",
    "make_cache",
    "request_opts_out",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

KEY_PREFIX = "seekserve:gw:"
_IGNORED_FIELDS = frozenset({"user", "stream", "stream_options", "cache", "metadata"})
"""Request fields that do not change the answer (`stream`: the value replays as either form)."""
_NO_CACHE_DIRECTIVES = frozenset({"no-cache", "no-store"})
_NUMBER = (int, float)


def _is_deterministic(body: dict[str, Any]) -> bool:
    """Greedy (temperature 0 or top_k 1) or seeded, with one choice. Booleans are not numbers here."""
    n = body.get("n")
    if n is not None and not (type(n) is int and n == 1):
        return False
    if type(body.get("seed")) is int:
        return True
    temperature, top_k = body.get("temperature"), body.get("top_k")
    return (type(temperature) in _NUMBER and temperature == 0) or (type(top_k) in _NUMBER and top_k == 1)


def cache_key(path: str, body: dict[str, Any]) -> str | None:
    """The key of a deterministic request, None when the request must not be cached.

    Cacheable: temperature == 0 (explicitly; an absent temperature means 1) or top_k == 1, or an
    integer `seed`; and n absent or 1. The key is KEY_PREFIX + the SHA-256 hex of the canonical JSON
    of {"path": path, "body": body minus user, stream, stream_options, cache, metadata}, so it does
    not depend on the order of the body's fields nor on whether the answer is streamed.
    """
    if not _is_deterministic(body):
        return None
    kept = {name: value for name, value in body.items() if name not in _IGNORED_FIELDS}
    text = json.dumps({"path": path, "body": kept}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: JSON may carry lone surrogates ("\ud800"), which strict UTF-8 refuses.
    return KEY_PREFIX + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def request_opts_out(body: dict[str, Any], headers: Mapping[str, str]) -> bool:
    """Per-request opt-out: `Cache-Control: no-cache` or `no-store`, `x-seekserve-cache: off`, or
    body `"cache": false` (the proxy removes `cache` before sending upstream).

    `headers` is case-insensitive (starlette's Headers) or has lower-case names (ASGI scope headers).
    """
    if body.get("cache") is False:
        return True
    switch = headers.get("x-seekserve-cache")
    if switch is not None and switch.strip().lower() == "off":
        return True
    control = headers.get("cache-control")
    if not control:
        return False
    return any(d.split("=", 1)[0].strip().lower() in _NO_CACHE_DIRECTIVES for d in control.split(","))


class ResponseCache(ABC):
    """Stores finished answers as bytes, each for `config.ttl_s`.

    Contract: `get` and `set` never raise on a backend failure (server down, timeout, protocol
    error): `get` returns None and `set` does nothing. Each failure counts in `errors`; the first of
    a burst is logged, and for `RECHECK_S` after a failure the backend is not asked at all.
    Counters: hits + misses == calls of `get` (a failed or skipped get is a miss); `stores` counts
    values written, `oversized` values refused for being over `config.max_entry_bytes`.
    Subclasses implement `_get`, `_set` and `close`, and list their backend's exceptions in `_failures`.
    """

    RECHECK_S: ClassVar[float] = 1.0
    TIMEOUT_S: ClassVar[float] = 0.5
    """Socket/operation timeout of the networked backends: a cache must not stall requests."""
    _failures: tuple[type[BaseException], ...] = ()

    def __init__(self, config: CacheConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self.hits = self.misses = self.errors = self.stores = self.oversized = 0
        self._failing_since: float | None = None
        self._skip_until = 0.0

    async def get(self, key: str) -> bytes | None:
        if self._skip_until and self._clock() < self._skip_until:
            self.misses += 1
            return None
        try:
            value = await self._get(key)
        except self._failures as exc:
            self._failed("get", exc)
            self.misses += 1
            return None
        if self._failing_since is not None:
            self._recovered()
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    async def set(self, key: str, value: bytes) -> None:
        if len(value) > self.config.max_entry_bytes:
            self.oversized += 1
            return
        if self._skip_until and self._clock() < self._skip_until:
            return
        try:
            await self._set(key, value)
        except self._failures as exc:
            self._failed("set", exc)
            return
        if self._failing_since is not None:
            self._recovered()
        self.stores += 1

    @abstractmethod
    async def _get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def _set(self, key: str, value: bytes) -> None: ...

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the cache is not used afterwards."""

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.errors += 1
        now = self._clock()
        self._skip_until = now + self.RECHECK_S
        if self._failing_since is None:
            self._failing_since = now
            log.warning(
                "response cache %s: %s failed (%r); answering without the cache, retrying in %.1f s",
                type(self).__name__,
                operation,
                exc,
                self.RECHECK_S,
            )

    def _recovered(self) -> None:
        assert self._failing_since is not None, "_recovered called while not failing"
        log.warning(
            "response cache %s is reachable again after %.1f s (%d errors so far)",
            type(self).__name__,
            self._clock() - self._failing_since,
            self.errors,
        )
        self._failing_since = None
        self._skip_until = 0.0


class MemoryCache(ResponseCache):
    """This process's LRU of at most `config.max_entries`; an entry expires `ttl_s` after it was set
    (the TTL LRU that web search keeps its results in, with this cache's counters around it)."""

    def __init__(self, config: CacheConfig, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, clock)
        self._store = TtlLru(config.ttl_s, config.max_entries, clock)

    def __len__(self) -> int:
        return len(self._store)

    async def _get(self, key: str) -> bytes | None:
        return await self._store.get(key)

    async def _set(self, key: str, value: bytes) -> None:
        await self._store.set(key, value)

    async def close(self) -> None:
        self._store.clear()


class RedisCache(ResponseCache):
    """Redis at `config.url`: GET, and SET with a PX expiry. No client-side retries: a miss is cheaper."""

    def __init__(self, config: CacheConfig, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, clock)
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:
            raise ConfigError(
                "cache.backend redis needs the redis package: pip install 'seekserve[gateway]'"
            ) from exc
        assert config.url is not None, "CacheConfig validates that redis has a url"
        self._client = aioredis.Redis.from_url(
            config.url,
            socket_timeout=self.TIMEOUT_S,
            socket_connect_timeout=self.TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        self._failures = (aioredis.RedisError, OSError)
        self._ttl_ms = max(1, round(config.ttl_s * 1000))

    async def _get(self, key: str) -> bytes | None:
        return cast("bytes | None", await self._client.get(key))

    async def _set(self, key: str, value: bytes) -> None:
        await self._client.set(key, value, px=self._ttl_ms)

    async def close(self) -> None:
        await self._client.aclose()


_MEMCACHED_MAX_RELATIVE_S = 30 * 24 * 3600
"""Memcached reads an exptime over 30 days as a Unix time, not a duration."""


class MemcachedCache(ResponseCache):
    """Memcached at `config.url` (memcached://host:port). Keys are ASCII (KEY_PREFIX + 64 hex digits)."""

    POOL_SIZE: ClassVar[int] = 16

    def __init__(self, config: CacheConfig, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, clock)
        try:
            import aiomcache
        except ImportError as exc:
            raise ConfigError(
                "cache.backend memcached needs the aiomcache package: pip install 'seekserve[gateway]'"
            ) from exc
        assert config.url is not None, "CacheConfig validates that memcached has a url"
        host, port = _memcached_address(config.url)
        self._client = _eof_safe_client(host, port, self.POOL_SIZE)
        self._failures = (aiomcache.ClientException, OSError, TimeoutError)
        self._ttl_s = math.ceil(config.ttl_s)

    async def _get(self, key: str) -> bytes | None:
        return await self._bounded(self._client.get(key.encode()))

    async def _set(self, key: str, value: bytes) -> None:
        exptime = self._ttl_s
        if exptime > _MEMCACHED_MAX_RELATIVE_S:
            exptime += int(time.time())
        await self._bounded(self._client.set(key.encode(), value, exptime=exptime))

    async def _bounded(self, command: Awaitable[_T]) -> _T:
        """`command` within TIMEOUT_S. aiomcache discards a connection only on an Exception: one whose
        command is cancelled (our timeout, or the request's task) goes back to the pool mid-reply, and
        the next command on it would read that old reply. So the idle connections are closed then."""
        try:
            async with asyncio.timeout(self.TIMEOUT_S):
                return await command
        except (TimeoutError, asyncio.CancelledError):
            await self._client.close()
            raise

    async def close(self) -> None:
        await self._client.close()


def _memcached_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "memcached" or not parts.hostname:
        raise ConfigError(
            f"cache.url {redacted_url(url)!r} is not a memcached URL: write memcached://host:11211"
        )
    try:
        port = parts.port or 11211
    except ValueError as exc:
        raise ConfigError(
            f"cache.url {redacted_url(url)!r} has an invalid port: write memcached://host:11211"
        ) from exc
    return parts.hostname, port


def _eof_safe_client(host: str, port: int, pool_size: int) -> aiomcache.Client:
    """An aiomcache client whose storage commands fail, instead of spinning forever, when the server
    closes the connection before replying (aio-libs/aiomcache#502: readline returns b"" at EOF)."""
    import aiomcache
    from aiomcache.pool import Connection

    class Client(aiomcache.Client):
        async def _execute_simple_command(self, conn: Connection, raw_command: bytes) -> bytes:
            conn.writer.write(raw_command)
            await conn.writer.drain()
            line = await conn.reader.readline()
            if not line.endswith(b"\r\n"):
                raise aiomcache.ClientException("memcached closed the connection before replying", line)
            return line[:-2]

    return Client(host, port, pool_size=pool_size)


_CACHES: dict[CacheKind, type[ResponseCache]] = {
    CacheKind.MEMORY: MemoryCache,
    CacheKind.REDIS: RedisCache,
    CacheKind.MEMCACHED: MemcachedCache,
}


def make_cache(config: CacheConfig) -> ResponseCache | None:
    """The cache `config` describes; None when `config.backend` is None (no cache)."""
    return None if config.backend is None else _CACHES[config.backend](config)
