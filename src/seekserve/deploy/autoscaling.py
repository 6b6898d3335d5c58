"""Autoscalers for the engines: KEDA ScaledObjects on queue and KV-cache usage (the default), or the
field guide's HorizontalPodAutoscaler on GPU utilisation; docs/deploy.md explains the choice.

KEDA (mode keda), per engine, through its prometheus scaler:
    queue     sum of the engine's waiting requests           AverageValue queue_threshold per replica
    kv-cache  sum over replicas of each one's KV usage       AverageValue kv_cache_threshold per replica
    wake      the gateway's request rate for the model       activates from zero (scale_to_zero only)
HPA (mode hpa), per engine:
    GPU engines  DCGM_FI_DEV_GPU_UTIL per pod through prometheus-adapter (gpu_utilization), average 80
    CPU engines  the container's CPU, averageUtilization 80
Both scale down by at most one replica per `scale_down_window_s` after that long a stabilisation.
"""

from __future__ import annotations

import yaml

from seekserve.deploy.objects import Obj, engine_name, meta
from seekserve.deploy.values import Engine, Runtime, Values

__all__ = [
    "ADAPTER_METRIC",
    "KV_USAGE",
    "QUEUE",
    "adapter_rules",
    "hpa_objects",
    "keda_objects",
]

QUEUE = {
    Runtime.SEEKSERVE: "seekserve:num_requests_waiting",
    Runtime.VLLM: "vllm:num_requests_waiting",
    Runtime.SGLANG: "sglang:num_queue_reqs",
}
"""Requests waiting for a batch slot, in each runtime's name."""
KV_USAGE = {
    Runtime.SEEKSERVE: "seekserve:kv_cache_usage_perc",
    Runtime.VLLM: "vllm:kv_cache_usage_perc",
    Runtime.SGLANG: "sglang:token_usage",
}
"""Share of the KV cache in use, 0..1, in each runtime's name."""
ADAPTER_METRIC = "gpu_utilization"
"""The custom metric prometheus-adapter serves from DCGM_FI_DEV_GPU_UTIL (adapter_rules)."""


def _selector(engine: Engine, values: Values) -> str:
    # ServiceMonitor targets carry the namespace and the Service they were found through.
    return f'namespace="{values.namespace}",service="{engine_name(engine)}"'


def _target(engine: Engine) -> Obj:
    if engine.nodes > 1:
        return {
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "name": engine_name(engine),
        }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": engine_name(engine)}


def _behavior(values: Values) -> Obj:
    window = values.autoscaling.scale_down_window_s
    one_per_window = {"type": "Pods", "value": 1, "periodSeconds": window}
    return {"scaleDown": {"stabilizationWindowSeconds": window, "policies": [one_per_window]}}


def _trigger(name: str, query: str, threshold: str, values: Values, **extra: str) -> Obj:
    metadata = {"serverAddress": values.autoscaling.prometheus_url, "query": query, "threshold": threshold}
    return {"type": "prometheus", "name": name, "metricType": "AverageValue", "metadata": metadata | extra}


def _triggers(engine: Engine, values: Values) -> list[Obj]:
    where = _selector(engine, values)
    scaling = engine.autoscaling
    queue = f"sum({QUEUE[engine.runtime]}{{{where}}})"
    kv = f"sum(avg by (pod) ({KV_USAGE[engine.runtime]}{{{where}}}))"
    triggers = [
        _trigger("queue", queue, f"{scaling.queue_threshold:g}", values),
        _trigger("kv-cache", kv, f"{scaling.kv_cache_threshold:g}", values),
    ]
    if scaling.scale_to_zero:
        # With no engine pod there is no engine metric: the gateway's count of requests for the
        # model (answered 503 meanwhile) is what wakes it. Its threshold is out of reach, so it
        # only activates and never adds replicas of its own.
        model = f'namespace="{values.namespace}",model="{engine.served_model_name}"'
        wake = f"sum(rate(seekserve:gateway_requests_total{{{model}}}[2m]))"
        triggers.append(_trigger("wake", wake, "1000000", values, activationThreshold="0"))
    return triggers


def keda_objects(engine: Engine, values: Values) -> list[Obj]:
    scaling = engine.autoscaling
    spec: Obj = {
        "scaleTargetRef": _target(engine),
        "pollingInterval": values.autoscaling.polling_interval_s,
        "cooldownPeriod": values.autoscaling.cooldown_s,
        "minReplicaCount": 0 if scaling.scale_to_zero else scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(values)}},
        "triggers": _triggers(engine, values),
    }
    metadata = meta(engine_name(engine), values, "autoscaler", engine)
    return [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": metadata, "spec": spec}]


def hpa_objects(engine: Engine, values: Values) -> list[Obj]:
    target = values.autoscaling.gpu_utilization_target
    if engine.gpus_per_node:
        metric: Obj = {
            "type": "Pods",
            "pods": {
                "metric": {"name": ADAPTER_METRIC},
                # A custom metric has no "Utilization" target (that is for cpu and memory only):
                # the DCGM gauge is already a percentage, so its average value is the target.
                "target": {"type": "AverageValue", "averageValue": str(target)},
            },
        }
    else:
        utilization = {"type": "Utilization", "averageUtilization": target}
        metric = {"type": "Resource", "resource": {"name": "cpu", "target": utilization}}
    spec = {
        "scaleTargetRef": _target(engine),
        "minReplicas": engine.autoscaling.min_replicas,
        "maxReplicas": engine.autoscaling.max_replicas,
        "metrics": [metric],
        "behavior": _behavior(values),
    }
    metadata = meta(engine_name(engine), values, "autoscaler", engine)
    return [
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata,
            "spec": spec,
        }
    ]


def adapter_rules(values: Values) -> Obj:
    """prometheus-adapter's rule turning dcgm-exporter's per-GPU gauge into a per-pod custom metric
    (pass its `config.yaml` to the adapter, e.g. the prometheus-adapter chart's `rules.custom`).
    dcgm-exporter labels each GPU with the pod using it (`pod`, `namespace`) when it runs with its
    Kubernetes mapping, as the GPU Operator deploys it."""
    rules = {
        "rules": [
            {
                "seriesQuery": 'DCGM_FI_DEV_GPU_UTIL{namespace!="",pod!=""}',
                "resources": {
                    "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
                },
                "name": {"matches": "^DCGM_FI_DEV_GPU_UTIL$", "as": ADAPTER_METRIC},
                "metricsQuery": "avg by (<<.GroupBy>>) (DCGM_FI_DEV_GPU_UTIL{<<.LabelMatchers>>})",
            }
        ]
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta("seekserve-prometheus-adapter-rules", values, "autoscaler"),
        "data": {"config.yaml": yaml.safe_dump(rules, sort_keys=False)},
    }
