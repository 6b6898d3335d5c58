"""PrometheusRule, ServiceMonitors and the dashboard ConfigMap come from deploy/prometheus and
deploy/grafana unchanged, and the PrometheusRule's groups pass promtool as a rule file."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from deploy.kube import DEPLOY, VARIANTS, of_kind
from metrics.promql import promtool


def test_the_prometheus_rule_is_the_rule_files_groups() -> None:
    files = ("recording_rules.yml", "alert_rules.yml")
    groups = [
        g for name in files for g in yaml.safe_load((DEPLOY / "prometheus" / name).read_text())["groups"]
    ]
    for variant in VARIANTS:
        (rule,) = of_kind(variant, "PrometheusRule")
        assert rule["spec"]["groups"] == groups
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_promtool_accepts_the_prometheus_rule_as_a_rule_file(tmp_path: Path) -> None:
    (rule,) = of_kind("r1-vllm", "PrometheusRule")
    path = tmp_path / "rule.yml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_config_map_holds_the_dashboard() -> None:
    (board,) = [
        c for c in of_kind("small-cpu", "ConfigMap") if c["metadata"]["name"] == "seekserve-dashboard"
    ]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = (DEPLOY / "grafana" / "seekserve.json").read_text()
    assert board["data"]["seekserve.json"] == text
    assert json.loads(board["data"]["seekserve.json"])["title"] == json.loads(text)["title"]


def test_service_monitors_scrape_engines_as_job_seekserve_and_the_gateway() -> None:
    monitors = {m["metadata"]["name"]: m["spec"] for m in of_kind("r1-vllm", "ServiceMonitor")}
    assert set(monitors) == {"seekserve", "seekserve-gateway"}
    for spec in monitors.values():
        assert spec["jobLabel"] == "seekserve.dev/job"
        assert spec["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    assert monitors["seekserve"]["selector"]["matchLabels"]["seekserve.dev/job"] == "seekserve"
