"""What every manifest shares: names, labels, metadata, probes, resources.

Every object carries `app.kubernetes.io/part-of: seekserve` and a component label; engine objects
also `seekserve.dev/engine: NAME`. Services select pods by those labels, ServiceMonitors select
Services by them, and `seekserve.dev/job` names the Prometheus job (the shipped alerts expect
`job="seekserve"` for engines).
"""

from __future__ import annotations

from typing import Any

from seekserve.deploy.values import Engine, Resources, Values

__all__ = [
    "ENGINE_PORT",
    "PART_OF",
    "Obj",
    "engine_name",
    "gpu_scheduling",
    "http_probe",
    "labels",
    "meta",
    "resources",
]

Obj = dict[str, Any]
"""One Kubernetes object as plain data, in the order its YAML is written."""

PART_OF = {"app.kubernetes.io/part-of": "seekserve"}
ENGINE_PORT = 8000
"""Every engine container listens here (seekserve, vLLM and SGLang alike), so Services and
ServiceMonitors need not know the runtime."""


def labels(component: str, engine: Engine | None = None) -> dict[str, str]:
    found = {**PART_OF, "app.kubernetes.io/component": component}
    if engine is not None:
        found["seekserve.dev/engine"] = engine.name
    return found


def meta(
    name: str,
    values: Values,
    component: str,
    engine: Engine | None = None,
    extra: dict[str, str] | None = None,
) -> Obj:
    """Name, namespace and labels; `extra` labels go after the standard ones."""
    return {
        "name": name,
        "namespace": values.namespace,
        "labels": {**labels(component, engine), **(extra or {})},
    }


def engine_name(engine: Engine) -> str:
    return f"seekserve-engine-{engine.name}"


def resources(res: Resources, gpus: int = 0, rdma: str | None = None) -> Obj:
    """Requests equal limits: a Guaranteed pod is the last the kubelet evicts under memory pressure."""
    amounts: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    if gpus:
        amounts["nvidia.com/gpu"] = gpus
    if rdma:
        amounts[rdma] = 1
    return {"requests": dict(amounts), "limits": dict(amounts)}


def http_probe(path: str, port: str, period_s: int, failures: int, timeout_s: int = 5) -> Obj:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period_s,
        "timeoutSeconds": timeout_s,
        "failureThreshold": failures,
    }


def gpu_scheduling(engine: Engine) -> Obj:
    """nodeSelector and tolerations that put a GPU engine on its GPU nodes (empty without GPUs)."""
    if not engine.gpus_per_node:
        return {}
    selector = {"nvidia.com/gpu.present": "true"}
    if engine.gpu_product:
        selector["nvidia.com/gpu.product"] = engine.gpu_product
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    return {"nodeSelector": selector, "tolerations": [toleration]}
