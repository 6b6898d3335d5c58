from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from metrics.scrape import Scrape
from seekserve.engine.llm_engine import EngineStats
from seekserve.metrics import ERROR_TYPES, FinishedSequence, GpuSample, ServerMetrics

STATS = EngineStats(
    num_running=3, num_waiting=2, kv_cache_usage=0.25, num_preemptions=1,
    prefix_cache_queries=40, prefix_cache_hits=10, num_kv_blocks_used=8, num_kv_block_refs=11,
    num_kv_blocks_cached=6, num_kv_audit_failures=0,
)  # fmt: skip


def scrape(metrics: ServerMetrics) -> Scrape:
    return Scrape(metrics.render().decode(), model_name="m")


def test_engine_load_follows_the_stats_snapshot_and_is_absent_while_loading() -> None:
    stats: list[EngineStats | None] = [None]
    metrics = ServerMetrics("m", lambda: stats[0])
    assert not scrape(metrics).has("seekserve:num_requests_running")
    stats[0] = STATS
    got = scrape(metrics)
    assert got("seekserve:num_requests_running") == 3
    assert got("seekserve:num_requests_waiting") == 2
    assert got("seekserve:kv_cache_usage_perc") == 0.25
    assert got("seekserve:num_preemptions_total") == 1
    assert got("seekserve:prefix_cache_queries_total") == 40
    assert got("seekserve:prefix_cache_hits_total") == 10
    assert got("seekserve:kv_cache_used_blocks") == 8
    assert got("seekserve:kv_cache_block_references") == 11
    assert got("seekserve:kv_cache_cached_blocks") == 6
    assert got("seekserve:kv_cache_audit_failures_total") == 0
    text = metrics.render().decode()
    assert "# TYPE seekserve:num_preemptions_total counter" in text
    assert "# TYPE seekserve:prefix_cache_hits_total counter" in text
    assert "_created" not in text
    assert "# TYPE seekserve:num_requests_waiting gauge" in text


def test_every_error_type_and_finish_reason_is_exported_from_the_start() -> None:
    got = scrape(ServerMetrics("m", lambda: None))
    for kind in ("invalid_request", "rejected_overload", "timeout", "aborted", "internal"):
        assert got("seekserve:request_errors_total", type=kind) == 0
    assert tuple(ERROR_TYPES) == ("invalid_request", "rejected_overload", "timeout", "aborted", "internal")
    for reason in ("stop", "length"):
        assert got("seekserve:request_success_total", finished_reason=reason) == 0
    assert got("seekserve:e2e_request_latency_seconds_count") == 0


def test_a_finished_sequence_fills_each_phase_histogram() -> None:
    metrics = ServerMetrics("m", lambda: None)
    metrics.first_token(ttft_s=0.03, num_prompt_tokens=12)
    metrics.next_tokens(gap_s=0.02, num_tokens=4)
    metrics.finished(
        FinishedSequence(
            finished_reason="stop", arrival_time=100.0, first_scheduled_time=100.01,
            first_token_time=100.03, last_token_time=100.11, finished_time=100.12,
            num_prompt_tokens=12, num_generation_tokens=5,
        )
    )  # fmt: skip
    metrics.error("timeout")
    got = scrape(metrics)
    assert got("seekserve:prompt_tokens_total") == 12
    assert got("seekserve:generation_tokens_total") == 5
    assert got("seekserve:inter_token_latency_seconds_count") == 4
    assert got("seekserve:inter_token_latency_seconds_bucket", le="0.02") == 4
    assert got("seekserve:inter_token_latency_seconds_bucket", le="0.015") == 0
    assert got("seekserve:e2e_request_latency_seconds_sum") == pytest.approx(0.12)
    assert got("seekserve:request_queue_time_seconds_sum") == pytest.approx(0.01)
    assert got("seekserve:request_prefill_time_seconds_sum") == pytest.approx(0.02)
    assert got("seekserve:request_decode_time_seconds_sum") == pytest.approx(0.08)
    assert got("seekserve:request_time_per_output_token_seconds_sum") == pytest.approx(0.02)
    assert got("seekserve:request_prompt_tokens_bucket", le="10.0") == 0
    assert got("seekserve:request_prompt_tokens_bucket", le="20.0") == 1
    assert got("seekserve:request_generation_tokens_bucket", le="5.0") == 1
    assert got("seekserve:request_success_total", finished_reason="stop") == 1
    assert got("seekserve:request_errors_total", type="timeout") == 1
    assert got("seekserve:time_to_first_token_seconds_bucket", le="0.04") == 1
    assert got("seekserve:time_to_first_token_seconds_bucket", le="0.02") == 0


def test_buckets_span_the_ranges_llm_latencies_take() -> None:
    got = scrape(ServerMetrics("m", lambda: None))

    def bounds(name: str) -> list[float]:
        return sorted(float(dict(labels)["le"]) for n, labels in got.values if n == name + "_bucket")

    ttft = bounds("seekserve:time_to_first_token_seconds")
    itl = bounds("seekserve:inter_token_latency_seconds")
    assert (ttft[0], ttft[-2], ttft[-1]) == (0.001, 60.0, float("inf"))
    assert (itl[0], itl[-2], itl[-1]) == (0.001, 5.0, float("inf"))
    assert {1.0, 1.5, 2.0} <= set(bounds("seekserve:e2e_request_latency_seconds"))


def test_gpu_readings_become_per_gpu_gauges_and_unsupported_ones_are_left_out() -> None:
    metrics = ServerMetrics("m", lambda: None)
    assert not any(name.startswith("seekserve:gpu_") for name in scrape(metrics).names())
    metrics.gpus = (
        GpuSample(0, "NVIDIA H100", "GPU-a", 0.5, 0.25, 40 << 30, 80 << 30, 350.0, 60.0),
        GpuSample(1, "NVIDIA L4", "GPU-b", 0.0, 0.0, 1 << 30, 24 << 30, None, 35.0),
    )
    got = scrape(metrics)
    h100 = {"gpu": "0", "gpu_name": "NVIDIA H100"}
    assert got("seekserve:gpu_sm_utilization_perc", **h100) == 0.5
    assert got("seekserve:gpu_memory_utilization_perc", **h100) == 0.25
    assert got("seekserve:gpu_memory_used_bytes", **h100) == 40 << 30
    assert got("seekserve:gpu_memory_total_bytes", **h100) == 80 << 30
    assert got("seekserve:gpu_power_watts", **h100) == 350.0
    assert got("seekserve:gpu_temperature_celsius", **h100) == 60.0
    assert not got.has("seekserve:gpu_power_watts", gpu="1", gpu_name="NVIDIA L4")
    assert got("seekserve:gpu_temperature_celsius", gpu="1", gpu_name="NVIDIA L4") == 35.0


@pytest.mark.skipif(sys.platform != "linux", reason="process metrics read /proc")
def test_process_cpu_and_resident_memory_are_exported() -> None:
    got = scrape(ServerMetrics("m", lambda: None))
    assert got("process_resident_memory_bytes") > 1 << 20
    assert got("process_cpu_seconds_total") > 0


def test_the_process_threads_and_event_loop_tasks_are_exported() -> None:
    import asyncio
    import threading

    metrics = ServerMetrics("m", lambda: None)
    text = metrics.render().decode()
    assert f"seekserve:python_threads {float(threading.active_count())}" in text.splitlines()
    assert "seekserve:event_loop_tasks" not in text  # no event loop runs here
    # Pools other tests left behind (an earlier loop's executor) may still hold threads: count from them.
    before = scrape(metrics)("seekserve:pool_threads")

    async def on_a_loop() -> str:
        await asyncio.to_thread(threading.current_thread)  # starts one thread of the loop's executor
        with ThreadPoolExecutor(2) as other:  # and one of another pool (gone again when the block ends)
            other.submit(threading.current_thread).result()
        extra = [asyncio.create_task(asyncio.sleep(1)) for _ in range(3)]
        try:
            return metrics.render().decode()
        finally:
            for task in extra:
                task.cancel()

    lines = asyncio.run(on_a_loop()).splitlines()
    assert "seekserve:event_loop_tasks 4.0" in lines  # main + 3
    assert f"seekserve:pool_threads {before + 1}" in lines
