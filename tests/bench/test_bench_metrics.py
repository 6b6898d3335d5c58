from __future__ import annotations

import pytest

from seekserve.bench.metrics import Distribution, RequestRecord, meets_slos, summarize


def record(index: int, start: float, tokens: list[float], end: float, **kw: object) -> RequestRecord:
    kw.setdefault("output_tokens", len(tokens))
    kw.setdefault("scheduled_s", start)
    return RequestRecord(index, start, end, tuple(tokens), **kw)


RECORDS = [
    record(
        0, 0.0, [0.1, 0.2, 0.3, 0.5], 0.5, prompt_tokens=10, expected_output_tokens=4, usage_reported=True
    ),
    record(
        1, 1.0, [1.2, 1.25, 1.3, 1.35, 1.4], 1.4, prompt_tokens=20, expected_output_tokens=4, scheduled_s=0.9
    ),
    record(2, 2.0, [2.5, 3.5], 3.5, prompt_tokens=30, expected_output_tokens=2, usage_reported=True),
    record(3, 3.0, [], 3.1, error="http_500", error_message="boom"),
    record(4, 0.2, [0.3], 0.3),
]


def test_per_request_figures() -> None:
    r0, r1, r2, _, r4 = RECORDS
    assert r0.ttft_s == pytest.approx(0.1) and r0.e2e_s == 0.5
    assert r0.itls_s == pytest.approx([0.1, 0.1, 0.2]) and r0.max_gap_s == pytest.approx(0.2)
    assert r0.tpot_s == pytest.approx(0.4 / 3)
    assert r1.tpot_s == pytest.approx(0.05) and r2.tpot_s == pytest.approx(1.0)
    assert r4.max_gap_s is None and r4.tpot_s is None and r4.itls_s == []


def test_distribution_uses_linear_interpolated_percentiles() -> None:
    d = Distribution.of([0.5, 0.1, 0.2, 0.1])
    assert d == Distribution(
        count=4,
        mean=pytest.approx(0.225),
        median=pytest.approx(0.15),
        p90=pytest.approx(0.41),
        p95=pytest.approx(0.455),
        p99=pytest.approx(0.491),
        max=0.5,
    )
    assert Distribution.of([]) is None
    assert Distribution.of([3.0]) == Distribution(1, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0)


def test_summary_counts_throughput_and_latency_over_completed_requests() -> None:
    s = summarize(RECORDS, duration_s=4.0)
    assert (s.num_requests, s.num_completed, s.num_failed) == (5, 4, 1)
    assert s.errors == {"http_500": 1} and s.error_examples == {"http_500": "boom"}
    assert s.request_throughput == 1.0 and s.output_tokens == 12 and s.output_token_throughput == 3.0
    assert s.prompt_tokens == 60 and s.total_token_throughput == 18.0
    assert s.mean_concurrency == pytest.approx(2.6 / 4)
    assert s.ttft is not None and s.ttft.mean == pytest.approx(0.225) and s.ttft.p90 == pytest.approx(0.41)
    assert s.itl is not None and s.itl.count == 8
    assert (
        s.itl.median == pytest.approx(0.075)
        and s.itl.mean == pytest.approx(0.2)
        and s.itl.max == pytest.approx(1.0)
    )
    assert s.tpot is not None and s.tpot.count == 3 and s.tpot.max == pytest.approx(1.0)
    assert s.e2e is not None and s.e2e.max == 1.5 and s.e2e.count == 4
    assert s.num_length_mismatch == 1 and s.num_usage_missing == 2
    assert s.send_lag is not None and s.send_lag.max == pytest.approx(0.1) and s.send_lag.count == 5
    assert s.achieved_request_rate == pytest.approx(4 / 3)
    assert s.goodput is None


def test_stalls_default_to_four_times_the_median_itl() -> None:
    st = summarize(RECORDS, 4.0).stalls
    assert st.threshold_s == pytest.approx(0.3) and st.threshold_source == "4 x median ITL"
    assert (st.num_streams, st.num_stalled) == (3, 1)  # r4 has no gap; only r2's 1 s gap is over 0.3 s
    assert st.stalled_share == pytest.approx(1 / 3)
    assert st.longest_gap is not None and st.longest_gap.median == pytest.approx(0.2)
    given = summarize(RECORDS, 4.0, stall_threshold_s=0.1).stalls
    assert (given.threshold_s, given.threshold_source, given.num_stalled) == (0.1, "given", 2)


def test_goodput_counts_requests_that_meet_every_slo() -> None:
    s = summarize(RECORDS, 4.0, slos={"ttft": 0.3, "itl": 0.25})
    assert s.goodput is not None
    assert s.goodput.num_good == 3 and s.goodput.rate == 0.75  # r2 misses ttft; r4 has no gaps to miss
    assert summarize(RECORDS, 4.0, slos={"itl": 0.15}).goodput.num_good == 2
    assert summarize(RECORDS, 4.0, slos={"e2e": 0.45, "tpot": 0.2}).goodput.num_good == 2


def test_a_request_without_tokens_fails_every_slo() -> None:
    empty = record(9, 0.0, [], 0.2)
    assert not meets_slos(empty, {"itl": 1.0}) and not meets_slos(empty, {"ttft": 1.0})
    assert meets_slos(empty, {"e2e": 1.0})


def test_an_empty_run_summarizes_without_dividing_by_zero() -> None:
    s = summarize([], 0.0)
    assert s.num_requests == 0 and s.request_throughput == 0.0 and s.ttft is None
    assert s.stalls.threshold_s is None and s.stalls.stalled_share == 0.0
