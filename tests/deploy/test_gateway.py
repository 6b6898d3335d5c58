"""The gateway's objects: its ConfigMap is a config `seekserve gateway` loads, pointing at the
rendered engine Services and Redis; keys come from the Secret; replicas, budget and probes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from deploy.kube import of_kind
from seekserve.gateway.config import CacheKind, load_config

KEY_SHA256 = hashlib.sha256(b"sk-test").hexdigest()


def test_the_config_map_is_a_gateway_config_over_the_rendered_services(tmp_path: Path) -> None:
    (config_map,) = [
        c for c in of_kind("r1-vllm", "ConfigMap") if c["metadata"]["name"] == "seekserve-gateway"
    ]
    path = tmp_path / "gateway.yaml"
    path.write_text(config_map["data"]["gateway.yaml"])
    config = load_config(path, environ={"TEAM_KEY_SHA256": KEY_SHA256})
    services = {s["metadata"]["name"]: s for s in of_kind("r1-vllm", "Service")}
    for backend in config.backends:
        host, port = backend.url.removeprefix("http://").removesuffix("/v1").split(":")
        name, namespace = host.split(".")[:2]
        assert namespace == "seekserve" and int(port) in {p["port"] for p in services[name]["spec"]["ports"]}
    assert [(b.name, b.models, b.engine.value) for b in config.backends] == [
        ("r1", ("deepseek-r1",), "vllm"), ("distill", ("deepseek-r1-distill-qwen-1.5b",), "seekserve")
    ]  # fmt: skip
    assert config.model("deepseek-r1").fallback == ("deepseek-r1-distill-qwen-1.5b",)
    assert config.cache.backend is CacheKind.REDIS
    assert config.cache.url == config.limits.url == "redis://seekserve-redis.seekserve.svc:6379/0"
    assert "seekserve-redis" in services
    assert [(k.name, k.key_sha256, k.rpm) for k in config.keys] == [("team", KEY_SHA256, 600)]


def test_the_deployment_reads_the_secret_and_rolls_on_a_config_change() -> None:
    (config_map,) = [
        c for c in of_kind("r1-vllm", "ConfigMap") if c["metadata"]["name"] == "seekserve-gateway"
    ]
    (deployment,) = [
        d for d in of_kind("r1-vllm", "Deployment") if d["metadata"]["name"] == "seekserve-gateway"
    ]
    template = deployment["spec"]["template"]
    checksum = hashlib.sha256(config_map["data"]["gateway.yaml"].encode()).hexdigest()
    assert template["metadata"]["annotations"]["seekserve.dev/config-sha256"] == checksum
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["seekserve", "gateway", "--config", "/etc/seekserve/gateway.yaml"]
    assert container["envFrom"] == [{"secretRef": {"name": "seekserve-gateway-keys"}}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "http"}
    assert deployment["spec"]["replicas"] == 3
    (budget,) = of_kind("r1-vllm", "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 2


def test_without_keys_there_is_no_secret_and_the_cache_still_uses_redis() -> None:
    (config_map,) = [
        c for c in of_kind("small-cpu", "ConfigMap") if c["metadata"]["name"] == "seekserve-gateway"
    ]
    config = yaml.safe_load(config_map["data"]["gateway.yaml"])
    assert "keys" not in config and config["cache"]["backend"] == "redis"
    (deployment,) = [
        d for d in of_kind("small-cpu", "Deployment") if d["metadata"]["name"] == "seekserve-gateway"
    ]
    assert "envFrom" not in deployment["spec"]["template"]["spec"]["containers"][0]
