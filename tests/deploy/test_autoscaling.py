"""The autoscalers: KEDA on queue and KV-cache usage (the default), the field guide's HPA on GPU
utilisation; their PromQL parses (promtool), and every metric they or the rules read is one that
seekserve's engine or gateway exports (their registries, instantiated) or one the pinned vLLM,
SGLang and dcgm-exporter document (deploy/runtimes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy.kube import VARIANTS, of_kind
from deploy.runtimes import DCGM_METRICS, SGLANG_METRICS, VLLM_METRICS
from metrics.promql import exported_names, metric_names, promtool, recording_rule_names, rules
from seekserve.gateway.backends import BackendPool
from seekserve.gateway.metrics import GatewayMetrics

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def gateway_exported_names() -> set[str]:
    """The series names of a gateway's registry, from its metric families (a family with no sample yet
    still names the series it will have)."""
    metrics = GatewayMetrics(lambda: BackendPool(), lambda: 0)
    names = set()
    for family in metrics.registry.collect():
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def scaler_queries(variant: str) -> list[str]:
    return [t["metadata"]["query"] for s in of_kind(variant, "ScaledObject") for t in s["spec"]["triggers"]]


def adapter_queries(variant: str) -> list[str]:
    """prometheus-adapter's series and metrics queries, its template placeholders filled as it fills them."""
    found = []
    for config in of_kind(variant, "ConfigMap"):
        if "config.yaml" in config["data"]:
            for rule in yaml.safe_load(config["data"]["config.yaml"])["rules"]:
                query = rule["metricsQuery"].replace("<<.GroupBy>>", "pod")
                found += [rule["seriesQuery"], query.replace("<<.LabelMatchers>>", 'namespace="seekserve"')]
    return found


def test_keda_scales_the_distill_on_queue_kv_cache_and_wakes_from_zero() -> None:
    (scaler,) = of_kind("small-cpu", "ScaledObject")
    spec = scaler["spec"]
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (15, 360)
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 8)
    assert (
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
            "stabilizationWindowSeconds"
        ]
        == 300
    )
    where = 'namespace="seekserve",service="seekserve-engine-distill"'
    assert [(t["name"], t["metadata"]["query"], t["metadata"]["threshold"]) for t in spec["triggers"]] == [
        ("queue", f"sum(seekserve:num_requests_waiting{{{where}}})", "5"),
        ("kv-cache", f"sum(avg by (pod) (seekserve:kv_cache_usage_perc{{{where}}}))", "0.8"),
        ("wake", 'sum(rate(seekserve:gateway_requests_total{namespace="seekserve",'
                 'model="deepseek-r1-distill-qwen-1.5b"}[2m]))', "1000000"),
    ]  # fmt: skip
    assert spec["triggers"][2]["metadata"]["activationThreshold"] == "0"


@pytest.mark.parametrize(
    ("variant", "queue", "kv", "kind"),
    [
        ("r1-vllm", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "Deployment"),
        ("r1-vllm-multinode", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "LeaderWorkerSet"),
        ("r1-sglang-multinode", "sglang:num_queue_reqs", "sglang:token_usage", "LeaderWorkerSet"),
    ],
)
def test_keda_reads_each_runtime_in_its_own_names(variant: str, queue: str, kv: str, kind: str) -> None:
    r1 = next(s for s in of_kind(variant, "ScaledObject") if s["metadata"]["name"] == "seekserve-engine-r1")
    assert r1["spec"]["scaleTargetRef"]["kind"] == kind
    assert r1["spec"]["minReplicaCount"] == 1
    assert [metric_names(t["metadata"]["query"]) for t in r1["spec"]["triggers"]] == [{queue}, {kv}]


def test_the_hpa_variant_is_the_field_guides() -> None:
    by_name = {h["metadata"]["name"]: h["spec"] for h in of_kind("r1-vllm-hpa", "HorizontalPodAutoscaler")}
    gpu, cpu = by_name["seekserve-engine-r1"], by_name["seekserve-engine-distill"]
    assert gpu["metrics"] == [
        {"type": "Pods", "pods": {"metric": {"name": "gpu_utilization"},
                                  "target": {"type": "AverageValue", "averageValue": "80"}}}
    ]  # fmt: skip
    assert cpu["metrics"][0]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 80},
    }
    for spec in (gpu, cpu):
        assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert not of_kind("r1-vllm-hpa", "ScaledObject")
    assert metric_names(adapter_queries("r1-vllm-hpa")[1]) == {"DCGM_FI_DEV_GPU_UTIL"}


def test_promtool_parses_every_autoscaler_query(tmp_path: Path) -> None:
    queries = [q for v in VARIANTS for q in scaler_queries(v) + adapter_queries(v)]
    assert len(queries) == 13
    group = {
        "name": "autoscalers",
        "rules": [{"record": f"check:query{i}", "expr": q} for i, q in enumerate(queries)],
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 13 rules found" in checked.stdout


def test_every_metric_an_autoscaler_or_rule_reads_is_exported() -> None:
    known = exported_names() | gateway_exported_names() | VLLM_METRICS | SGLANG_METRICS | DCGM_METRICS
    read = {
        name for v in VARIANTS for q in scaler_queries(v) + adapter_queries(v) for name in metric_names(q)
    }
    read |= {name for rule in rules() for name in metric_names(rule["expr"])}
    assert read - known - recording_rule_names() - {"up"} == set()
    # the engine and gateway names are read from the registries, not listed here
    assert {"seekserve:num_requests_waiting", "seekserve:kv_cache_usage_perc"} <= exported_names()
    assert "seekserve:gateway_requests_total" in gateway_exported_names()


def test_an_unexported_name_would_be_caught() -> None:
    known = exported_names() | gateway_exported_names()
    assert metric_names("sum(seekserve:num_requests_queued{})") - known == {"seekserve:num_requests_queued"}
