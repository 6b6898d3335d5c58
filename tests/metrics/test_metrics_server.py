"""A live server under a known workload: every metric checked against what the workload implies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from factories import greedy
from metrics.scrape import Scrape
from seekserve import LLM
from seekserve.server.access_log import error_type
from server.live import ENGINE_OPTIONS, LiveServer, engine_loader, slowed, start_server

STEP_DELAY_S = 0.01
TIMEOUT_S = 0.6
OPTIONS = dict(max_num_seqs=1, max_queue_len=2)
"""One sequence at a time and two waiting at most, so the queue and its limit are easy to reach."""
PREFIX = list(range(20, 30))


@pytest.fixture(scope="module")
def live(llama_dir: Path) -> Iterator[LiveServer]:
    server = start_server(
        slowed(engine_loader(llama_dir, **OPTIONS), STEP_DELAY_S), request_timeout_s=TIMEOUT_S
    )
    yield server
    server.stop()


def scrape(live: LiveServer) -> Scrape:
    with live.http() as http:
        return Scrape(http.get("/metrics").text)


def post(http: httpx.Client, body: dict[str, Any]) -> tuple[int, float]:
    start = time.monotonic()
    response = http.post("/v1/completions", json=body)
    return response.status_code, time.monotonic() - start


def run_workload(live: LiveServer, stop_token: int) -> float:
    """Eight sequences that finish on their own; returns the sum of the clients' latencies per sequence."""
    bodies = [
        ({"prompt": [5, 6, 7], "max_tokens": 4, "ignore_eos": True}, 1),
        ({"prompt": [8, 9, 10, 11, 12], "max_tokens": 3, "ignore_eos": True, "n": 2, "stream": True}, 2),
        ({"prompt": [[13, 14], [15, 16, 17, 18]], "max_tokens": 2, "ignore_eos": True}, 2),
        ({"prompt": [5, 6, 7], "max_tokens": 4, "stop_token_ids": [stop_token]}, 1),
        ({"prompt": PREFIX, "max_tokens": 1, "ignore_eos": True}, 1),
        ({"prompt": PREFIX, "max_tokens": 1, "ignore_eos": True}, 1),  # its first 8 tokens are cached
    ]
    total_s = 0.0
    with live.http() as http:
        for body, num_seqs in bodies:
            status, elapsed_s = post(http, {**body, "temperature": 0})
            assert status == 200, body
            total_s += num_seqs * elapsed_s
    return total_s


def test_a_known_workload_gives_exact_counts_and_consistent_timings(
    live: LiveServer, llama_dir: Path
) -> None:
    first_token = (
        LLM(str(llama_dir), **ENGINE_OPTIONS).generate([[5, 6, 7]], greedy(1))[0].outputs[0].token_ids[0]
    )
    client_s = run_workload(live, first_token)
    live.wait_idle()
    got = scrape(live)
    # prompts 3, 5+5 (n=2), 2, 4, 3, 10, 10; generated 4, 3+3, 2, 2, 1 (stopped), 1, 1
    assert got("seekserve:request_success_total", finished_reason="length") == 7
    assert got("seekserve:request_success_total", finished_reason="stop") == 1
    for name in ("time_to_first_token", "e2e_request_latency", "request_queue_time", "request_prefill_time",
                 "request_decode_time"):  # fmt: skip
        assert got(f"seekserve:{name}_seconds_count") == 8, name
    assert got("seekserve:request_time_per_output_token_seconds_count") == 5  # sequences with 2+ tokens
    assert got("seekserve:inter_token_latency_seconds_count") == 3 + 2 + 2 + 1 + 1
    assert got("seekserve:prompt_tokens_total") == 42
    assert got("seekserve:generation_tokens_total") == 17
    assert got("seekserve:request_prompt_tokens_sum") == 42
    assert got("seekserve:request_prompt_tokens_bucket", le="2.0") == 1
    assert got("seekserve:request_prompt_tokens_bucket", le="5.0") == 6
    assert got("seekserve:request_prompt_tokens_bucket", le="10.0") == 8
    assert got("seekserve:request_generation_tokens_sum") == 17
    assert got("seekserve:request_generation_tokens_bucket", le="1.0") == 3
    assert got("seekserve:prefix_cache_queries_total") == 42
    assert got("seekserve:prefix_cache_hits_total") == 8
    assert got("seekserve:num_preemptions_total") == 0
    for gauge in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc"):
        assert got(f"seekserve:{gauge}") == 0, gauge
    for kind in ("invalid_request", "rejected_overload", "timeout", "aborted", "internal"):
        assert got("seekserve:request_errors_total", type=kind) == 0
    # Timings: each decode step sleeps STEP_DELAY_S, the gaps add up to the decode time, the phases
    # to the end-to-end latency, and that is within what the clients saw.
    itl_s, decode_s = (
        got("seekserve:inter_token_latency_seconds_sum"),
        got("seekserve:request_decode_time_seconds_sum"),
    )
    assert itl_s == pytest.approx(decode_s, rel=1e-9)
    assert decode_s >= 9 * STEP_DELAY_S
    phases_s = sum(
        got(f"seekserve:request_{name}_time_seconds_sum") for name in ("queue", "prefill", "decode")
    )
    e2e_s = got("seekserve:e2e_request_latency_seconds_sum")
    assert phases_s <= e2e_s < phases_s + 8 * 0.05
    assert e2e_s < client_s


def test_errors_are_counted_once_per_request_by_type(live: LiveServer) -> None:
    before = scrape(live)
    with live.http() as http:
        assert post(http, {"prompt": [5], "n": 0})[0] == 400
        assert post(http, {"prompt": [5], "model": "another"})[0] == 404
        assert post(http, {"prompt": [5], "max_tokens": 100, "ignore_eos": True})[0] == 408
    live.wait_idle()
    client = live.client()

    def start_stream() -> Any:
        stream = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=100,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        next(iter(stream))  # the role chunk: the response has started
        return stream

    # One runs and two wait: the second and third are sent once the first runs, since a request
    # the engine has taken in counts as waiting until a step schedules it.
    streams = [start_stream()]
    live.wait_until(lambda: live.engine.stats.num_running == 1)
    streams += [start_stream(), start_stream()]
    live.wait_until(lambda: live.engine.stats.num_waiting == 2)
    with pytest.raises(openai.RateLimitError):
        client.completions.create(model="tiny", prompt=[5], max_tokens=1)
    for stream in streams:
        stream.close()
    live.wait_idle()

    def grew(kind: str) -> float:
        return scrape(live)("seekserve:request_errors_total", type=kind) - before(
            "seekserve:request_errors_total", type=kind
        )

    live.wait_until(lambda: grew("aborted") == 3)
    after = scrape(live)
    expected = {"invalid_request": 2, "rejected_overload": 1, "timeout": 1, "aborted": 3, "internal": 0}
    assert {kind: grew(kind) for kind in expected} == expected
    for name in ("request_success_total", "e2e_request_latency_seconds_count"):
        assert after.values.keys() == before.values.keys()
        assert sum(v for (n, _), v in after.values.items() if n == f"seekserve:{name}") == sum(
            v for (n, _), v in before.values.items() if n == f"seekserve:{name}"
        ), f"{name}: requests that failed are not successes"
    assert (
        after("seekserve:time_to_first_token_seconds_count")
        >= before("seekserve:time_to_first_token_seconds_count") + 2
    )  # the timed-out request and the running stream produced tokens
    for gauge in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc"):
        assert after(f"seekserve:{gauge}") == 0, gauge


@pytest.mark.parametrize(
    ("label", "status", "kind"),
    [
        ("invalid_request_error", 400, "invalid_request"),
        ("context_length_exceeded", 400, "invalid_request"),
        ("model_not_found", 404, "invalid_request"),
        ("request_too_large", 413, "invalid_request"),
        ("invalid_api_key", 401, "invalid_request"),
        ("method_not_allowed", 405, "invalid_request"),
        ("server_overloaded", 429, "rejected_overload"),
        ("model_loading", 503, "rejected_overload"),
        ("request_timeout", 408, "timeout"),
        ("request_timeout", 200, "timeout"),  # a stream that timed out after its 200
        ("client_closed_request", 499, "aborted"),
        ("engine_dead", 503, "internal"),
        ("engine_dead", 200, "internal"),
        ("internal_error", 500, "internal"),
        ("server_error", 502, "internal"),
    ],
)
def test_error_labels_map_to_the_request_errors_types(label: str, status: int, kind: str) -> None:
    assert error_type(label, status) == kind


def test_with_metrics_off_nothing_is_collected_or_served(llama_dir: Path) -> None:
    live = start_server(engine_loader(llama_dir), enable_metrics=False)
    try:
        assert live.state.metrics is None and live.state.monitor is None
        with live.http() as http:
            assert post(http, {"prompt": [5, 6], "max_tokens": 2})[0] == 200
            for path in ("/metrics", "/dashboard", "/dashboard/data"):
                assert http.get(path).status_code == 404, path
    finally:
        live.stop()
