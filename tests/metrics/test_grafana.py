"""The Grafana dashboard: importable structure, the panels the monitoring needs, real metric names."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import yaml

from metrics.promql import DASHBOARD, dashboard_exprs, exported_names, metric_names, recording_rule_names

GRID_COLUMNS = 24
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_the_dashboard_has_what_an_import_needs() -> None:
    data = dashboard()
    assert data["uid"] == "seekserve-overview" and data["title"] == "seekserve"
    assert isinstance(data["schemaVersion"], int) and data["schemaVersion"] >= 36
    assert "id" not in data or data["id"] is None  # an id would clash with the importing instance's
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    for name in ("model_name", "instance"):
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_panels_tile_the_grid_without_overlapping() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= GRID_COLUMNS, panel["title"]
        cells = set(itertools.product(range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])))
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_panel_queries_the_chosen_prometheus() -> None:
    for panel in panels():
        assert panel["type"] in ("timeseries", "stat"), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]


def test_every_expression_reads_metrics_seekserve_exports() -> None:
    known = exported_names() | recording_rule_names()
    defined = {v["name"] for v in dashboard()["templating"]["list"]} | BUILTIN_VARIABLES
    exprs = dashboard_exprs()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= known, f"{expr!r} reads unknown metrics {names - known}"
        used = set(re.findall(r"\$(\w+)", expr))
        assert used <= defined, f"{expr!r} uses undefined variables {used - defined}"
    assert len(exprs) >= 30


def test_the_panels_cover_what_the_monitoring_is_for() -> None:
    text = " ".join(t["expr"] for p in panels() for t in p["targets"])
    for needle in (
        "gpu_sm_utilization_perc", "gpu_memory_utilization_perc", "gpu_memory_used_bytes",
        "histogram_quantile(0.95, sum by (le) (rate(seekserve:e2e_request_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(seekserve:e2e_request_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(seekserve:time_to_first_token_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(seekserve:inter_token_latency_seconds_bucket",
        "generation_tokens_total", "num_requests_waiting", "kv_cache_usage_perc",
        "prefix_cache_hits_total", "num_preemptions_total", "request_errors_total",
    ):  # fmt: skip
        assert needle in text, needle


def test_provisioning_points_grafana_at_prometheus_and_the_dashboard_folder() -> None:
    provisioning = DASHBOARD.parent / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "seekserve.yml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("/seekserve")
