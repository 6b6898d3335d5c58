"""The gateway end to end against fake engines: routing through, retries, fallback, continued streams."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.fake_upstream import FakeEngine, Faults, detok, generate, running, tokenize
from gateway.harness import config_for, read_sse, running_gateway, stream_text

PROMPT = "the quick brown fox jumps over the lazy dog"


def completion(max_tokens: int = 12, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": "fake",
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        **extra,
    }


def expected_text(max_tokens: int = 12) -> str:
    return detok(generate(tokenize(PROMPT), max_tokens))


def test_non_streaming_passes_through() -> None:
    async def main() -> None:
        a = FakeEngine("a")
        async with running(a), running_gateway(config_for([a.url])) as gw:
            status, headers, body = await gw.post("/v1/completions", completion())
            assert status == 200
            assert headers["x-seekserve-backend"] == "b0"
            assert gw.app.state.pool.backends["b0"].in_flight == 0
            assert a.requests[0]["prompt"] == PROMPT and "return_token_ids" not in a.requests[0]
            import json

            assert json.loads(body)["choices"][0]["text"] == expected_text()

    asyncio.run(main())


def test_retry_before_first_byte_goes_to_another_backend() -> None:
    async def main() -> None:
        a, b = FakeEngine("a", faults=Faults(statuses=[503])), FakeEngine("b", faults=Faults(statuses=[503]))
        async with running(a, b), running_gateway(config_for([a.url, b.url])) as gw:
            status, _headers, _ = await gw.post("/v1/completions", completion())
            assert status == 200
            # one of the two failed first, the other failed too (each had one 503), the third try succeeded
            assert len(a.requests) + len(b.requests) == 3

    asyncio.run(main())


def test_client_error_is_passed_on_without_retry() -> None:
    async def main() -> None:
        a = FakeEngine("a", faults=Faults(statuses=[400]))
        async with running(a), running_gateway(config_for([a.url])) as gw:
            status, _, body = await gw.post("/v1/completions", completion())
            assert status == 400 and b"injected 400" in body
            assert len(a.requests) == 1

    asyncio.run(main())


def test_fallback_model_when_every_backend_fails() -> None:
    async def main() -> None:
        big = FakeEngine("big", model="big", faults=Faults(statuses=[503] * 10))
        small = FakeEngine("small", model="small")
        config = config_for([big.url, small.url], models={"big": {"fallback": ["small"]}})
        async with running(big, small), running_gateway(config) as gw:
            status, headers, body = await gw.post("/v1/completions", {**completion(), "model": "big"})
            assert status == 200, body
            assert headers["x-seekserve-fallback"] == "small"
            assert b'"model": "small"' in body
            assert small.requests[0]["model"] == "small"

    asyncio.run(main())


def test_stream_cut_midway_continues_exactly_on_another_backend() -> None:
    async def main() -> None:
        a, b = FakeEngine("a", faults=Faults(cut_after=5)), FakeEngine("b")
        backends = [{"name": "a", "url": a.url, "weight": 1e6}, {"name": "b", "url": b.url, "weight": 1e-6}]
        config = config_for([], models={"fake": {"routing": "weighted"}}, backends=backends)
        async with running(a, b), running_gateway(config) as gw:
            status, _, body = await gw.post("/v1/completions", completion(max_tokens=12, stream=True))
            events, done = read_sse(body)
            assert status == 200 and done
            assert stream_text(events) == expected_text(12)
            assert all("token_ids" not in c for e in events for c in e["choices"])
            assert {e["id"] for e in events} == {"a-1"}
            cont = b.requests[0]
            prompt_ids = tokenize(PROMPT)
            assert cont["prompt"] == prompt_ids + generate(prompt_ids, 12)[:5]
            assert cont["max_tokens"] == 7

    asyncio.run(main())


def test_chat_stream_stall_continues_through_completions() -> None:
    async def main() -> None:
        a, b = FakeEngine("a", faults=Faults(stall_after=4)), FakeEngine("b")
        backends = [{"name": "a", "url": a.url, "weight": 1e6}, {"name": "b", "url": b.url, "weight": 1e-6}]
        config = config_for(
            [], backends=backends, models={"fake": {"routing": "weighted"}}, timeouts={"inter_token_s": 0.3}
        )
        chat = {
            "model": "fake",
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 10,
            "stream": True,
        }
        async with running(a, b), running_gateway(config) as gw:
            status, _, body = await gw.post("/v1/chat/completions", chat)
            events, done = read_sse(body)
            assert status == 200 and done
            from gateway.fake_upstream import chat_prompt

            assert stream_text(events) == detok(generate(chat_prompt(chat["messages"]), 10))
            assert all(e["object"] == "chat.completion.chunk" for e in events)
            assert b.requests[0]["prompt"][-4:] == generate(chat_prompt(chat["messages"]), 10)[:4]

    asyncio.run(main())


def test_stream_that_cannot_continue_ends_with_an_error_event() -> None:
    async def main() -> None:
        a = FakeEngine("a", faults=Faults(cut_after=3))
        async with running(a), running_gateway(config_for([a.url])) as gw:
            status, _, body = await gw.post("/v1/completions", completion(stream=True))
            events, done = read_sse(body)
            assert status == 200 and not done
            assert events[-1]["error"]["code"] == "upstream_failed"
            assert stream_text(events[:-1]) == expected_text(12)[: len(stream_text(events[:-1]))]

    asyncio.run(main())


def test_client_leaving_mid_stream_releases_the_backend() -> None:
    async def main() -> None:
        a = FakeEngine("a", faults=Faults(itl_s=0.05))
        async with running(a), running_gateway(config_for([a.url])) as gw:
            async with gw.client.post(
                gw.url + "/v1/completions", json=completion(max_tokens=200, stream=True)
            ) as response:
                await response.content.readline()
            for _ in range(100):
                if gw.app.state.pool.backends["b0"].in_flight == 0:
                    break
                await asyncio.sleep(0.02)
            assert gw.app.state.pool.backends["b0"].in_flight == 0

    asyncio.run(main())


def test_open_circuit_sends_traffic_elsewhere_and_keeps_its_cooldown() -> None:
    async def main() -> None:
        a, b = FakeEngine("a", faults=Faults(statuses=[502] * 100)), FakeEngine("b")
        config = config_for(
            [a.url, b.url],
            breaker={"consecutive_failures": 2, "cooldown_s": 60},
            retry={"attempts": 2, "base_s": 0.001, "max_s": 0.001},
        )
        async with running(a, b), running_gateway(config) as gw:
            for _ in range(10):
                status, _, _ = await gw.post("/v1/completions", completion())
            breaker = gw.app.state.pool.backends["b0"].breaker
            assert breaker.state.value == "open"
            remaining = breaker.cooldown_remaining_s()
            for _ in range(10):
                status, headers, _ = await gw.post("/v1/completions", completion())
                assert status == 200 and headers["x-seekserve-backend"] == "b1"
            assert len(a.requests) <= 2 + 1
            assert breaker.cooldown_remaining_s() <= remaining

    asyncio.run(main())


def test_cache_answers_repeats_and_replays_them_as_streams() -> None:
    async def main() -> None:
        a = FakeEngine("a")
        async with running(a), running_gateway(config_for([a.url], cache={"backend": "memory"})) as gw:
            first = await gw.post("/v1/completions", completion())
            again = await gw.post("/v1/completions", completion())
            assert len(a.requests) == 1
            assert again[1]["x-seekserve-cache"] == "hit" and "x-seekserve-cache" not in first[1]
            status, headers, body = await gw.post("/v1/completions", completion(stream=True))
            events, done = read_sse(body)
            assert status == 200 and done and headers["x-seekserve-cache"] == "hit"
            assert stream_text(events) == expected_text() and len(a.requests) == 1
            opted_out = await gw.post("/v1/completions", completion(), **{"Cache-Control": "no-cache"})
            assert opted_out[0] == 200 and len(a.requests) == 2
            sampled = completion(temperature=0.7)
            await gw.post("/v1/completions", sampled)
            await gw.post("/v1/completions", sampled)
            assert len(a.requests) == 4  # sampled answers are never cached

    asyncio.run(main())


def test_keys_models_and_request_limits_at_the_edge() -> None:
    import hashlib

    def sha(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    keys = [
        {"name": "team", "key_sha256": sha("sk-team"), "rpm": 2},
        {"name": "other", "key_sha256": sha("sk-other"), "models": ["lite"]},
    ]

    async def main() -> None:
        a = FakeEngine("a")
        async with running(a), running_gateway(config_for([a.url], keys=keys)) as gw:
            assert (await gw.post("/v1/completions", completion()))[0] == 401
            assert (await gw.post("/v1/completions", completion(), Authorization="Bearer sk-wrong"))[0] == 401
            assert (await gw.post("/v1/completions", completion(), Authorization="Bearer sk-other"))[0] == 403
            statuses = [
                (await gw.post("/v1/completions", completion(), Authorization="Bearer sk-team"))
                for _ in range(3)
            ]
            assert [s for s, _, _ in statuses] == [200, 200, 429]
            assert int(statuses[2][1]["Retry-After"]) >= 1
            assert len(a.requests) == 2

    asyncio.run(main())


def test_client_leaving_before_the_first_event_cancels_the_upstream_request() -> None:
    async def main() -> None:
        a = FakeEngine("a", faults=Faults(first_delay_s=3.0))
        async with running(a), running_gateway(config_for([a.url])) as gw:
            request = asyncio.ensure_future(gw.post("/v1/completions", completion(stream=True)))
            backend = gw.app.state.pool.backends["b0"]
            while not a.requests:
                await asyncio.sleep(0.01)
            assert backend.in_flight == 1
            request.cancel()  # the client closes its connection while the backend is still silent
            for _ in range(50):
                if backend.in_flight == 0:
                    break
                await asyncio.sleep(0.02)
            assert backend.in_flight == 0  # released within a second, not after the 3 s first event

    asyncio.run(main())


def test_backends_held_back_by_their_circuits_answer_503_with_when_to_retry() -> None:
    """Both engines answer 429 with Retry-After: 30 (a full queue): their circuits are held open, and
    the next request is refused at once with 503 and the time until the first reopens, not a 502."""

    async def main() -> None:
        a = FakeEngine("a", faults=Faults(statuses=[429], retry_after="30"))
        b = FakeEngine("b", faults=Faults(statuses=[429], retry_after="30"))
        async with running(a, b), running_gateway(config_for([a.url, b.url])) as gw:
            first = await gw.post("/v1/completions", completion())
            assert first[0] == 429 and first[1]["Retry-After"] == "30"
            status, headers, data = await gw.post("/v1/completions", completion())
            assert status == 503 and 29 <= int(headers["Retry-After"]) <= 30
            error = json.loads(data)["error"]
            assert error["code"] == "upstream_unavailable" and "has its circuit open" in error["message"]
            assert len(a.requests) + len(b.requests) == 2  # the second request reached no engine

    asyncio.run(main())
