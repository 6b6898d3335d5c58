"""An engine restarted behind the gateway while requests wait in its queue: nothing is lost.

Two real `seekserve serve` engines (tiny random Llama, one sequence at a time, so requests queue
inside them) behind an in-process gateway. Six greedy completions (three streamed) go out at once;
when the victim engine holds at least one waiting request it is restarted on the same port:

    SIGTERM  a rolling restart: the engine stops taking connections, finishes what it holds, queued
             requests included, and exits; the gateway sends new requests to the other engine
    SIGKILL  a crash: its requests that had sent nothing are retried on the other engine, a stream
             that had begun goes on there (docs/gateway.md, "Streams that survive a dying backend")

Either way every request gets the exact text an uninterrupted engine gives, with no error, and once
the engine is back the gateway routes to it again.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.engines import MODEL, Engine, running_engines, stop, wait_ready
from gateway.harness import Running, config_for, read_sse, running_gateway, stream_text

NUM_REQUESTS = 6
MAX_TOKENS = 200
"""About a second per request on one thread: the victim's queue stays full long enough to see."""


@pytest.fixture(scope="module")
def engines(llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Engine]]:
    logs = tmp_path_factory.mktemp("restart")
    with running_engines(llama_dir, logs, 2, "--max-num-seqs", "1", "--enable-metrics") as started:
        yield started


def body(index: int) -> dict[str, Any]:
    return {
        "model": MODEL, "prompt": f"case {index}: the quick brown fox", "max_tokens": MAX_TOKENS,
        "temperature": 0, "ignore_eos": True, "stream": index % 2 == 0,
    }  # fmt: skip


@pytest.fixture(scope="module")
def expected(engines: list[Engine]) -> list[str]:
    """Each request's text straight from an engine, uninterrupted."""
    texts = []
    for i in range(NUM_REQUESTS):
        answer = httpx.post(f"{engines[0].url}/completions", json={**body(i), "stream": False}, timeout=60)
        texts.append(answer.json()["choices"][0]["text"])
    return texts


def num_waiting(engine: Engine) -> float:
    try:
        text = httpx.get(f"{engine.root}/metrics", timeout=5).text
    except httpx.TransportError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("seekserve:num_requests_waiting{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def complete(gw: Running, index: int) -> tuple[str, str]:
    """The request's text and the backend that answered it; fails on anything but a whole answer."""
    status, headers, data = await gw.post("/v1/completions", body(index))
    assert status == 200, data[:500]
    backend = headers["x-seekserve-backend"]
    if not body(index)["stream"]:
        answer = json.loads(data)
        assert answer["choices"][0]["finish_reason"] == "length"
        return str(answer["choices"][0]["text"]), backend
    events, done = read_sse(data)
    assert done and not [e for e in events if "error" in e], data[-500:]
    return stream_text(events), backend


def restart_when_queued(victim: Engine, sig: signal.Signals) -> None:
    """Restart `victim` (same command, same port) once it holds a waiting request."""
    for _ in range(2000):
        if num_waiting(victim) >= 1:
            break
    else:
        raise AssertionError("the victim engine never held a waiting request")
    stop(victim, sig)
    victim.restart()
    wait_ready(victim)


async def routed_to(gw: Running, name: str) -> bool:
    """Whether one of up to 30 short requests is answered by backend `name`."""
    for _ in range(30):
        status, headers, _ = await gw.post("/v1/completions", {**body(0), "max_tokens": 2, "stream": False})
        assert status == 200
        if headers["x-seekserve-backend"] == name:
            return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_an_engine_restarted_while_requests_queue_loses_nothing(
    engines: list[Engine], expected: list[str], sig: signal.Signals
) -> None:
    victim = engines[0]

    async def main() -> tuple[list[tuple[str, str]], str]:
        config = config_for([e.url for e in engines])
        async with running_gateway(config) as gw:
            answers = [asyncio.create_task(complete(gw, i)) for i in range(NUM_REQUESTS)]
            await asyncio.to_thread(restart_when_queued, victim, sig)
            results = await asyncio.gather(*answers)
            metrics = gw.app.metrics.render().decode()
            await gw.checker.check_all()
            assert {b.name: b.healthy for b in gw.app.state.pool} == {"b0": True, "b1": True}
            assert await routed_to(gw, "b0")
            return results, metrics

    results, metrics = asyncio.run(main())
    assert [text for text, _ in results] == expected
    if sig is signal.SIGTERM:  # the victim held a running and a waiting request, and finished them
        assert [backend for _, backend in results].count("b0") >= 2
    else:  # what the victim held was retried or continued on the other engine
        assert sum_of(metrics, "retries_total") + sum_of(metrics, "continued_streams_total") >= 2


def sum_of(metrics: str, name: str) -> float:
    prefix = f"seekserve:gateway_{name}{{"
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix))
