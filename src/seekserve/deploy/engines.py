"""Engine workloads: one Deployment (a pod per replica) or LeaderWorkerSet (`nodes` pods per replica)
per served model, its Service, and the init container that fills the model cache.

    replica of a 1-node engine          replica of a 2-node engine (LeaderWorkerSet group)
    ┌ pod ─────────────────────┐        ┌ leader pod ─────────────┐  ┌ worker pod ──────────┐
    │ init: seekserve pull     │        │ init: seekserve pull    │  │ init: seekserve pull │
    │ engine :8000 (/health,   │        │ engine :8000 (rank 0,   │  │ engine (rank 1):     │
    │   /metrics, /v1)         │        │   HTTP, /metrics)       │  │   no HTTP            │
    └──────────────────────────┘        └─────────────────────────┘  └──────────────────────┘
    Service seekserve-engine-NAME selects every replica's pod, or every group's leader.

The runtimes' flags are those of the pinned images (values.images): vLLM's `vllm serve` and
LWS's vLLM example (Ray across nodes, TP inside a node, PP across nodes), SGLang's
`sglang.launch_server` as in its LWS deployment guide (`--dist-init-addr`, `--nnodes`, `--node-rank`).
"""

from __future__ import annotations

from typing import Any

from seekserve.deploy.objects import (
    ENGINE_PORT,
    Obj,
    engine_name,
    gpu_scheduling,
    http_probe,
    labels,
    meta,
    resources,
)
from seekserve.deploy.values import AutoscalingMode, CacheKind, Engine, Resources, Runtime, Values

__all__ = ["CACHE_MOUNT", "engine_objects", "mirror_url", "model_path", "serve_command"]

CACHE_MOUNT = "/var/lib/seekserve"
"""Where the model cache is mounted in every engine container; SEEKSERVE_HOME for `seekserve pull`."""
LEADER = {"seekserve.dev/role": "leader"}
_LWS_API = "leaderworkerset.x-k8s.io/v1"
_PULL_RESOURCES = Resources(cpu="2", memory="2Gi")


def model_path(engine: Engine) -> str:
    """Where `seekserve pull` leaves the weights: $SEEKSERVE_HOME/models/ORG/NAME."""
    assert engine.model is not None, "an engine on the image's default model has no pulled path"
    return f"{CACHE_MOUNT}/models/{engine.model}"


def mirror_url(values: Values) -> str:
    return values.mirror.url or f"http://seekserve-mirror.{values.namespace}.svc:{values.mirror.port}"


def serve_command(engine: Engine) -> list[str]:
    """The leader's (or single pod's) command line."""
    p = engine.parallel
    if engine.runtime is Runtime.SEEKSERVE:
        argv = ["seekserve", "serve", "--host", "0.0.0.0", "--port", str(ENGINE_PORT)]
        argv += ["--served-model-name", engine.served_model_name]
        if engine.model is not None:
            argv += ["--model", model_path(engine)]
        if engine.max_model_len:
            argv += ["--max-model-len", str(engine.max_model_len)]
        return [*argv, *engine.args]
    if engine.runtime is Runtime.VLLM:
        argv = ["vllm", "serve", model_path(engine), "--served-model-name", engine.served_model_name]
        argv += ["--host", "0.0.0.0", "--port", str(ENGINE_PORT), "--trust-remote-code"]
        argv += ["--tensor-parallel-size", str(p.tensor)]
        if p.pipeline > 1:
            argv += ["--pipeline-parallel-size", str(p.pipeline), "--distributed-executor-backend", "ray"]
        if engine.max_model_len:
            argv += ["--max-model-len", str(engine.max_model_len)]
        return [*argv, *engine.args]
    return _sglang_command(engine, rank_zero_http=True)


def _sglang_command(engine: Engine, rank_zero_http: bool) -> list[str]:
    p = engine.parallel
    argv = ["python3", "-m", "sglang.launch_server", "--model-path", model_path(engine)]
    argv += ["--served-model-name", engine.served_model_name, "--trust-remote-code", "--enable-metrics"]
    if rank_zero_http:
        argv += ["--host", "0.0.0.0", "--port", str(ENGINE_PORT)]
    argv += ["--tp-size", str(p.tensor)]
    if p.data > 1:
        argv += ["--dp-size", str(p.data), "--enable-dp-attention"]
    if p.expert > 1:
        argv += ["--ep-size", str(p.expert)]
    if engine.nodes > 1:
        argv += ["--dist-init-addr", "$(LWS_LEADER_ADDRESS):20000", "--nnodes", "$(LWS_GROUP_SIZE)"]
        argv += ["--node-rank", "$(LWS_WORKER_INDEX)"]
    if engine.max_model_len:
        argv += ["--context-length", str(engine.max_model_len)]
    return [*argv, *engine.args]


def _vllm_multinode(engine: Engine, leader: bool) -> list[str]:
    """LWS's vLLM example: the leader starts Ray's head and waits for the group, then serves; the
    workers join its Ray cluster and hold their GPUs for it."""
    script = "bash /vllm-workspace/examples/online_serving/multi-node-serving.sh"
    if not leader:
        return ["sh", "-c", f"{script} worker --ray_address=$(LWS_LEADER_ADDRESS)"]
    serve = " ".join(serve_command(engine))
    return ["sh", "-c", f"{script} leader --ray_cluster_size=$(LWS_GROUP_SIZE) && exec {serve}"]


def _command(engine: Engine, leader: bool) -> list[str]:
    if engine.nodes == 1:
        return serve_command(engine)
    if engine.runtime is Runtime.VLLM:
        return _vllm_multinode(engine, leader)
    return _sglang_command(engine, rank_zero_http=leader)


def _probes(engine: Engine) -> Obj:
    """Startup: twice the model's load time; readiness takes the pod out of the Service within 15 s;
    liveness restarts an engine whose /health fails for a minute (after startup only)."""
    startup = http_probe("/health", "http", 10, engine.startup_failure_threshold)
    return {
        "startupProbe": startup,
        "readinessProbe": http_probe("/health", "http", 5, 3),
        "livenessProbe": http_probe("/health", "http", 10, 6),
    }


def _pull_container(engine: Engine, values: Values) -> Obj:
    """`seekserve pull` from the mirror into the model cache; a file already there and verified is kept."""
    assert engine.model is not None, "only engines with a model pull one"
    return {
        "name": "pull",
        "image": values.images.seekserve,
        "command": ["seekserve", "pull", engine.model, "--mirror", mirror_url(values)],
        "env": [{"name": "SEEKSERVE_HOME", "value": CACHE_MOUNT}],
        "resources": resources(_PULL_RESOURCES),
        "volumeMounts": [{"name": "model-cache", "mountPath": CACHE_MOUNT}],
    }


def _volumes(engine: Engine, values: Values) -> list[Obj]:
    shm = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": engine.shm_size}}
    if values.model_cache.kind is CacheKind.HOST_PATH:
        cache: Obj = {"hostPath": {"path": values.model_cache.host_path, "type": "DirectoryOrCreate"}}
    else:
        cache = {"emptyDir": {}}
    return [shm, {"name": "model-cache", **cache}]


def _container(engine: Engine, values: Values, leader: bool) -> Obj:
    image = {Runtime.SEEKSERVE: values.images.seekserve, Runtime.VLLM: values.images.vllm,
             Runtime.SGLANG: values.images.sglang}[engine.runtime]  # fmt: skip
    container: Obj = {"name": "engine", "image": image, "command": _command(engine, leader)}
    env: list[Obj] = [{"name": "SEEKSERVE_HOME", "value": CACHE_MOUNT}]
    if engine.nodes > 1 and engine.runtime is Runtime.SGLANG:
        index = "metadata.labels['leaderworkerset.sigs.k8s.io/worker-index']"
        env.append({"name": "LWS_WORKER_INDEX", "valueFrom": {"fieldRef": {"fieldPath": index}}})
    container["env"] = env
    if leader:
        container["ports"] = [{"name": "http", "containerPort": ENGINE_PORT}]
        container.update(_probes(engine))
    container["resources"] = resources(engine.resources, engine.gpus_per_node, engine.rdma_resource)
    if engine.rdma_resource:  # RDMA verbs pin their buffers
        container["securityContext"] = {"capabilities": {"add": ["IPC_LOCK"]}}
    container["volumeMounts"] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "model-cache", "mountPath": CACHE_MOUNT},
    ]
    return container


def _pod_template(engine: Engine, values: Values, leader: bool) -> Obj:
    pod_labels = labels("engine", engine) | (LEADER if leader and engine.nodes > 1 else {})
    spec: Obj = {}
    if engine.model is not None:
        spec["initContainers"] = [_pull_container(engine, values)]
    spec["containers"] = [_container(engine, values, leader)]
    spec.update(gpu_scheduling(engine))
    spec["terminationGracePeriodSeconds"] = 60  # running streams finish or move to another engine
    spec["volumes"] = _volumes(engine, values)
    return {"metadata": {"labels": pod_labels}, "spec": spec}


def _replicas(engine: Engine, values: Values) -> Obj:
    """An autoscaler owns the replica count: a `replicas` here would reset it at every apply."""
    return {} if values.autoscaling.mode is not AutoscalingMode.NONE else {"replicas": engine.replicas}


def _workload(engine: Engine, values: Values) -> Obj:
    name = engine_name(engine)
    if engine.nodes == 1:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(name, values, "engine", engine),
            "spec": {
                **_replicas(engine, values),
                "selector": {"matchLabels": labels("engine", engine)},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                "template": _pod_template(engine, values, leader=True),
            },
        }
    group: dict[str, Any] = {
        "size": engine.nodes,
        "restartPolicy": "RecreateGroupOnPodRestart",  # a lost rank breaks the whole group's collectives
        "leaderTemplate": _pod_template(engine, values, leader=True),
        "workerTemplate": _pod_template(engine, values, leader=False),
    }
    return {
        "apiVersion": _LWS_API,
        "kind": "LeaderWorkerSet",
        "metadata": meta(name, values, "engine", engine),
        "spec": {
            **_replicas(engine, values),
            "startupPolicy": "LeaderCreated",
            "leaderWorkerTemplate": group,
        },
    }


def engine_objects(engine: Engine, values: Values) -> list[Obj]:
    selector = labels("engine", engine) | (LEADER if engine.nodes > 1 else {})
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(engine_name(engine), values, "engine", engine, {"seekserve.dev/job": "seekserve"}),
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": ENGINE_PORT, "targetPort": "http"}],
        },
    }
    return [_workload(engine, values), service]
