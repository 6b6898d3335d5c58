"""A real Prometheus scrapes a live seekserve with the shipped rules loaded."""

from __future__ import annotations

import bisect
import math
import time
from pathlib import Path

from metrics.prometheus_server import run_prometheus
from metrics.promql import RULE_FILES, dashboard_exprs
from metrics.scrape import Scrape
from seekserve.metrics.prometheus import REQUEST_BUCKETS_S
from seekserve.metrics.quantile import histogram_quantile
from server.live import engine_loader, slowed, start_server

STEP_DELAY_S = 0.004
MAX_TOKENS = (1, 3, 8, 24, 64, 96)
"""Answer lengths that spread the latencies over several buckets."""
E2E = "seekserve:e2e_request_latency_seconds"


def bucket_bounds(latency_s: float) -> tuple[float, float]:
    """The (lower, upper] bounds of the e2e histogram bucket that holds `latency_s`."""
    bounds = (0.0, *REQUEST_BUCKETS_S, math.inf)
    i = bisect.bisect_left(bounds, latency_s)
    return bounds[i - 1], bounds[i]


def test_recorded_p99_matches_the_histogram_and_the_latencies_clients_saw(
    llama_dir: Path, tmp_path: Path
) -> None:
    live = start_server(slowed(engine_loader(llama_dir), STEP_DELAY_S))
    try:
        with run_prometheus(tmp_path, f"127.0.0.1:{live.port}", RULE_FILES) as prometheus:
            prometheus.wait_for(f'{E2E}_count{{job="seekserve"}}', lambda v: v == 0)  # scraped before traffic
            client_s = []
            with live.http() as http:
                for max_tokens in MAX_TOKENS:
                    body = {"prompt": [5, 6, 7], "max_tokens": max_tokens, "ignore_eos": True}
                    start = time.monotonic()
                    assert http.post("/v1/completions", json=body).status_code == 200
                    client_s.append(time.monotonic() - start)
                scraped = Scrape(http.get("/metrics").text)
            bounds = [float(le) for le in (*map(str, REQUEST_BUCKETS_S), "+Inf")]
            counts = [scraped(f"{E2E}_bucket", le=le) for le in (*map(str, REQUEST_BUCKETS_S), "+Inf")]
            expected = histogram_quantile(0.99, bounds, counts)
            assert expected is not None
            prometheus.wait_for(f"{E2E}_count", lambda v: v == len(MAX_TOKENS))
            p99 = prometheus.wait_for(
                "job:seekserve:e2e_latency_seconds:p99", lambda v: math.isclose(v, expected, rel_tol=1e-9)
            )
            lowest, highest = bucket_bounds(min(client_s))[0], bucket_bounds(max(client_s))[1]
            assert lowest <= p99 <= highest, (p99, client_s)
            assert prometheus.value("job:seekserve:error_ratio:rate5m") == 0.0
            assert prometheus.value("job:seekserve:num_requests_waiting:sum") == 0.0
            rules = prometheus.rules()
            assert len(rules) == 26 and all(r["health"] == "ok" for r in rules), [
                (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"
            ]
            states = {r["name"]: r["state"] for r in rules if r["type"] == "alerting"}
            assert states["SeekserveTargetDown"] == states["SeekserveErrorRatioHigh"] == "inactive"
            for expr in dashboard_exprs():  # every dashboard query parses and runs in Prometheus
                prometheus.query(
                    expr.replace("$__rate_interval", "1m")
                    .replace("$model_name", ".*")
                    .replace("$instance", ".*")
                )
    finally:
        live.stop()
