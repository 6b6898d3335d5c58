from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from starlette.datastructures import Headers

from gateway.services import memcached_server, redis_server
from seekserve.bench.servers import free_port
from seekserve.errors import ConfigError
from seekserve.gateway.cache import (
    MemcachedCache,
    MemoryCache,
    RedisCache,
    ResponseCache,
    cache_key,
    make_cache,
    request_opts_out,
)
from seekserve.gateway.config import CacheConfig, CacheKind

CHAT = "/v1/chat/completions"
KEY_A = "seekserve:gw:" + "a" * 64
KEY_B = "seekserve:gw:" + "b" * 64


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "r1", "messages": [{"role": "user", "content": "hi"}], **fields}


T = TypeVar("T")


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


def test_cache_key_is_the_sha256_of_the_canonical_request() -> None:
    canonical = (
        '{"body":{"messages":[{"content":"hi","role":"user"}],"model":"r1","temperature":0},'
        '"path":"/v1/chat/completions"}'
    )
    expected = "seekserve:gw:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert cache_key(CHAT, chat_body(temperature=0)) == expected
    reordered = {"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "r1"}
    assert cache_key(CHAT, reordered) == expected


def test_cache_key_ignores_fields_that_do_not_change_the_answer() -> None:
    key = cache_key(CHAT, chat_body(temperature=0))
    same = chat_body(
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        user="alice",
        cache=True,
        metadata={"trace": "x"},
    )
    assert cache_key(CHAT, same) == key
    assert cache_key(CHAT, chat_body(temperature=0, max_tokens=5)) != key
    assert cache_key(CHAT, chat_body(temperature=0, model="r1-distill")) != key
    assert cache_key("/v1/completions", chat_body(temperature=0)) != key


def test_cache_key_of_non_ascii_and_lone_surrogate_text() -> None:
    key = cache_key(CHAT, chat_body(temperature=0, messages=[{"role": "user", "content": "深度\ud800"}]))
    assert key is not None and len(key) == len("seekserve:gw:") + 64
    assert key != cache_key(CHAT, chat_body(temperature=0, messages=[{"role": "user", "content": "深度"}]))


@pytest.mark.parametrize(
    ("fields", "cacheable"),
    [
        ({"temperature": 0}, True),
        ({"temperature": 0.0}, True),
        ({"temperature": 0.7, "top_k": 1}, True),
        ({"temperature": 0.7, "seed": 7}, True),
        ({"seed": 0}, True),
        ({"temperature": 0, "n": 1}, True),
        ({}, False),
        ({"temperature": 0.7}, False),
        ({"temperature": False}, False),
        ({"seed": True}, False),
        ({"seed": "7"}, False),
        ({"top_k": 2}, False),
        ({"temperature": 0, "n": 2}, False),
        ({"temperature": 0, "n": True}, False),
        ({"seed": 7, "n": 3}, False),
    ],
)
def test_cacheability(fields: dict[str, Any], cacheable: bool) -> None:
    assert (cache_key(CHAT, chat_body(**fields)) is not None) is cacheable


@pytest.mark.parametrize(
    ("body", "headers", "opted_out"),
    [
        ({}, {}, False),
        ({"cache": False}, {}, True),
        ({"cache": True}, {}, False),
        ({}, {"cache-control": "no-cache"}, True),
        ({}, {"cache-control": "max-age=0, No-Store"}, True),
        ({}, {"cache-control": "max-age=60"}, False),
        ({}, {"x-seekserve-cache": "off"}, True),
        ({}, {"x-seekserve-cache": " OFF "}, True),
        ({}, {"x-seekserve-cache": "on"}, False),
    ],
)
def test_request_opts_out(body: dict[str, Any], headers: dict[str, str], opted_out: bool) -> None:
    assert request_opts_out(body, headers) is opted_out


def test_request_opts_out_reads_headers_case_insensitively() -> None:
    assert request_opts_out({}, Headers({"Cache-Control": "no-store"})) is True
    assert request_opts_out({}, Headers({"X-SeekServe-Cache": "off"})) is True
    assert request_opts_out({}, Headers({"Content-Type": "application/json"})) is False


def memory_cache(clock: FakeClock, **fields: Any) -> MemoryCache:
    return MemoryCache(CacheConfig(backend=CacheKind.MEMORY, **fields), clock=clock)


def test_memory_cache_evicts_the_least_recently_used() -> None:
    cache = memory_cache(FakeClock(), max_entries=2)

    async def scenario() -> list[bytes | None]:
        await cache.set("a", b"1")
        await cache.set("b", b"2")
        touched = await cache.get("a")
        await cache.set("c", b"3")
        return [touched, await cache.get("a"), await cache.get("b"), await cache.get("c")]

    assert run(scenario) == [b"1", b"1", None, b"3"]
    assert len(cache) == 2
    assert (cache.hits, cache.misses, cache.stores, cache.errors) == (3, 1, 3, 0)


def test_memory_cache_expires_entries_after_ttl() -> None:
    clock = FakeClock()
    cache = memory_cache(clock, ttl_s=10)

    async def scenario() -> list[bytes | None]:
        await cache.set("a", b"1")
        clock.now += 9.99
        fresh = await cache.get("a")
        clock.now += 0.01
        return [fresh, await cache.get("a")]

    assert run(scenario) == [b"1", None]
    assert len(cache) == 0
    assert (cache.hits, cache.misses) == (1, 1)


def test_cache_refuses_values_over_max_entry_bytes() -> None:
    cache = memory_cache(FakeClock(), max_entry_bytes=1024)

    async def scenario() -> list[bytes | None]:
        await cache.set("big", b"x" * 1025)
        await cache.set("fits", b"x" * 1024)
        return [await cache.get("big"), await cache.get("fits")]

    assert run(scenario) == [None, b"x" * 1024]
    assert (cache.stores, cache.oversized) == (1, 1)


class FlakyCache(ResponseCache):
    """A backend that fails with ConnectionError while `down`, to test the base class's contract."""

    _failures = (ConnectionError,)

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(CacheConfig(backend=CacheKind.MEMORY), clock=clock)
        self.down = False
        self.calls = 0
        self.data: dict[str, bytes] = {}

    async def _get(self, key: str) -> bytes | None:
        self.calls += 1
        if self.down:
            raise ConnectionError("connection refused")
        if key == "bug":
            raise KeyError(key)
        return self.data.get(key)

    async def _set(self, key: str, value: bytes) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("connection refused")
        self.data[key] = value

    async def close(self) -> None:
        self.data.clear()


def test_failures_are_misses_logged_once_per_burst(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    cache = FlakyCache(clock)
    cache.down = True

    async def scenario() -> list[Any]:
        seen: list[Any] = [await cache.get("a"), cache.errors, cache.calls]
        await cache.set("a", b"1")  # within RECHECK_S: the backend is not asked
        seen += [cache.errors, cache.calls]
        clock.now += cache.RECHECK_S
        seen += [await cache.get("a"), cache.errors, cache.calls]
        cache.down = False
        clock.now += cache.RECHECK_S
        await cache.set("a", b"1")
        seen += [await cache.get("a"), cache.errors, cache.calls]
        return seen

    with caplog.at_level(logging.WARNING, logger="seekserve.gateway.cache"):
        assert run(scenario) == [None, 1, 1, 1, 1, None, 2, 2, b"1", 2, 4]
    assert (cache.hits, cache.misses, cache.stores) == (1, 2, 1)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith(
        "response cache FlakyCache: get failed (ConnectionError('connection refused'))"
    )
    assert messages[1] == "response cache FlakyCache is reachable again after 2.0 s (2 errors so far)"


def test_errors_outside_the_backend_failures_propagate() -> None:
    cache = FlakyCache(FakeClock())
    with pytest.raises(KeyError):
        run(lambda: cache.get("bug"))
    assert cache.errors == 0


def test_make_cache_picks_the_configured_class() -> None:
    assert make_cache(CacheConfig()) is None
    assert type(make_cache(CacheConfig(backend=CacheKind.MEMORY))) is MemoryCache
    redis = make_cache(CacheConfig(backend=CacheKind.REDIS, url="redis://127.0.0.1:1/0"))
    memcached = make_cache(CacheConfig(backend=CacheKind.MEMCACHED, url="memcached://127.0.0.1:1"))
    assert type(redis) is RedisCache and type(memcached) is MemcachedCache
    run(redis.close)
    run(memcached.close)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:11211", "memcached://", "memcached://host:port"])
def test_memcached_url_is_checked(url: str) -> None:
    with pytest.raises(ConfigError, match="memcached://host:11211"):
        MemcachedCache(CacheConfig(backend=CacheKind.MEMCACHED, url=url))


NETWORKED: dict[CacheKind, type[ResponseCache]] = {
    CacheKind.REDIS: RedisCache,
    CacheKind.MEMCACHED: MemcachedCache,
}


def networked(kind: CacheKind, url: str, clock: FakeClock | None = None, **fields: Any) -> ResponseCache:
    return NETWORKED[kind](CacheConfig(backend=kind, url=url, **fields), clock=clock or time.monotonic)


@pytest.fixture(params=[CacheKind.REDIS, CacheKind.MEMCACHED])
def server(request: pytest.FixtureRequest) -> tuple[CacheKind, str]:
    kind: CacheKind = request.param
    return kind, request.getfixturevalue("redis_url" if kind is CacheKind.REDIS else "memcached_url")


def test_two_replicas_share_entries(server: tuple[CacheKind, str]) -> None:
    kind, url = server
    value = b"\x00\xff" + "深度".encode() * 1000

    async def scenario() -> list[bytes | None]:
        first, second = networked(kind, url), networked(kind, url)
        try:
            await first.set(KEY_A, value)
            return [await second.get(KEY_A), await second.get(KEY_B)]
        finally:
            await first.close()
            await second.close()

    assert run(scenario) == [value, None]


def test_entries_expire_after_ttl(server: tuple[CacheKind, str]) -> None:
    kind, url = server

    async def scenario() -> list[bytes | None]:
        cache = networked(kind, url, ttl_s=1)
        try:
            await cache.set(KEY_B, b"soon gone")  # memcached: exptime 1, so gone within 1 s
            fresh = await cache.get(KEY_B)
            await asyncio.sleep(1.1)
            return [fresh, await cache.get(KEY_B)]
        finally:
            await cache.close()

    assert run(scenario) == [b"soon gone", None]


def test_memcached_ttl_over_30_days_is_sent_as_a_unix_time(memcached_url: str) -> None:
    async def scenario() -> bytes | None:
        cache = networked(CacheKind.MEMCACHED, memcached_url, ttl_s=31 * 24 * 3600)
        try:
            await cache.set(KEY_A, b"kept")  # a relative 31 days would be read as 1970: expired at once
            return await cache.get(KEY_A)
        finally:
            await cache.close()

    assert run(scenario) == b"kept"


@pytest.mark.parametrize("kind", [CacheKind.REDIS, CacheKind.MEMCACHED])
def test_nothing_listening_is_a_miss(kind: CacheKind) -> None:
    url = (
        f"redis://127.0.0.1:{free_port()}/0"
        if kind is CacheKind.REDIS
        else f"memcached://127.0.0.1:{free_port()}"
    )

    async def scenario() -> list[Any]:
        clock = FakeClock()
        cache = networked(kind, url, clock)
        try:
            started = time.monotonic()
            got = await cache.get(KEY_A)
            clock.now += cache.RECHECK_S  # ask the server again, to see set fail too
            await cache.set(KEY_A, b"1")
            assert time.monotonic() - started < cache.TIMEOUT_S
            return [got, cache.errors, cache.misses, cache.stores]
        finally:
            await cache.close()

    assert run(scenario) == [None, 2, 1, 0]


@pytest.mark.parametrize("start", [redis_server, memcached_server])
def test_server_stopped_under_a_connected_client(start: Callable[[], Any]) -> None:
    async def scenario() -> list[Any]:
        with start() as url:
            kind = CacheKind.REDIS if url.startswith("redis") else CacheKind.MEMCACHED
            cache = networked(kind, url)
            await cache.set(KEY_A, b"1")
            seen = [await cache.get(KEY_A)]
        try:
            await asyncio.sleep(0.05)  # let the loop see the connections close
            seen += [await cache.get(KEY_A), cache.errors]
            return seen
        finally:
            await cache.close()

    assert run(scenario) == [b"1", None, 1]


@pytest.mark.timeout(10)
def test_memcached_closing_before_its_reply_fails_the_set() -> None:
    """aiomcache alone spins forever here (aio-libs/aiomcache#502); the cache must fail and move on."""

    accepted: list[asyncio.StreamWriter] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.readline()  # set <key> <flags> <exptime> <bytes>
        await reader.readline()  # <data>
        writer.close()

    async def scenario() -> list[int]:
        listener = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        cache = networked(CacheKind.MEMCACHED, f"memcached://127.0.0.1:{port}")
        try:
            await cache.set(KEY_A, b"1")
            return [cache.errors, cache.stores]
        finally:
            await cache.close()
            listener.close()
            for writer in accepted:  # the client's pool opened more connections than the one used
                writer.close()
            await listener.wait_closed()

    assert run(scenario) == [1, 0]


class OneConnectionMemcached(MemcachedCache):
    POOL_SIZE = 1
    TIMEOUT_S = 0.05


def test_memcached_timeout_does_not_leave_a_stale_reply_for_the_next_get() -> None:
    """The late reply to a timed-out get must not be read as the answer to the next one."""
    accepted: list[asyncio.StreamWriter] = []

    async def slow_on_old(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        while line := await reader.readline():  # get <key>
            key = line.split()[1]
            if key == b"old":
                await asyncio.sleep(0.1)
            writer.write(b"VALUE " + key + b" 0 5\r\n" + key.ljust(5, b"!") + b"\r\nEND\r\n")

    async def scenario() -> list[Any]:
        listener = await asyncio.start_server(slow_on_old, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        clock = FakeClock()
        cache = OneConnectionMemcached(
            CacheConfig(backend=CacheKind.MEMCACHED, url=f"memcached://127.0.0.1:{port}"), clock=clock
        )
        try:
            timed_out = await cache.get("old")
            clock.now += cache.RECHECK_S
            await asyncio.sleep(0.15)  # the late reply to "get old" has arrived
            return [timed_out, await cache.get("new"), cache.errors, len(accepted)]
        finally:
            await cache.close()
            listener.close()
            for writer in accepted:
                writer.close()
            await listener.wait_closed()

    assert run(scenario) == [None, b"new!!", 1, 2]
