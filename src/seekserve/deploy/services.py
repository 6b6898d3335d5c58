"""What the gateway and engines lean on: the namespace, Redis (response cache and shared rate
limits) and the in-cluster weight mirror that `seekserve pull` reads from."""

from __future__ import annotations

from seekserve.deploy.objects import Obj, labels, meta, resources
from seekserve.deploy.values import Resources, Values

__all__ = ["mirror_objects", "namespace", "redis_objects"]


def namespace(values: Values) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": values.namespace, "labels": labels("namespace")},
    }


def _service(name: str, values: Values, component: str, port: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, values, component),
        "spec": {"selector": labels(component), "ports": [{"name": "tcp", "port": port, "targetPort": port}]},
    }


def _deployment(name: str, values: Values, component: str, pod: Obj) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, values, component),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one pod owns the port's data at a time
            "selector": {"matchLabels": labels(component)},
            "template": {"metadata": {"labels": labels(component)}, "spec": pod},
        },
    }


def redis_objects(values: Values) -> list[Obj]:
    """One Redis without persistence: losing the cache or a minute's rate counts on a restart is
    cheaper than a disk; least recently used keys go first at `max_memory`."""
    argv = ["redis-server", "--save", "", "--appendonly", "no", "--maxmemory", values.redis.max_memory]
    container = {
        "name": "redis",
        "image": values.images.redis,
        "command": [*argv, "--maxmemory-policy", "allkeys-lru"],
        "ports": [{"name": "tcp", "containerPort": 6379}],
        "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 10},
        "resources": resources(Resources(cpu="1", memory="3Gi")),
    }
    pod = {"containers": [container]}
    return [
        _deployment("seekserve-redis", values, "redis", pod),
        _service("seekserve-redis", values, "redis", 6379),
    ]


def mirror_objects(values: Values) -> list[Obj]:
    """`seekserve mirror serve` over a volume that holds each model once for the whole cluster."""
    port = values.mirror.port
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta("seekserve-mirror", values, "mirror"),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": values.mirror.storage_size}},
        },
    }
    container = {
        "name": "mirror",
        "image": values.images.seekserve,
        "command": ["seekserve", "mirror", "serve", "/mirror", "--host", "0.0.0.0", "--port", str(port)],
        "ports": [{"name": "tcp", "containerPort": port}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 5},
        "resources": resources(Resources(cpu="2", memory="2Gi")),
        "volumeMounts": [{"name": "weights", "mountPath": "/mirror"}],
    }
    pod = {
        "containers": [container],
        "volumes": [{"name": "weights", "persistentVolumeClaim": {"claimName": "seekserve-mirror"}}],
    }
    deployment = _deployment("seekserve-mirror", values, "mirror", pod)
    return [claim, deployment, _service("seekserve-mirror", values, "mirror", port)]
