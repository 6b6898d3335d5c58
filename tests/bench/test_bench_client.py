from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest

from seekserve.bench.client import OpenAIClient, _Stream, _StreamError, api_url
from seekserve.bench.config import BenchConfig
from seekserve.bench.datasets import BenchRequest
from seekserve.bench.fake_server import FakeServer
from seekserve.bench.metrics import RequestRecord
from seekserve.bench.servers import free_port
from seekserve.bench.sse import SSEEvent

WithServer = Callable[..., Any]


def send(
    with_fake_server: WithServer,
    requests: list[BenchRequest],
    bench: dict[str, Any] | None = None,
    **server: Any,
) -> tuple[list[RequestRecord], FakeServer]:
    async def test(s: FakeServer) -> tuple[list[RequestRecord], FakeServer]:
        config = BenchConfig(base_url=s.base_url, model="fake-model", **(bench or {}))
        async with OpenAIClient(config) as client:
            return [await client.send(r, i, time.perf_counter()) for i, r in enumerate(requests)], s

    return with_fake_server(test, **server)


def test_api_urls_accept_a_base_with_or_without_v1() -> None:
    assert api_url("http://h:1", "/models") == "http://h:1/v1/models"
    assert api_url("http://h:1/v1/", "/completions") == "http://h:1/v1/completions"
    assert api_url("https://gw/openai/v1", "/chat/completions") == "https://gw/openai/v1/chat/completions"


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_a_stream_is_timed_token_by_token(with_fake_server: WithServer, endpoint: str) -> None:
    [r], server = send(
        with_fake_server, [BenchRequest("one two three", 12)], {"endpoint": endpoint}, ttft_s=0.05, itl_s=0.01
    )
    assert r.ok and r.error is None
    assert len(r.token_times_s) == 12 and r.output_tokens == 12 and r.usage_reported
    assert r.prompt_tokens == 3 and r.expected_output_tokens == 12
    assert r.ttft_s is not None and 0.05 <= r.ttft_s < 1.0
    # 11 gaps of 10 ms; a busy client may read two events at once (a 0 gap), never shorten the total
    assert r.token_times_s[-1] - r.token_times_s[0] >= 0.105 and statistics.median(r.itls_s) >= 0.009
    assert r.start_s < r.token_times_s[0] <= r.end_s
    assert server.last_body is not None
    key = "messages" if endpoint == "chat" else "prompt"
    assert server.last_body[key] == (
        [{"role": "user", "content": "one two three"}] if endpoint == "chat" else "one two three"
    )


def test_the_body_asks_for_exact_lengths_usage_and_extra_fields(with_fake_server: WithServer) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    bench = {"extra_body": {"top_k": 1}, "api_key": "sk-test", "temperature": 0.5}
    _, server = send(with_fake_server, [BenchRequest(messages, 3)], bench)
    assert server.last_body == {
        "model": "fake-model",
        "messages": messages,
        "max_tokens": 3,
        "temperature": 0.5,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
        "min_tokens": 3,
        "top_k": 1,
    }
    assert server.last_headers["authorization"] == "Bearer sk-test"
    _, server = send(with_fake_server, [BenchRequest("x", 3)], {"ignore_eos": False})
    assert server.last_body is not None and "ignore_eos" not in server.last_body
    assert "min_tokens" not in server.last_body
    assert "top_p" not in server.last_body  # the default, 1, sends none


def test_sampled_runs_send_temperature_and_top_p(with_fake_server: WithServer) -> None:
    _, server = send(with_fake_server, [BenchRequest("x", 3)], {"temperature": 0.6, "top_p": 0.95})
    assert server.last_body is not None
    assert (server.last_body["temperature"], server.last_body["top_p"]) == (0.6, 0.95)


def test_events_split_into_small_writes_time_the_same(with_fake_server: WithServer) -> None:
    [r], _ = send(with_fake_server, [BenchRequest("p", 20)], fragment_bytes=7)
    assert r.ok and len(r.token_times_s) == 20 and r.output_tokens == 20


def test_a_stall_shows_as_the_longest_gap(with_fake_server: WithServer) -> None:
    [r], _ = send(with_fake_server, [BenchRequest("p", 10)], itl_s=0.002, stall_at_token=6, stall_s=0.2)
    assert r.max_gap_s is not None and r.max_gap_s >= 0.2
    assert r.itls_s.index(r.max_gap_s) == 4  # the gap before token 6


def test_failures_are_recorded_by_kind(with_fake_server: WithServer) -> None:
    requests = [BenchRequest("p", 10)] * 4
    records, _ = send(with_fake_server, requests, fail_every=2, drop_every=3)
    assert [r.error for r in records] == [None, "http_500", "disconnected", "http_500"]
    assert records[1].error_message == "injected failure" and records[1].token_times_s == ()
    assert len(records[2].token_times_s) == 5, "the stream was cut after half its tokens"


def test_a_wrong_model_is_an_http_error_with_the_servers_message(with_fake_server: WithServer) -> None:
    async def test(s: FakeServer) -> RequestRecord:
        async with OpenAIClient(BenchConfig(base_url=s.base_url, model="nope")) as client:
            return await client.send(BenchRequest("p", 2), 0, time.perf_counter())

    r = with_fake_server(test)
    assert r.error == "http_404" and "model 'nope' does not exist" in r.error_message


def test_timeouts_and_refused_connections(with_fake_server: WithServer) -> None:
    [r], _ = send(with_fake_server, [BenchRequest("p", 2)], {"request_timeout_s": 0.1}, ttft_s=2.0)
    assert r.error == "timeout" and "0.1 s" in r.error_message

    async def refused(s: FakeServer) -> RequestRecord:
        config = BenchConfig(base_url=f"http://127.0.0.1:{free_port()}", model="m")
        async with OpenAIClient(config) as client:
            return await client.send(BenchRequest("p", 2), 0, time.perf_counter())

    r = with_fake_server(refused)
    assert r.error == "connection" and "cannot connect" in r.error_message


def test_stream_events_that_break_the_protocol() -> None:
    stream = _Stream()
    stream.on_event(SSEEvent('{"choices": [{"delta": {"role": "assistant"}}]}'), 1.0)
    stream.on_event(SSEEvent('{"choices": [{"delta": {"reasoning_content": "hmm"}}]}'), 2.0)
    stream.on_event(SSEEvent('{"choices": [{"delta": {"content": ""}, "finish_reason": "stop"}]}'), 3.0)
    stream.on_event(SSEEvent('{"choices": [], "usage": {"completion_tokens": 7}}'), 3.0)
    stream.on_event(SSEEvent("[DONE]"), 3.0)
    assert stream.token_times == [2.0] and stream.finished and stream.done
    assert stream.usage == {"completion_tokens": 7}
    with pytest.raises(_StreamError) as e:
        _Stream().on_event(SSEEvent('{"error": {"message": "out of memory"}}'), 0.0)
    assert (e.value.kind, str(e.value)) == ("stream_error", "out of memory")
    for bad in ("not json", "[1, 2]"):
        with pytest.raises(_StreamError) as e:
            _Stream().on_event(SSEEvent(bad), 0.0)
        assert e.value.kind == "bad_event"


def test_a_stream_closed_without_done_is_incomplete_but_keeps_its_tokens() -> None:
    # A bare server: no chunked encoding, the body ends when the connection closes, and the last
    # event lacks its blank line (the parser's flush must still deliver it).
    body = b'data: {"choices": [{"text": "a"}]}\n\ndata: {"choices": [{"text": "b"}]}'

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + body
        )
        await writer.drain()
        writer.close()

    async def main() -> RequestRecord:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = BenchConfig(base_url=f"http://127.0.0.1:{port}", model="m", endpoint="completions")
        try:
            async with OpenAIClient(config) as client:
                return await client.send(BenchRequest("p", 2), 0, time.perf_counter())
        finally:
            server.close()
            await server.wait_closed()

    r = asyncio.run(main())
    assert r.error == "incomplete" and len(r.token_times_s) == 2 and not r.usage_reported
