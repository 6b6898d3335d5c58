from __future__ import annotations

import pytest

from metrics.scrape import Scrape
from seekserve.engine.outputs import CompletionOutput, RequestMetrics, RequestOutput
from seekserve.metrics import RequestTracker, ServerMetrics

ARRIVAL = 100.0
SCHEDULED = 100.5
PROMPT = [1, 2, 3]


def output(
    last_token: float,
    deltas: list[list[int]],
    finish: list[str | None] | None = None,
    first_token: float | None = None,
    totals: list[int] | None = None,
) -> RequestOutput:
    """One engine output of a request whose choices got `deltas[i]` new tokens at `last_token`."""
    finish = finish or [None] * len(deltas)
    choices = [
        CompletionOutput(
            index=i,
            text="",
            token_ids=[7] * (totals[i] if totals else len(delta)),
            finish_reason=reason,
            delta_token_ids=delta,
        )
        for i, (delta, reason) in enumerate(zip(deltas, finish, strict=True))
    ]
    done = all(r is not None for r in finish)
    times = RequestMetrics(
        arrival_time=ARRIVAL,
        first_scheduled_time=SCHEDULED,
        first_token_time=first_token if first_token is not None else last_token,
        last_token_time=last_token,
        finished_time=last_token + 0.001 if done else None,
        num_cached_tokens=0,
        num_preemptions=0,
    )
    return RequestOutput("r", None, PROMPT, choices, done, times)


def scrape(metrics: ServerMetrics) -> Scrape:
    return Scrape(metrics.render().decode(), model_name="m")


def test_a_stream_records_ttft_at_once_then_each_gap_then_the_request() -> None:
    metrics = ServerMetrics("m", lambda: None)
    tracker = RequestTracker(metrics, ARRIVAL)
    tracker.observe(0, output(101.0, [[5]]))
    got = scrape(metrics)
    assert got("seekserve:time_to_first_token_seconds_count") == 1
    assert got("seekserve:time_to_first_token_seconds_sum") == pytest.approx(1.0)
    assert got("seekserve:prompt_tokens_total") == 3
    assert got("seekserve:e2e_request_latency_seconds_count") == 0
    tracker.observe(0, output(101.018, [[6]], first_token=101.0, totals=[2]))
    tracker.observe(0, output(101.045, [[7]], ["length"], first_token=101.0, totals=[3]))
    got = scrape(metrics)
    assert got("seekserve:inter_token_latency_seconds_count") == 2
    assert got("seekserve:inter_token_latency_seconds_sum") == pytest.approx(0.045)
    assert got("seekserve:inter_token_latency_seconds_bucket", le="0.02") == 1
    assert got("seekserve:inter_token_latency_seconds_bucket", le="0.03") == 2
    assert got("seekserve:generation_tokens_total") == 3
    assert got("seekserve:e2e_request_latency_seconds_sum") == pytest.approx(1.046)  # to finished_time
    assert got("seekserve:request_queue_time_seconds_sum") == pytest.approx(0.5)
    assert got("seekserve:request_prefill_time_seconds_sum") == pytest.approx(0.5)
    assert got("seekserve:request_decode_time_seconds_sum") == pytest.approx(0.045)
    assert got("seekserve:request_time_per_output_token_seconds_sum") == pytest.approx(0.0225)
    assert got("seekserve:request_generation_tokens_sum") == 3
    assert got("seekserve:request_prompt_tokens_sum") == 3
    assert got("seekserve:request_success_total", finished_reason="length") == 1


def test_merged_steps_spread_the_gap_over_their_tokens() -> None:
    metrics = ServerMetrics("m", lambda: None)
    tracker = RequestTracker(metrics, ARRIVAL)
    # A slow reader got the first three steps at once: first token at 101.0, the third at 101.056.
    tracker.observe(0, output(101.056, [[5, 6, 7]], first_token=101.0))
    tracker.observe(0, output(101.14, [[8, 9, 10]], first_token=101.0, totals=[6]))
    got = scrape(metrics)
    assert got("seekserve:time_to_first_token_seconds_sum") == pytest.approx(1.0)
    assert got("seekserve:inter_token_latency_seconds_count") == 5
    assert got("seekserve:inter_token_latency_seconds_bucket", le="0.03") == 5  # 0.028 each
    assert got("seekserve:inter_token_latency_seconds_bucket", le="0.025") == 0
    assert got("seekserve:inter_token_latency_seconds_sum") == pytest.approx(0.14)
    assert got("seekserve:generation_tokens_total") == 6


def test_each_choice_is_a_request_and_an_abort_is_not_a_success() -> None:
    metrics = ServerMetrics("m", lambda: None)
    tracker = RequestTracker(metrics, ARRIVAL)
    tracker.observe(0, output(101.0, [[5], [6]]))
    tracker.observe(0, output(101.02, [[7], []], ["stop", None], first_token=101.0, totals=[2, 1]))
    tracker.observe(0, output(101.03, [[], []], ["stop", "abort"], first_token=101.0, totals=[2, 1]))
    got = scrape(metrics)
    assert got("seekserve:time_to_first_token_seconds_count") == 2
    assert got("seekserve:prompt_tokens_total") == 6  # each choice prefilled its prompt, as in vLLM
    assert got("seekserve:generation_tokens_total") == 3
    assert got("seekserve:inter_token_latency_seconds_count") == 1
    assert got("seekserve:request_success_total", finished_reason="stop") == 1  # once, not per output
    assert got("seekserve:e2e_request_latency_seconds_count") == 1
    assert got("seekserve:e2e_request_latency_seconds_sum") == pytest.approx(1.02)  # its last token
    assert got("seekserve:request_time_per_output_token_seconds_count") == 1


def test_prompts_of_a_batch_are_followed_separately_and_outputs_without_tokens_are_skipped() -> None:
    metrics = ServerMetrics("m", lambda: None)
    tracker = RequestTracker(metrics, ARRIVAL)
    waiting = RequestOutput("r-1", None, PROMPT, [CompletionOutput(0, "", [], "abort")], True, None)
    tracker.observe(1, waiting)
    tracker.observe(0, output(101.0, [[5]], ["length"]))
    got = scrape(metrics)
    assert got("seekserve:request_success_total", finished_reason="length") == 1
    assert got("seekserve:time_to_first_token_seconds_count") == 1
    assert got("seekserve:request_generation_tokens_bucket", le="1.0") == 1
    assert got("seekserve:request_time_per_output_token_seconds_count") == 0  # one token: no decode
