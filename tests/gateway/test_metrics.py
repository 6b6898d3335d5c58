"""GET /metrics after known traffic: every series parsed back and checked sample by sample."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.fake_upstream import FakeEngine, Faults, running
from gateway.harness import Running, config_for, read_sse, running_gateway

PREFIX = "seekserve:gateway_"


def series(text: str, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples named PREFIX + `name`, keyed by the values of `labels` in that order."""
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == PREFIX + name:
                assert set(sample.labels) == set(labels), sample
                found[tuple(sample.labels[label] for label in labels)] = sample.value
    return found


def completion(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "prompt": "one two three", "max_tokens": 4, **extra}


async def traffic(gw: Running) -> list[int]:
    """Three requests to `fake` answered upstream (one streamed), two cache hits of the first (one
    streamed), `flaky` answered after one retry, `broken` failing twice, then refused by its open circuit."""
    statuses = []
    for body in (
        completion("fake", temperature=0),
        completion("fake", temperature=0),
        completion("fake", temperature=0, stream=True),
        completion("fake"),
        completion("fake", stream=True),
        completion("flaky"),
        completion("broken"),
        completion("broken"),
    ):
        status, _, data = await gw.post("/v1/completions", body)
        if body.get("stream"):
            assert read_sse(data)[1], data
        statuses.append(status)
    return statuses


def test_metrics_count_requests_retries_circuits_and_cache() -> None:
    async def main() -> None:
        good = FakeEngine("good")
        flaky = FakeEngine("flaky", model="flaky", faults=Faults(statuses=[503]))
        bad = FakeEngine("bad", model="broken", faults=Faults(statuses=[502] * 10))
        config = config_for(
            [],
            backends=[{"name": e.name, "url": e.url} for e in (good, flaky, bad)],
            cache={"backend": "memory"},
            breaker={"consecutive_failures": 2, "cooldown_s": 60},
        )
        async with running(good, flaky, bad), running_gateway(config) as gw:
            assert await traffic(gw) == [200, 200, 200, 200, 200, 200, 502, 503]
            async with gw.client.get(gw.url + "/metrics") as response:
                assert response.status == 200
                assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
                text = await response.text()
        assert len(bad.requests) == 2
        assert series(text, "requests_total", "model", "backend", "code") == {
            ("fake", "good", "200"): 3.0,
            ("fake", "-", "200"): 2.0,
            ("flaky", "flaky", "200"): 1.0,
            ("broken", "-", "502"): 1.0,
            ("broken", "-", "503"): 1.0,
        }
        latency = series(text, "e2e_request_latency_seconds_count", "model", "backend")
        assert latency == {
            ("fake", "good"): 3.0,
            ("fake", "-"): 2.0,
            ("flaky", "flaky"): 1.0,
            ("broken", "-"): 2.0,
        }
        assert series(text, "time_to_first_token_seconds_count", "model", "backend") == {
            ("fake", "good"): 1.0
        }
        assert series(text, "retries_total", "model", "backend", "reason") == {
            ("flaky", "flaky", "503"): 1.0,
            ("broken", "bad", "502"): 1.0,
        }
        assert series(text, "cache_requests_total", "result") == {("miss",): 1.0, ("hit",): 2.0}
        assert series(text, "circuit_state", "backend") == {("good",): 0.0, ("flaky",): 0.0, ("bad",): 2.0}
        assert series(text, "backend_in_flight", "backend") == {
            ("good",): 0.0,
            ("flaky",): 0.0,
            ("bad",): 0.0,
        }
        assert series(text, "backend_healthy", "backend") == {("good",): 1.0, ("flaky",): 1.0, ("bad",): 1.0}
        assert series(text, "queue_waiting") == {(): 0.0}
        assert series(text, "fallbacks_total", "model", "fallback") == {}
        assert series(text, "shed_requests_total", "priority") == {}
        assert series(text, "python_threads") == {(): float(threading.active_count())}
        (tasks,) = series(text, "event_loop_tasks").values()
        assert tasks >= 2  # this test's own task and the server's

    asyncio.run(main())


def test_metrics_count_fallbacks_and_rate_limits() -> None:
    """`big` always answers 503 and falls back to `small`; with one attempt per model nothing is retried."""
    key = "sk-metrics"

    async def main() -> None:
        big = FakeEngine("big", model="big", faults=Faults(statuses=[503] * 10))
        small = FakeEngine("small", model="small")
        config = config_for(
            [big.url, small.url],
            models={"big": {"fallback": ["small"]}},
            retry={"attempts": 1, "base_s": 0.001, "max_s": 0.001},
            keys=[{"name": "team", "key_sha256": hashlib.sha256(key.encode()).hexdigest(), "rpm": 2}],
        )
        auth = {"Authorization": f"Bearer {key}"}
        async with running(big, small), running_gateway(config) as gw:
            statuses = [(await gw.post("/v1/completions", completion("big"), **auth))[0] for _ in range(3)]
            assert statuses == [200, 200, 429]
            async with gw.client.get(gw.url + "/metrics") as response:
                text = await response.text()
        assert series(text, "fallbacks_total", "model", "fallback") == {("big", "small"): 2.0}
        assert series(text, "rate_limited_total", "key", "limit") == {("team", "rpm"): 1.0}
        assert series(text, "requests_total", "model", "backend", "code") == {("small", "b1", "200"): 2.0}
        assert series(text, "retries_total", "model", "backend", "reason") == {}

    asyncio.run(main())
