"""The shipped Prometheus rules: valid for promtool, unit-tested alert by alert, on metrics that exist."""

from __future__ import annotations

import yaml

from metrics.promql import (
    PROMETHEUS_DIR,
    RULE_FILES,
    exported_names,
    metric_names,
    promtool,
    recording_rule_names,
    rules,
)

RULES_TEST = PROMETHEUS_DIR / "tests" / "rules_test.yml"
P99 = "histogram_quantile(0.99, sum(rate(seekserve:e2e_request_latency_seconds_bucket[5m])) by (le))"


def test_promtool_checks_the_rules_and_the_example_config() -> None:
    checked = promtool("check", "rules", *map(str, RULE_FILES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_pass() -> None:
    tested = promtool("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert len(alerts) == 7
    fired, quiet = set(), set()
    for case in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == alerts, f"alerts never seen firing: {alerts - fired}"
    assert quiet == alerts, f"alerts never seen quiet: {alerts - quiet}"


def test_the_p99_recording_rule_is_the_documented_expression() -> None:
    by_name = {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}
    assert by_name["job:seekserve:e2e_latency_seconds:p99"] == P99


def test_rules_read_only_metrics_seekserve_exports() -> None:
    known = exported_names() | recording_rule_names() | {"up"}
    for rule in rules():
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')} reads unknown metrics {unknown}"
