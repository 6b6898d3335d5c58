from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import pytest
from redis.asyncio import Redis

from gateway.services import redis_server, redis_service
from seekserve.bench.servers import free_port
from seekserve.gateway.config import KeyConfig, LimitsConfig
from seekserve.gateway.ratelimit import (
    LimitsUnavailable,
    MemoryRateLimiter,
    RateLimited,
    RateLimiter,
    RedisRateLimiter,
    make_rate_limiter,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_key(secret: str, **fields: object) -> KeyConfig:
    return KeyConfig.model_validate({"key_sha256": hashlib.sha256(secret.encode()).hexdigest(), **fields})


async def passes(limiter: RateLimiter, key: KeyConfig) -> bool:
    try:
        await limiter.acquire_request(key)
    except RateLimited:
        return False
    return True


async def refusal(limiter: RateLimiter, key: KeyConfig) -> RateLimited:
    with pytest.raises(RateLimited) as info:
        await limiter.acquire_request(key)
    return info.value


def test_gcra_rpm_60_allows_a_minute_burst_then_one_per_second() -> None:
    async def main() -> None:
        clock = FakeClock(1000.0)
        limiter = MemoryRateLimiter(clock)
        key = make_key("sk-rpm", name="team-a", rpm=60)
        assert [await passes(limiter, key) for _ in range(60)] == [True] * 60
        refused = await refusal(limiter, key)
        assert (refused.limit, refused.retry_after_s) == ("rpm", 1.0)
        assert str(refused) == (
            "API key 'team-a' is over its limit of 60 requests per minute (rpm): retry in 1.0 s, "
            "or raise the key's rpm in the gateway config"
        )
        clock.now = 1000.5
        assert (await refusal(limiter, key)).retry_after_s == 0.5  # refusals did not move the TAT
        clock.now = 1001.0
        assert await passes(limiter, key)
        assert (await refusal(limiter, key)).retry_after_s == 1.0
        clock.now = 1010.0  # 9 s later: 9 more, one per second
        assert [await passes(limiter, key) for _ in range(10)] == [True] * 9 + [False]
        clock.now = 1070.0  # idle for a minute: the whole burst again
        assert [await passes(limiter, key) for _ in range(61)] == [True] * 60 + [False]

    asyncio.run(main())


def test_gcra_interval_rounds_up_so_the_rate_never_exceeds_rpm() -> None:
    async def main() -> None:
        clock = FakeClock(50.0)
        limiter = MemoryRateLimiter(clock)
        key = make_key("sk-seven", rpm=7)
        assert [await passes(limiter, key) for _ in range(8)] == [True] * 7 + [False]
        assert (await refusal(limiter, key)).retry_after_s == 8.571429  # ceil(60e6 / 7) µs
        clock.now = 50.0 + 8.571429
        assert [await passes(limiter, key) for _ in range(2)] == [True, False]

    asyncio.run(main())


def test_keys_without_limits_and_keys_are_independent() -> None:
    async def main() -> None:
        limiter = MemoryRateLimiter(FakeClock())
        free = make_key("sk-free")
        one = make_key("sk-one", rpm=1)
        other = make_key("sk-other", rpm=1)
        assert [await passes(limiter, free) for _ in range(1000)] == [True] * 1000
        await limiter.consume_tokens(free, 10**9)
        assert [await passes(limiter, one) for _ in range(2)] == [True, False]
        assert await passes(limiter, other)
        await limiter.close()

    asyncio.run(main())


def test_tpm_debt_refuses_until_the_bucket_refills() -> None:
    async def main() -> None:
        clock = FakeClock(0.0)
        limiter = MemoryRateLimiter(clock)
        key = make_key("sk-tpm", name="batch", tpm=60)  # refills one token per second
        assert await passes(limiter, key)
        await limiter.consume_tokens(key, 59)
        assert await passes(limiter, key)  # 59 used, one left
        await limiter.consume_tokens(key, 91)  # a long stream drives the bucket 90 tokens into debt
        refused = await refusal(limiter, key)
        assert (refused.limit, refused.retry_after_s) == ("tpm", 91.0)  # until one token is free
        assert "over its limit of 60 tokens per minute (tpm)" in str(refused)
        clock.now = 90.0
        assert (await refusal(limiter, key)).retry_after_s == 1.0
        clock.now = 90.5  # 59.5 used: under the limit again
        assert await passes(limiter, key)
        clock.now = 1000.0
        await limiter.consume_tokens(key, 60)
        assert (await refusal(limiter, key)).retry_after_s == 1.0
        await limiter.consume_tokens(key, 0)
        await limiter.consume_tokens(key, -5)
        assert (await refusal(limiter, key)).retry_after_s == 1.0

    asyncio.run(main())


def test_tpm_refusal_does_not_spend_the_rpm_allowance() -> None:
    async def main() -> None:
        clock = FakeClock(0.0)
        limiter = MemoryRateLimiter(clock)
        key = make_key("sk-both", rpm=1, tpm=10)  # one token per 6 s
        await limiter.consume_tokens(key, 10)
        assert [(await refusal(limiter, key)).limit for _ in range(3)] == ["tpm"] * 3
        clock.now = 6.0
        assert await passes(limiter, key)
        refused = await refusal(limiter, key)
        assert (refused.limit, refused.retry_after_s) == ("rpm", 60.0)

    asyncio.run(main())


def test_make_rate_limiter_picks_the_store(redis_url: str) -> None:
    async def main() -> None:
        assert type(make_rate_limiter(LimitsConfig())) is MemoryRateLimiter
        limiter = make_rate_limiter(LimitsConfig(url=redis_url))
        assert type(limiter) is RedisRateLimiter
        await limiter.close()

    asyncio.run(main())


def test_two_replicas_share_one_rpm_limit_exactly(redis_url: str) -> None:
    async def main() -> None:
        replicas = [RedisRateLimiter(redis_url), RedisRateLimiter(redis_url)]
        key = make_key("sk-shared-rpm", rpm=10)  # interval 6 s
        results = await asyncio.gather(
            *(replicas[i % 2].acquire_request(key) for i in range(30)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, RateLimited)]
        assert results.count(None) == 10
        assert len(refused) == 20
        assert {r.limit for r in refused} == {"rpm"}
        assert all(5.0 < r.retry_after_s <= 6.0 for r in refused)
        client = Redis.from_url(redis_url)
        name = f"seekserve:gw:rl:{{{key.key_sha256}}}:rpm"
        assert 60_000 < await client.pttl(name) <= 61_000  # the TAT is 60 s ahead, plus a second
        await client.aclose()
        for replica in replicas:
            assert replica.errors == 0
            await replica.close()

    asyncio.run(main())


def test_two_replicas_share_one_token_bucket(redis_url: str) -> None:
    async def main() -> None:
        a, b = RedisRateLimiter(redis_url), RedisRateLimiter(redis_url)
        key = make_key("sk-shared-tpm", tpm=100)  # 0.6 s per token
        await a.acquire_request(key)
        await a.consume_tokens(key, 60)
        await b.acquire_request(key)  # 60 of 100 used
        await b.consume_tokens(key, 45)  # 105 used: 5 in debt
        for replica in (a, b):
            refused = await refusal(replica, key)
            assert refused.limit == "tpm"
            assert 3.5 < refused.retry_after_s <= 3.6  # (105 - 100 + 1) tokens * 0.6 s
        client = Redis.from_url(redis_url)
        assert 63_000 < await client.pttl(f"seekserve:gw:rl:{{{key.key_sha256}}}:tpm") <= 64_000
        await client.aclose()
        await a.close()
        await b.close()

    asyncio.run(main())


def test_redis_going_down_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        clock = FakeClock(0.0)
        key = make_key("sk-outage", name="ops", rpm=1, tpm=10)
        with redis_server() as url:
            limiter = RedisRateLimiter(url, down_s=5.0, clock=clock)
            assert [await passes(limiter, key) for _ in range(2)] == [True, False]
        started = time.monotonic()
        assert await passes(limiter, key)  # Redis is gone: allowed
        await limiter.consume_tokens(key, 1000)  # never raises
        assert time.monotonic() - started < 1.0
        assert limiter.errors == 1  # the consume was not tried: Redis is marked down for 5 s
        warnings = [r for r in caplog.records if r.name == "seekserve.gateway.ratelimit"]
        assert len(warnings) == 1
        assert warnings[0].levelno == logging.WARNING
        assert f"rate-limit Redis {url} failed" in warnings[0].getMessage()
        clock.now = 5.0
        assert await passes(limiter, key)  # tried again, failed again, allowed
        assert limiter.errors == 2
        await limiter.close()

    asyncio.run(main())


def test_unreachable_redis_from_the_start_fails_open() -> None:
    async def main() -> None:
        clock = FakeClock(0.0)
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", clock=clock)
        key = make_key("sk-nowhere", rpm=1, tpm=1)
        await limiter.consume_tokens(key, 100)
        assert limiter.errors == 1
        assert [await passes(limiter, key) for _ in range(3)] == [True] * 3
        assert limiter.errors == 1
        await limiter.close()

    asyncio.run(main())


def test_redis_down_fails_closed_when_so_configured_and_limits_resume_when_it_returns() -> None:
    async def main() -> None:
        clock = FakeClock(0.0)
        redis = redis_service()
        url = f"redis://127.0.0.1:{redis.port}/0"
        limited, free = make_key("sk-closed", name="ops", rpm=2), make_key("sk-open", name="free")
        redis.start()
        try:
            limiter = RedisRateLimiter(url, fail_open=False, down_s=5.0, clock=clock)
            assert await passes(limiter, limited)
            redis.stop()
            for _ in range(2):  # the first tries Redis; the second is refused without trying
                with pytest.raises(LimitsUnavailable, match=r"limits.fail_open: false.*retry in 5 s") as info:
                    await limiter.acquire_request(limited)
                assert info.value.retry_after_s == 5.0
            assert limiter.errors == 1
            assert await passes(limiter, free)  # nothing to check for a key without limits
            redis.start()  # empty: the outage forgot the key's state
            clock.now = 5.0
            assert [await passes(limiter, limited) for _ in range(3)] == [True, True, False]
            await limiter.close()
        finally:
            redis.stop()

    asyncio.run(main())


def test_make_rate_limiter_passes_fail_open_on() -> None:
    limiter = make_rate_limiter(LimitsConfig(url=f"redis://127.0.0.1:{free_port()}/0", fail_open=False))
    assert isinstance(limiter, RedisRateLimiter) and limiter._fail_open is False
    asyncio.run(limiter.close())
