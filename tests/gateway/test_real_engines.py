"""The gateway in front of real `seekserve serve` engines: a stream whose engine is killed mid-way
(SIGKILL, so its connection resets) goes on from another engine, and the client gets exactly the
text one uninterrupted engine gives, under the same chunk id.

Three engines on the tiny random Llama start at once (a few seconds). Each case takes the
uninterrupted answer straight from an engine, then runs a fresh in-process gateway over two live
engines and kills the one serving the stream after the client has read `KILL_AFTER_EVENTS` events;
the completions case leaves two engines alive for the chat case. Every engine is stopped
by its pid on teardown (`engines.py`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.engines import MODEL, Engine, running_engines
from gateway.harness import config_for, running_gateway

MAX_TOKENS = 200
"""Long enough that the engine is still generating when the kill lands (about 2 ms a token)."""
KILL_AFTER_EVENTS = 10
CONTINUED = 'seekserve:gateway_continued_streams_total{model="tiny",outcome="continued"} 1.0'


@pytest.fixture(scope="module")
def engines(llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Engine]]:
    with running_engines(llama_dir, tmp_path_factory.mktemp("engines"), 3) as started:
        yield started


def completion_body() -> dict[str, Any]:
    return {
        "model": MODEL, "prompt": "The capital of France is", "max_tokens": MAX_TOKENS, "temperature": 0,
        "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip


def chat_body() -> dict[str, Any]:
    return {
        "model": MODEL, "messages": [{"role": "user", "content": "Hello world! def main(): return 42"}],
        "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True, "stream": True,
    }  # fmt: skip


@dataclass
class Received:
    events: list[dict[str, Any]]
    done: bool
    backend: str = ""

    def text(self, field: str = "content") -> str:
        """Completions' `text`, or the chat deltas' `field` (content or reasoning_content), joined."""
        parts = []
        for event in self.events:
            for choice in event.get("choices") or ():
                parts.append(choice.get("text") or (choice.get("delta") or {}).get(field) or "")
        return "".join(parts)


def parse_line(line: bytes, received: Received) -> bool:
    """Add one SSE line's event to `received`; True when it was a JSON event."""
    if not line.startswith(b"data:"):
        return False
    payload = line[5:].strip()
    if payload == b"[DONE]":
        received.done = True
        return False
    received.events.append(json.loads(payload))
    return True


def uninterrupted(engine: Engine, path: str, body: dict[str, Any]) -> Received:
    received = Received([], False)
    with httpx.stream("POST", engine.url + path, json=body, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            parse_line(line.encode(), received)
    assert received.done
    return received


async def kill_mid_stream(pair: list[Engine], path: str, body: dict[str, Any]) -> tuple[Received, str]:
    """Stream `body` through a gateway over `pair`, SIGKILL the serving engine after KILL_AFTER_EVENTS
    events; the events received and the gateway's /metrics text."""
    config = config_for([e.url for e in pair])
    by_name = {f"b{i}": e for i, e in enumerate(pair)}
    async with running_gateway(config) as gw:
        assert {b.engine.value for b in gw.app.state.pool} == {"seekserve"}
        async with gw.client.post(gw.url + "/v1" + path, json=body) as response:
            assert response.status == 200
            received = Received([], False, response.headers["x-seekserve-backend"])
            async for line in response.content:
                if parse_line(line, received) and len(received.events) == KILL_AFTER_EVENTS:
                    victim = by_name[received.backend]
                    os.kill(victim.proc.pid, signal.SIGKILL)
                    victim.proc.wait(timeout=30)
        assert not by_name[received.backend].alive
        async with gw.client.get(gw.url + "/metrics") as metrics:
            return received, await metrics.text()


def check_continued(got: Received, metrics: str) -> None:
    assert got.done
    assert len(got.events) > KILL_AFTER_EVENTS
    assert not [e for e in got.events if "error" in e]
    assert {e["id"] for e in got.events} == {got.events[0]["id"]}
    assert all("token_ids" not in c for e in got.events for c in e.get("choices") or ())
    assert CONTINUED in metrics.splitlines()
    assert 'outcome="failed"' not in metrics and "gateway_retries_total{" not in metrics


def test_completion_stream_continues_exactly_when_its_engine_is_killed(engines: list[Engine]) -> None:
    want = uninterrupted(engines[2], "/completions", completion_body())
    got, metrics = asyncio.run(kill_mid_stream(engines[:2], "/completions", completion_body()))
    check_continued(got, metrics)
    assert got.text() == want.text() and len(want.text()) > 0
    assert got.events[0]["id"].startswith("cmpl-")
    assert {e["object"] for e in got.events} == {"text_completion"}
    assert want.events[-1]["usage"]["completion_tokens"] == MAX_TOKENS
    assert got.events[-1]["usage"] == want.events[-1]["usage"]


def test_chat_stream_continues_exactly_when_its_engine_is_killed(engines: list[Engine]) -> None:
    live = [e for e in engines if e.alive]
    assert len(live) == 2, "the completions case killed exactly one engine"
    want = uninterrupted(live[1], "/chat/completions", chat_body())
    got, metrics = asyncio.run(kill_mid_stream(live, "/chat/completions", chat_body()))
    check_continued(got, metrics)
    assert got.text("content") == want.text("content") and len(want.text("content")) > 0
    assert got.text("reasoning_content") == want.text("reasoning_content")
    assert got.events[0]["id"].startswith("chatcmpl-")
    assert {e["object"] for e in got.events} == {"chat.completion.chunk"}
    assert [c["finish_reason"] for e in got.events for c in e["choices"] if c.get("finish_reason")] == [
        "length"
    ]
