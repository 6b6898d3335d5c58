"""A hostile backend: whatever bytes it streams or answers, the gateway's client gets a well-formed reply.

`sse_events` is fed random SSE bodies in random pieces over loopback and must give exactly the
`data:` payloads a line split gives, up to `[DONE]`, or StreamBroken; a line that never ends is cut
at 8 MiB. Through a real gateway process, a backend streaming random events (valid chunks, JSON of
the wrong shape, bytes that are not JSON) must leave the client a 200 stream of JSON events ending
in `[DONE]` or an OpenAI error event, or an OpenAI error reply; a backend answering random bodies
(with the cache and a tokens-per-minute limit reading them) must never make the gateway fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import budget
from gateway.fake_upstream import FakeEngine
from gateway.processes import GatewayProcess, engines_in_thread, gateway_config, gateway_processes
from seekserve.gateway.backends import Backend
from seekserve.gateway.breaker import CircuitBreaker
from seekserve.gateway.config import BackendConfig, BreakerConfig, TimeoutConfig
from seekserve.gateway.upstream import StreamBroken, open_session, send, sse_events
from server.live import assert_openai_error

TIMEOUTS = TimeoutConfig(connect_s=2, first_byte_s=2, inter_token_s=2)
KEY = "fuzz-key-1234"


@dataclass
class HostileEngine(FakeEngine):
    """Answers every completion request with `pieces`, written one by one, then closes."""

    pieces: list[bytes] = field(default_factory=list)
    streaming: bool = True

    async def _answer(
        self, request: web.Request, body: dict[str, Any], prompt_ids: list[int], chat: bool
    ) -> web.StreamResponse:
        kind = "text/event-stream" if self.streaming else "application/json"
        response = web.StreamResponse(headers={"Content-Type": kind})
        await response.prepare(request)
        for piece in self.pieces:
            await response.write(piece)
        await response.write_eof()
        return response


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def reference(data: bytes) -> tuple[list[bytes], bool]:
    """The payloads of the complete `data:` lines up to [DONE], and whether [DONE] came."""
    lines = data.split(b"\n")[:-1]  # the last piece has no newline yet: never read as a line
    payloads = [line[5:].strip() for line in lines if line.startswith(b"data:")]
    if b"[DONE]" in payloads:
        return payloads[: payloads.index(b"[DONE]")], True
    return payloads, False


async def read_events(engine: HostileEngine) -> tuple[list[bytes], StreamBroken | None]:
    backend = Backend(BackendConfig(name="hostile", url=engine.url), CircuitBreaker(BreakerConfig()))
    got: list[bytes] = []
    async with open_session(TIMEOUTS) as session:
        response = await send(session, backend, "/completions", b'{"prompt": "x"}', TIMEOUTS)
        try:
            async for batch in sse_events(response, backend, TIMEOUTS):
                got.extend(batch)
        except StreamBroken as exc:
            return got, exc
    return got, None


LINES = st.one_of(
    st.sampled_from([b"data: [DONE]", b"data:[DONE]", b": keep-alive", b"", b"event: x", b"data:", b"\r"]),
    st.binary(max_size=20).map(lambda b: b"data: " + b.replace(b"\n", b"")),
    st.binary(max_size=12),
)
BODIES = st.lists(LINES, max_size=12).map(lambda lines: b"\n".join(lines)) | st.binary(max_size=64)


@pytest.fixture(scope="module")
def hostile_engine() -> Iterator[HostileEngine]:
    with engines_in_thread(HostileEngine("hostile")) as (engine,):
        yield engine


@budget(120)
@given(body=BODIES, cuts=st.lists(st.integers(0, 80), max_size=6))
def test_sse_events_gives_the_data_lines_up_to_done_or_stream_broken(
    hostile_engine: HostileEngine, body: bytes, cuts: list[int]
) -> None:
    hostile_engine.pieces = split(body, cuts)
    got, broken = asyncio.run(read_events(hostile_engine))
    expected, done = reference(body)
    assert got == expected
    assert (broken is None) == done, broken


def test_a_line_that_never_ends_is_cut_at_8_mib(hostile_engine: HostileEngine) -> None:
    hostile_engine.pieces = [b"data: " + b"x" * (1 << 20)] * 9
    got, broken = asyncio.run(read_events(hostile_engine))
    assert got == [] and broken is not None
    assert "an event line runs past 8388608 bytes without ending" in str(broken)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
CHOICE = st.fixed_dictionaries(
    {},
    optional={
        "index": st.integers(-1, 2) | JSON,
        "delta": st.fixed_dictionaries({}, optional={"content": st.text(max_size=4) | JSON, "role": JSON}),
        "text": st.text(max_size=4) | JSON,
        "finish_reason": st.sampled_from([None, "stop", "length"]) | JSON,
        "token_ids": st.lists(st.integers(0, 9), max_size=3) | JSON,
        "logprobs": JSON,
    },
)
CHUNK = st.fixed_dictionaries(
    {"choices": st.lists(CHOICE, max_size=2) | JSON},
    optional={"id": JSON, "usage": JSON, "error": JSON, "prompt_token_ids": JSON, "object": JSON},
)
EVENTS = st.lists(
    st.one_of(
        CHUNK.map(lambda c: b"data: " + json.dumps(c).encode()),
        JSON.map(lambda v: b"data: " + json.dumps(v).encode()),
        st.binary(max_size=10).map(lambda b: b"data: " + b.replace(b"\n", b"")),
        st.just(b"data: [DONE]"),
    ),
    min_size=1,
    max_size=6,
).map(lambda events: b"\n\n".join(events) + b"\n\n")


@pytest.fixture(scope="module")
def fronted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, HostileEngine]]:
    """A gateway with a response cache and a tokens-per-minute key, in front of the hostile engine
    alone (no retry elsewhere, a breaker that never opens: every example reaches the engine)."""
    engine = HostileEngine("hostile", model="fuzz")
    config = gateway_config(
        [{"name": "hostile", "url": engine.url, "engine": "seekserve"}],
        retry={"attempts": 1},
        breaker={"consecutive_failures": 10**6, "min_requests": 10**6},
        cache={"backend": "memory"},
        keys=[{"key_sha256": hashlib.sha256(KEY.encode()).hexdigest(), "tpm": 10**9}],
    )
    directory = tmp_path_factory.mktemp("hostile-backend")
    with engines_in_thread(engine), gateway_processes([config], directory) as (gateway,):
        yield gateway, engine


async def ask(url: str, stream: bool) -> tuple[int, bytes]:
    body = {"model": "fuzz", "prompt": "x", "max_tokens": 4, "temperature": 0, "stream": stream}
    headers = {"Authorization": f"Bearer {KEY}"}
    timeout = aiohttp.ClientTimeout(total=20)
    async with (
        aiohttp.ClientSession(timeout=timeout) as client,
        client.post(url + "/v1/completions", json=body, headers=headers) as response,
    ):
        return response.status, await response.read()


def check_stream(data: bytes) -> None:
    """Every event is a JSON object; the last is [DONE] or an OpenAI error event, and nothing follows."""
    events = [line[6:] for line in data.split(b"\n\n") if line]
    assert all(line.startswith(b"data: ") for line in data.split(b"\n\n") if line), data
    *body, last = events
    for event in body:
        chunk = json.loads(event)
        assert isinstance(chunk, dict) and "error" not in chunk, data
    if last != b"[DONE]":
        assert_openai_error(json.loads(last), "server_error", "upstream_failed")


@budget(60)
@given(events=EVENTS, cuts=st.lists(st.integers(0, 200), max_size=4))
def test_a_hostile_stream_leaves_the_client_a_well_formed_one(
    fronted: tuple[GatewayProcess, HostileEngine], events: bytes, cuts: list[int]
) -> None:
    gateway, engine = fronted
    engine.streaming, engine.pieces = True, split(events, cuts)
    status, data = asyncio.run(ask(gateway.url, stream=True))
    if status == 200:
        check_stream(data)
    else:
        assert status == 502, data
        assert_openai_error(json.loads(data), "server_error", "upstream_unavailable")


@budget(40)
@given(body=JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=16))
def test_a_hostile_answer_is_passed_on_without_failing_the_gateway(
    fronted: tuple[GatewayProcess, HostileEngine], body: bytes
) -> None:
    gateway, engine = fronted
    engine.streaming, engine.pieces = False, [body]
    status, data = asyncio.run(ask(gateway.url, stream=False))
    assert (status, data) == (200, body)
    assert "Traceback" not in gateway.log()
