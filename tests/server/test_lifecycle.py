"""Health across the server's life, backpressure and timeouts (on an engine slowed on purpose)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from seekserve.engine.async_engine import AsyncEngine
from seekserve.errors import ModelLoadError
from server.live import LiveServer, engine_loader, slowed, start_server

USER = [{"role": "user", "content": "Hi"}]
STEP_DELAY_S = 0.02
TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def slow_server(llama_dir: Path) -> Iterator[LiveServer]:
    """One sequence at a time, one waiting at most, 20 ms per step, 1 s per request."""
    load = slowed(engine_loader(llama_dir, max_num_seqs=1, max_queue_len=1), STEP_DELAY_S)
    live = start_server(load, request_timeout_s=TIMEOUT_S)
    yield live
    live.stop()


def long_stream(client: openai.OpenAI) -> Any:
    return client.completions.create(
        model="tiny", prompt="Once", max_tokens=100, stream=True, extra_body={"ignore_eos": True}
    )


def test_full_queue_answers_429_with_retry_after(slow_server: LiveServer) -> None:
    client = slow_server.client()
    running = long_stream(client)
    next(iter(running))
    waiting = long_stream(client)
    slow_server.wait_until(lambda: slow_server.engine.stats.num_waiting == 1)
    with pytest.raises(openai.RateLimitError) as rejected:
        client.completions.create(model="tiny", prompt="Once", max_tokens=2)
    response = rejected.value.response
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    error = response.json()["error"]
    assert error["type"] == "overloaded_error" and "max_queue_len=1" in error["message"]
    with slow_server.http() as http:
        assert http.get("/health").status_code == 200
    running.close()
    waiting.close()
    slow_server.wait_idle()


def test_request_past_the_timeout_gets_408_and_is_aborted(slow_server: LiveServer) -> None:
    start = time.monotonic()
    with slow_server.http() as http:
        response = http.post(
            "/v1/completions", json={"prompt": "Once", "max_tokens": 100, "ignore_eos": True}
        )
    assert response.status_code == 408
    assert response.json()["error"]["code"] == "request_timeout"
    assert "1 s" in response.json()["error"]["message"]
    assert TIMEOUT_S <= time.monotonic() - start < TIMEOUT_S + 1.0
    slow_server.wait_idle()


def test_stream_past_the_timeout_ends_with_an_error_event(slow_server: LiveServer) -> None:
    text = ""
    with pytest.raises(openai.APIError, match="did not finish within"):
        for chunk in long_stream(slow_server.client()):
            text += chunk.choices[0].text
    assert text, "the stream delivered tokens before it timed out"
    slow_server.wait_idle()


def test_health_is_503_while_loading_and_v1_asks_to_retry(llama_dir: Path) -> None:
    release = threading.Event()
    load = engine_loader(llama_dir)

    def load_when_released() -> AsyncEngine:
        release.wait(30)
        return load()

    live = start_server(load_when_released, wait_ready=False)
    try:
        with httpx.Client(base_url=live.base_url) as http:
            health = http.get("/health")
            assert (health.status_code, health.json()) == (503, {"status": "loading"})
            early = http.post("/v1/chat/completions", json={"messages": USER})
            assert early.status_code == 503 and early.headers["Retry-After"] == "5"
            assert early.json()["error"]["code"] == "model_loading"
            release.set()
            live.wait_until(lambda: http.get("/health").status_code == 200, 30)
            assert (
                http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 2}).status_code == 200
            )
    finally:
        release.set()
        live.stop()


def test_failed_load_is_reported_and_health_stays_503(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def fail() -> AsyncEngine:
        raise ModelLoadError(f"model directory {tmp_path} has no config.json")

    live = start_server(fail, wait_ready=False, on_load_error=errors.append)
    try:
        live.wait_until(lambda: bool(errors))
        with httpx.Client(base_url=live.base_url) as http:
            health = http.get("/health")
            assert health.status_code == 503 and "has no config.json" in health.json()["error"]
            answer = http.post("/v1/completions", json={"prompt": "x"})
            assert answer.status_code == 503 and answer.json()["error"]["code"] == "engine_dead"
    finally:
        live.stop()


def test_engine_death_turns_health_and_requests_to_503(llama_dir: Path) -> None:
    live = start_server(engine_loader(llama_dir))
    try:

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("simulated device failure")

        live.engine.engine.runner.execute = broken  # type: ignore[method-assign]
        with httpx.Client(base_url=live.base_url) as http:
            failed = http.post("/v1/completions", json={"prompt": "x"})
            assert (
                failed.status_code == 503 and "simulated device failure" in failed.json()["error"]["message"]
            )
            health = http.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "error"
            assert http.post("/v1/completions", json={"prompt": "x"}).json()["error"]["code"] == "engine_dead"
    finally:
        live.stop()


def test_a_batch_with_one_bad_prompt_queues_nothing(slow_server: LiveServer) -> None:
    body = {"prompt": [[5, 6, 7], [99999]], "max_tokens": 100, "ignore_eos": True}
    with slow_server.http() as http:
        response = http.post("/v1/completions", json=body)
    assert response.status_code == 400 and "outside the vocabulary" in response.json()["error"]["message"]
    # The first prompt was queued before the second failed; left running it would take 2 s.
    slow_server.wait_idle(timeout_s=0.5)
