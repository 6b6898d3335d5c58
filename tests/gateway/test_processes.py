"""Gateway processes (`python -m seekserve gateway --config FILE`) in front of fake engines.

Two replicas share rate limits through Redis and a response cache through Redis or Memcached; one
replica reloads its file on SIGHUP without breaking a running stream; requests keep flowing while
their Redis is stopped and started again, its limits failing open or closed as configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.fake_upstream import FakeEngine, Faults, chat_prompt, detok, generate, tokenize
from gateway.harness import read_sse, stream_text
from gateway.processes import engines_in_thread, gateway_config, gateway_processes, post, upstream_gateway
from gateway.services import redis_service

PROMPT = "the quick brown fox jumps over the lazy dog"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def completion(prompt: str = PROMPT, max_tokens: int = 8, **extra: Any) -> dict[str, Any]:
    return {"model": "fake", "prompt": prompt, "max_tokens": max_tokens, **extra}


def backend(engine: FakeEngine) -> dict[str, Any]:
    return {"name": engine.name, "url": engine.url, "models": [engine.model]}


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 10.0) -> None:
    """Await `check()` every 20 ms until it is true; fail naming `what` after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.02)


@dataclass
class Pair:
    """Two gateway replicas with one config, in front of one fake engine."""

    urls: list[str]
    engine: FakeEngine
    headers: dict[str, str]
    """What every request sends (the key of a keyed config)."""


LIMITED_KEY, FREE_KEY = "sk-limited", "sk-free"


@contextmanager
def replicas(tmp_path: Path, headers: dict[str, str], **sections: Any) -> Iterator[Pair]:
    engine = FakeEngine("a")
    config = gateway_config([backend(engine)], **sections)
    with engines_in_thread(engine), gateway_processes([config, config], tmp_path) as gateways:
        yield Pair([gw.url for gw in gateways], engine, headers)


@pytest.fixture(scope="module")
def redis_pair(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Replicas sharing rate limits and the response cache through one Redis; LIMITED_KEY has rpm 10."""
    keys = [
        {"name": "limited", "key_sha256": sha256(LIMITED_KEY), "rpm": 10},
        {"name": "free", "key_sha256": sha256(FREE_KEY)},
    ]
    sections = {"limits": {"url": redis_url}, "cache": {"backend": "redis", "url": redis_url}, "keys": keys}
    with replicas(tmp_path_factory.mktemp("redis"), bearer(FREE_KEY), **sections) as pair:
        yield pair


@pytest.fixture(scope="module")
def memcached_pair(memcached_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Replicas sharing the response cache through one Memcached; no keys."""
    cache = {"backend": "memcached", "url": memcached_url}
    with replicas(tmp_path_factory.mktemp("memcached"), {}, cache=cache) as pair:
        yield pair


def test_two_gateways_share_one_rpm_budget_through_redis(redis_pair: Pair) -> None:
    pair = redis_pair
    sent_before = len(pair.engine.requests)

    async def burst() -> list[tuple[int, dict[str, str], bytes]]:
        async with aiohttp.ClientSession() as client:
            return await asyncio.gather(
                *(
                    post(client, pair.urls[i % 2] + "/v1/completions", completion(), **bearer(LIMITED_KEY))
                    for i in range(30)
                )
            )

    results = asyncio.run(burst())
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 10 and statuses.count(429) == 20
    assert len(pair.engine.requests) - sent_before == 10
    for status, headers, body in results:
        if status == 429:
            # the 11th request passes 6 s (60 s / rpm) after the burst began: the wait is 1..6 s
            assert 1 <= int(headers["Retry-After"]) <= 6, headers
            assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("replicas_of", ["redis_pair", "memcached_pair"])
def test_a_cached_answer_of_one_gateway_is_a_hit_on_the_other(
    replicas_of: str, request: pytest.FixtureRequest
) -> None:
    pair: Pair = request.getfixturevalue(replicas_of)
    gw1, gw2 = pair.urls
    engine = pair.engine
    whole = completion(prompt=f"{replicas_of} {PROMPT}", max_tokens=10, temperature=0)
    messages = [{"role": "user", "content": f"{replicas_of} stream {PROMPT}"}]
    chat = {"model": "fake", "messages": messages, "max_tokens": 10, "temperature": 0, "stream": True}

    async def main(client: aiohttp.ClientSession) -> None:
        sent = len(engine.requests)
        status, headers, first = await post(client, gw1 + "/v1/completions", whole)
        assert status == 200 and "x-seekserve-cache" not in headers
        assert json.loads(first)["choices"][0]["text"] == detok(generate(tokenize(whole["prompt"]), 10))
        status, headers, again = await post(client, gw2 + "/v1/completions", whole)
        assert status == 200 and headers["x-seekserve-cache"] == "hit"
        assert json.loads(again) == json.loads(first)
        assert len(engine.requests) == sent + 1

        expected = detok(generate(chat_prompt(messages), 10))
        status, headers, streamed = await post(client, gw1 + "/v1/chat/completions", chat)
        events, done = read_sse(streamed)
        assert status == 200 and done and "x-seekserve-cache" not in headers
        assert stream_text(events) == expected
        assert len(engine.requests) == sent + 2
        status, headers, replayed = await post(client, gw2 + "/v1/chat/completions", chat)
        events, done = read_sse(replayed)
        assert status == 200 and headers["x-seekserve-cache"] == "hit"
        assert done and stream_text(events) == expected
        assert all(e["object"] == "chat.completion.chunk" for e in events)
        status, headers, body = await post(client, gw2 + "/v1/chat/completions", {**chat, "stream": False})
        assert status == 200 and headers["x-seekserve-cache"] == "hit"
        assert json.loads(body)["choices"][0]["message"]["content"] == expected
        assert len(engine.requests) == sent + 2

    async def with_client() -> None:
        async with aiohttp.ClientSession(headers=pair.headers) as client:
            await main(client)

    asyncio.run(with_client())


def test_sighup_reloads_the_file_and_running_streams_finish(tmp_path: Path) -> None:
    a = FakeEngine("a", faults=Faults(itl_s=0.025))
    b = FakeEngine("b", model="other")
    old_key, new_key = "sk-old", "sk-new"
    before = gateway_config([backend(a)], keys=[{"name": "old", "key_sha256": sha256(old_key)}])
    after = gateway_config([backend(a), backend(b)], keys=[{"name": "new", "key_sha256": sha256(new_key)}])
    other = {**completion(max_tokens=2), "model": "other"}

    async def main(url: str, reload: Callable[[dict[str, Any]], None]) -> None:
        async with aiohttp.ClientSession() as client:

            async def served(key: str, body: dict[str, Any]) -> int:
                status, _, _ = await post(client, url + "/v1/completions", body, **bearer(key))
                return status

            assert await served(old_key, other) == 404
            assert await served(new_key, completion(max_tokens=2)) == 401
            long = completion(max_tokens=80, stream=True, temperature=0)
            async with client.post(url + "/v1/completions", json=long, headers=bearer(old_key)) as response:
                assert response.status == 200
                head = await response.content.readline()
                reload(after)

                async def new_config_in_force() -> bool:
                    return await served(new_key, other) == 200

                await until(new_config_in_force, "the reloaded config (new key, backend b)")
                assert not response.content.at_eof(), "the stream ended before the reload: lengthen it"
                tail = await response.read()
            events, done = read_sse(head + tail)
            assert done and stream_text(events) == detok(generate(tokenize(PROMPT), 80))
            assert await served(old_key, completion(max_tokens=2)) == 401
            assert await served(new_key, completion(max_tokens=2)) == 200
            async with client.get(url + "/health") as response:
                assert sorted((await response.json())["backends"]) == ["a", "b"]

    with engines_in_thread(a, b), gateway_processes([before], tmp_path) as (gw,):
        asyncio.run(main(gw.url, gw.reload))
        assert f"reloaded {gw.config_path}: 2 backends, 1 keys" in gw.log()
        assert len(b.requests) == 1, "the first request the new key may make"

        gw.reload({**before, "bogus_section": 1})

        async def still_serving(url: str) -> None:
            async def failure_logged() -> bool:
                return "failed, the running configuration stays" in gw.log()

            await until(failure_logged, "the reload error in the gateway's log")
            async with aiohttp.ClientSession() as client:
                status, headers, _ = await post(client, url + "/v1/completions", other, **bearer(new_key))
                assert status == 200 and headers["x-seekserve-backend"] == "b"
                status, _, _ = await post(client, url + "/v1/completions", other, **bearer(old_key))
                assert status == 401

        asyncio.run(still_serving(gw.url))
        path = gw.config_path
        assert (
            f"reload of {path} failed, the running configuration stays: "
            f"{path}: bogus_section: Extra inputs are not permitted"
        ) in gw.log()
        assert len(b.requests) == 2
        assert gw.process.poll() is None


def test_upstream_flags_alone_serve_the_discovered_models(tmp_path: Path) -> None:
    a, b = FakeEngine("a"), FakeEngine("b", model="other", owned_by="seekserve")

    async def main(url: str) -> None:
        async with aiohttp.ClientSession() as client:
            async with client.get(url + "/v1/models") as response:
                assert [m["id"] for m in (await response.json())["data"]] == ["fake", "other"]
            status, headers, body = await post(client, url + "/v1/completions", completion(max_tokens=3))
            assert status == 200 and headers["x-seekserve-backend"] == "upstream0"
            assert json.loads(body)["choices"][0]["text"] == detok(generate(tokenize(PROMPT), 3))
            other = {**completion(max_tokens=3), "model": "other"}
            status, headers, _ = await post(client, url + "/v1/completions", other, **{"x-request-id": "r-1"})
            assert status == 200 and headers["x-seekserve-backend"] == "upstream1"
            async with client.get(url + "/health") as response:
                health = await response.json()
            assert response.status == 200 and health["status"] == "ok"
            assert {name: state["models"] for name, state in health["backends"].items()} == {
                "upstream0": ["fake"],
                "upstream1": ["other"],
            }

    with engines_in_thread(a, b), upstream_gateway([a.url, b.url], tmp_path) as gw:
        asyncio.run(main(gw.url))
        access = [json.loads(line) for line in (tmp_path / "gateway0.out").read_text().splitlines()]
    assert [(r["path"], r["status"], r["model"], r["backend"]) for r in access] == [
        ("/v1/completions", 200, "fake", "upstream0"),
        ("/v1/completions", 200, "other", "upstream1"),
    ]
    assert access[1]["request_id"] == "r-1"


def test_web_search_warms_up_before_the_port_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local provider's index is built at start, not on the first searching request."""
    monkeypatch.setenv("SEEKSERVE_HOME", str(tmp_path / "home"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.md").write_text("# Ferry\n\nThe ferry leaves at seven.\n")
    engine = FakeEngine("a")
    config = gateway_config([backend(engine)], search={"web_search": "on", "search_dir": str(docs)})
    with engines_in_thread(engine), gateway_processes([config], tmp_path):
        [index] = (tmp_path / "home" / "search" / "local").iterdir()
        assert index.is_dir() and any(index.iterdir())


def test_requests_flow_while_redis_is_down_and_limits_fail_open_or_closed_as_configured(
    tmp_path: Path,
) -> None:
    """Two gateways share one Redis for the cache and the limits; the second has `fail_open: false`.
    While Redis is stopped every request of the free key is answered (the cache misses), the limited
    key (rpm 3) passes unlimited through the first and gets 503 from the second; once Redis is back
    (empty, on the same port) the cache stores and hits again and the limit holds again."""
    redis = redis_service()
    url = f"redis://127.0.0.1:{redis.port}/0"
    engine = FakeEngine("a")
    keys = [
        {"name": "limited", "key_sha256": sha256(LIMITED_KEY), "rpm": 3},
        {"name": "free", "key_sha256": sha256(FREE_KEY)},
    ]
    configs = [
        gateway_config(
            [backend(engine)], keys=keys, cache={"backend": "redis", "url": url}, limits={"url": url, **extra}
        )
        for extra in ({}, {"fail_open": False})
    ]

    async def statuses(client: aiohttp.ClientSession, gw: str, key: str, count: int) -> list[int]:
        body = completion(prompt=f"limited {count}")
        return [(await post(client, gw + "/v1/completions", body, **bearer(key)))[0] for _ in range(count)]

    async def cache_results(client: aiohttp.ClientSession, gw: str, prompt: str) -> list[str]:
        """The x-seekserve-cache header of the same deterministic request sent twice ("-": none)."""
        body = completion(prompt=prompt, temperature=0)
        seen = []
        for _ in range(2):
            status, headers, _ = await post(client, gw + "/v1/completions", body, **bearer(FREE_KEY))
            assert status == 200
            seen.append(headers.get("x-seekserve-cache", "-"))
        return seen

    async def main(opened: str, closed: str) -> None:
        async with aiohttp.ClientSession() as client:
            assert await cache_results(client, opened, "before") == ["-", "hit"]
            redis.stop()
            assert await cache_results(client, opened, "during") == ["-", "-"]
            assert await statuses(client, opened, LIMITED_KEY, 5) == [200] * 5
            status, headers, body = await post(
                client, closed + "/v1/completions", completion(), **bearer(LIMITED_KEY)
            )
            error = json.loads(body)["error"]
            assert (status, error["code"], headers["Retry-After"]) == (503, "rate_limits_unavailable", "1")
            assert "limits.fail_open: false" in error["message"]
            assert await statuses(client, closed, FREE_KEY, 3) == [200] * 3
            redis.start()
            await asyncio.sleep(1.1)  # both skip Redis for a second after a failure
            assert await cache_results(client, opened, "after") == ["-", "hit"]
            assert await statuses(client, closed, LIMITED_KEY, 4) == [200, 200, 200, 429]

    redis.start()
    try:
        with engines_in_thread(engine), gateway_processes(configs, tmp_path) as gateways:
            asyncio.run(main(gateways[0].url, gateways[1].url))
            logs = [gw.log() for gw in gateways]
    finally:
        redis.stop()
    assert "requests of limited keys pass without rpm/tpm limits" in logs[0]
    assert "requests of limited keys are refused with 503" in logs[1]
    assert "answering without the cache" in logs[0]
