from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from seekserve.engine.llm_engine import EngineStats
from seekserve.metrics import RequestRecord, ServerMetrics


def samples(metrics: ServerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_engine_gauges_follow_the_stats_snapshot() -> None:
    stats: list[EngineStats | None] = [None]
    metrics = ServerMetrics("m", lambda: stats[0])
    assert not any(name.startswith("seekserve:num_requests") for name, _ in samples(metrics))
    stats[0] = EngineStats(
        num_running=3, num_waiting=2, kv_cache_usage=0.25, num_preemptions=1,
        prefix_cache_queries=40, prefix_cache_hits=10,
    )  # fmt: skip
    got = samples(metrics)
    label = (("model_name", "m"),)
    assert got[("seekserve:num_requests_running", label)] == 3
    assert got[("seekserve:num_requests_waiting", label)] == 2
    assert got[("seekserve:kv_cache_usage_perc", label)] == 0.25
    assert got[("seekserve:num_preemptions_total", label)] == 1
    assert got[("seekserve:prefix_cache_hits_total", label)] == 10


def test_records_count_tokens_reasons_and_latencies_of_successes_only() -> None:
    metrics = ServerMetrics("m", lambda: None)
    metrics.record(RequestRecord(5, 7, ("stop", "length"), e2e_s=0.8, ttft_s=0.04, queue_s=0.01))
    metrics.record(RequestRecord(0, 0, (), e2e_s=0.001, error_type="server_overloaded"))
    got = samples(metrics)
    label = (("model_name", "m"),)
    assert got[("seekserve:prompt_tokens_total", label)] == 5
    assert got[("seekserve:generation_tokens_total", label)] == 7
    assert got[("seekserve:request_success_total", (("finished_reason", "stop"), *label))] == 1
    assert got[("seekserve:request_success_total", (("finished_reason", "length"), *label))] == 1
    assert got[("seekserve:request_errors_total", (("error_type", "server_overloaded"), *label))] == 1
    assert got[("seekserve:e2e_request_latency_seconds_count", label)] == 1
    assert got[("seekserve:e2e_request_latency_seconds_sum", label)] == 0.8
    assert got[("seekserve:time_to_first_token_seconds_bucket", (("le", "0.05"), *label))] == 1
    assert got[("seekserve:time_to_first_token_seconds_bucket", (("le", "0.025"), *label))] == 0
