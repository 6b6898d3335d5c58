"""Prometheus Operator objects and the Grafana dashboard, from the files in deploy/ (one source of truth).

deploy/prometheus/recording_rules.yml + alert_rules.yml ─ PrometheusRule seekserve (their groups)
deploy/grafana/seekserve.json ─────────────────────────── ConfigMap seekserve-dashboard
                                                           (grafana_dashboard: "1", Grafana's sidecar)
engine Services (seekserve.dev/job: seekserve) ────────── ServiceMonitor seekserve: job="seekserve",
                                                           as the shipped alerts expect
gateway Service ───────────────────────────────────────── ServiceMonitor seekserve-gateway
"""

from __future__ import annotations

from pathlib import Path

import yaml

from seekserve.deploy.objects import PART_OF, Obj, meta
from seekserve.deploy.values import Values

__all__ = ["RULE_FILES", "monitoring_objects", "rule_groups"]

RULE_FILES = ("prometheus/recording_rules.yml", "prometheus/alert_rules.yml")
"""Relative to the deploy/ folder."""
DASHBOARD_FILE = "grafana/seekserve.json"


def rule_groups(deploy_dir: Path) -> list[Obj]:
    return [
        group for name in RULE_FILES for group in yaml.safe_load((deploy_dir / name).read_text())["groups"]
    ]


def _service_monitor(name: str, job: str, values: Values) -> Obj:
    mon = values.monitoring
    endpoint = {"port": "http", "path": "/metrics", "interval": mon.scrape_interval}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta(name, values, "monitoring", extra=mon.labels),
        "spec": {
            "jobLabel": "seekserve.dev/job",
            "selector": {"matchLabels": {**PART_OF, "seekserve.dev/job": job}},
            "namespaceSelector": {"matchNames": [values.namespace]},
            "endpoints": [endpoint],
        },
    }


def monitoring_objects(values: Values, deploy_dir: Path) -> list[Obj]:
    mon = values.monitoring
    found: list[Obj] = []
    if mon.service_monitors:
        found.append(_service_monitor("seekserve", "seekserve", values))
        found.append(_service_monitor("seekserve-gateway", "seekserve-gateway", values))
    if mon.prometheus_rule:
        found.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PrometheusRule",
                "metadata": meta("seekserve", values, "monitoring", extra=mon.labels),
                "spec": {"groups": rule_groups(deploy_dir)},
            }
        )
    if mon.dashboard:
        found.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": meta(
                    "seekserve-dashboard", values, "monitoring", extra={"grafana_dashboard": "1"}
                ),
                "data": {"seekserve.json": (deploy_dir / DASHBOARD_FILE).read_text()},
            }
        )
    return found
