"""What the tests need of PromQL: the metric names an expression reads, and the names seekserve exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from metrics.scrape import Scrape
from seekserve.engine.llm_engine import EngineStats
from seekserve.metrics import GpuSample, ServerMetrics

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULE_FILES = (PROMETHEUS_DIR / "recording_rules.yml", PROMETHEUS_DIR / "alert_rules.yml")
DASHBOARD = REPO / "deploy" / "grafana" / "seekserve.json"

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "atan2"}  # fmt: skip
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$:])[a-zA-Z_:][a-zA-Z0-9_:]*(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric (series) names an expression selects; functions, keywords and labels are not names."""
    text = _STRINGS.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _LABEL_LISTS.sub("", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def exported_names() -> set[str]:
    """Every series name a seekserve server exports once loaded, GPUs included."""
    metrics = ServerMetrics("m", lambda: EngineStats(0, 0, 0.0, 0, 0, 0))
    metrics.gpus = (GpuSample(0, "GPU", "GPU-0", 0.0, 0.0, 0, 1, 1.0, 1.0),)
    return Scrape(metrics.render().decode(), model_name="m").names()


def recording_rule_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def rules() -> list[dict[str, str]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def dashboard_exprs(path: Path = DASHBOARD) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variable queries."""
    data = json.loads(path.read_text())
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    for var in data["templating"]["list"]:
        if var["type"] == "query":
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"]["query"])
            assert match, f"variable {var['name']}: expected label_values(selector, label)"
            exprs.append(match.group(1))
    return exprs


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool (Debian's `prometheus` package); skip the test where it is not installed."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("no promtool on PATH: install Debian's `prometheus` package (apt-get install prometheus)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)
