"""The gateway: its config file (a ConfigMap), its Deployment, Service and PodDisruptionBudget.

The config is the `seekserve gateway --config` YAML of docs/gateway.md: one backend per engine
(its Service), the models with their routing and fallback, the cache and shared rate limits in
Redis, and API keys whose hashes come from the Secret `gateway.secret_name` through `${NAME}`.
A change of config changes the pod template's `seekserve.dev/config-sha256` annotation, so the
Deployment rolls its pods onto the new file.
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from seekserve.deploy.objects import ENGINE_PORT, Obj, engine_name, http_probe, labels, meta, resources
from seekserve.deploy.values import Values

__all__ = ["GATEWAY", "gateway_config", "gateway_objects", "redis_url"]

GATEWAY = "seekserve-gateway"
_CONFIG_DIR = "/etc/seekserve"


def redis_url(values: Values) -> str:
    return f"redis://seekserve-redis.{values.namespace}.svc:6379/0"


def gateway_config(values: Values) -> dict[str, Any]:
    """The gateway's YAML document (as data)."""
    backends = [
        {
            "name": e.name,
            "url": f"http://{engine_name(e)}.{values.namespace}.svc:{ENGINE_PORT}/v1",
            "models": [e.served_model_name],
            "engine": e.runtime.value,
            "max_concurrency": e.max_concurrency,
        }
        for e in values.engines
    ]
    models = {
        e.served_model_name: {"routing": e.routing.value, "fallback": list(e.fallback)}
        for e in values.engines
    }
    config: dict[str, Any] = {"listen": {"host": "0.0.0.0", "port": values.gateway.port}}
    config |= {"backends": backends, "models": models}
    if values.redis.enabled:
        config["cache"] = {"backend": "redis", "url": redis_url(values), "ttl_s": values.gateway.cache_ttl_s}
        config["limits"] = {"url": redis_url(values)}
    else:
        config["cache"] = {"backend": "memory", "ttl_s": values.gateway.cache_ttl_s}
    if values.gateway.keys:
        config["keys"] = [_key(k.model_dump()) for k in values.gateway.keys]
    return config


def _key(key: dict[str, Any]) -> dict[str, Any]:
    entry = {"name": key["name"], "key_sha256": "${" + key["key_sha256_env"] + "}"}
    entry |= {field: key[field] for field in ("rpm", "tpm") if key[field] is not None}
    if key["models"]:
        entry["models"] = list(key["models"])
    return entry | {"priority": key["priority"]}


def _deployment(values: Values, config_text: str) -> Obj:
    gw = values.gateway
    container: Obj = {
        "name": "gateway",
        "image": values.images.seekserve,
        "command": ["seekserve", "gateway", "--config", f"{_CONFIG_DIR}/gateway.yaml"],
        "ports": [{"name": "http", "containerPort": gw.port}],
    }
    if gw.secret_name:
        container["envFrom"] = [{"secretRef": {"name": gw.secret_name}}]
    # /health is 503 while no engine is usable (scaled to zero, all loading): that is the engines'
    # state, not the gateway's, so probes read /metrics, which answers whenever the process serves.
    container["readinessProbe"] = http_probe("/metrics", "http", 5, 3, timeout_s=2)
    container["livenessProbe"] = http_probe("/metrics", "http", 10, 6, timeout_s=5)
    container["resources"] = resources(gw.resources)
    container["volumeMounts"] = [{"name": "config", "mountPath": _CONFIG_DIR, "readOnly": True}]
    spread = {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": labels("gateway")},
    }
    checksum = hashlib.sha256(config_text.encode()).hexdigest()
    template = {
        "metadata": {"labels": labels("gateway"), "annotations": {"seekserve.dev/config-sha256": checksum}},
        "spec": {
            "containers": [container],
            "topologySpreadConstraints": [spread],
            "volumes": [{"name": "config", "configMap": {"name": GATEWAY}}],
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(GATEWAY, values, "gateway"),
        "spec": {
            "replicas": gw.replicas,
            "selector": {"matchLabels": labels("gateway")},
            "template": template,
        },
    }


def gateway_objects(values: Values) -> list[Obj]:
    config_text = yaml.safe_dump(gateway_config(values), sort_keys=False)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(GATEWAY, values, "gateway"),
        "data": {"gateway.yaml": config_text},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(GATEWAY, values, "gateway", extra={"seekserve.dev/job": GATEWAY}),
        "spec": {
            "selector": labels("gateway"),
            "ports": [{"name": "http", "port": values.gateway.port, "targetPort": "http"}],
        },
    }
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(GATEWAY, values, "gateway"),
        "spec": {
            "minAvailable": values.gateway.min_available,
            "selector": {"matchLabels": labels("gateway")},
        },
    }
    return [config_map, _deployment(values, config_text), service, budget]
