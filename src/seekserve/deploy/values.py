"""The values of the Kubernetes manifests: `deploy/k8s/values.yaml` merged with a variant's overrides.

    values.yaml (defaults) ─┐
    variants/NAME.yaml ─────┼─ merge() ─ Values (pydantic: unknown keys and bad values are errors)
    -f my-values.yaml ──────┘

A mapping in a later file updates the one before it key by key; anything else (a list, a number)
replaces it whole, as Helm merges values files. Every field is documented where it is declared.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from seekserve.errors import ConfigError
from seekserve.gateway.config import RoutingKind, validated

__all__ = [
    "Autoscaling",
    "AutoscalingMode",
    "Engine",
    "Runtime",
    "Values",
    "load_values",
    "merge",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Runtime(StrEnum):
    """What runs the model inside an engine pod."""

    SEEKSERVE = "seekserve"
    """`seekserve serve`: small models, CPU or one GPU."""
    VLLM = "vllm"
    """vLLM's OpenAI server: tensor and pipeline parallel over one or more nodes (Ray across nodes)."""
    SGLANG = "sglang"
    """SGLang's server: data-parallel attention and expert parallelism over one or more nodes."""


class AutoscalingMode(StrEnum):
    KEDA = "keda"
    """KEDA ScaledObjects on the engines' queue and KV-cache usage (the default; docs/deploy.md says why)."""
    HPA = "hpa"
    """HorizontalPodAutoscalers on DCGM GPU utilisation through prometheus-adapter (the field guide's)."""
    NONE = "none"


class Images(_Section):
    seekserve: str = "seekserve/seekserve:0.1.0"
    vllm: str = "vllm/vllm-openai:v0.11.0"
    sglang: str = "lmsysorg/sglang:v0.5.4-cu129"
    redis: str = "redis:7.4-alpine"
    host_tools: str = "busybox:1.37"
    """The host-tuning DaemonSet's image: a shell and sysctl."""


class Resources(_Section):
    """Requests of an engine or gateway container; limits equal requests (a Guaranteed pod)."""

    cpu: str = "2"
    memory: str = "4Gi"


class Parallel(_Section):
    """How one engine replica splits the model over its GPUs (from `seekserve plan`)."""

    tensor: int = Field(default=1, ge=1)
    pipeline: int = Field(default=1, ge=1)
    data: int = Field(default=1, ge=1)
    """Data-parallel attention ranks (SGLang `--dp-size`); 1 for plain tensor parallelism."""
    expert: int = Field(default=1, ge=1)
    """Expert-parallel ranks of the MoE layers (SGLang `--ep-size`)."""


class EngineScaling(_Section):
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=4, ge=1)
    queue_threshold: float = Field(default=5, gt=0)
    """Waiting requests per replica that add a replica (vLLM production-stack's 5; GKE says 3 to 5)."""
    kv_cache_threshold: float = Field(default=0.8, gt=0, le=1)
    """Mean KV-cache usage (0..1) that adds a replica."""
    scale_to_zero: bool = False
    """Let KEDA remove the last replica when idle; the gateway's request rate wakes it (KEDA only)."""

    @model_validator(mode="after")
    def _check(self) -> EngineScaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas {self.max_replicas} is below min_replicas {self.min_replicas}: raise it"
            )
        return self


class Engine(_Section):
    """One served model: a Deployment (one pod per replica) or a LeaderWorkerSet (`nodes` pods)."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
    """Kubernetes name suffix: seekserve-engine-NAME."""
    served_model_name: str
    """What clients send as `model`, and the gateway routes on."""
    model: str | None = None
    """What `seekserve pull` fetches into the model cache (org/name); None: the image's default model."""
    runtime: Runtime = Runtime.SEEKSERVE
    nodes: int = Field(default=1, ge=1)
    """Pods (nodes) per replica; above 1 the replica is a LeaderWorkerSet group."""
    gpus_per_node: int = Field(default=0, ge=0)
    gpu_product: str | None = None
    """nodeSelector nvidia.com/gpu.product (GPU feature discovery's label), e.g. NVIDIA-H200."""
    parallel: Parallel = Parallel()
    replicas: int = Field(default=1, ge=0)
    """Replicas when no autoscaler manages them."""
    max_model_len: int | None = Field(default=None, ge=1)
    args: tuple[str, ...] = ()
    """More arguments for the engine's command line."""
    resources: Resources = Resources()
    shm_size: str = "1Gi"
    """Size of the /dev/shm memory volume (NCCL and the engines' worker processes use it)."""
    load_time_s: int = Field(default=120, ge=1)
    """How long the model takes to load, measured or estimated (docs/deploy.md); the startup probe
    waits twice as long before the pod is restarted."""
    rdma_resource: str | None = None
    """A device-plugin resource giving the pod an RDMA NIC (e.g. rdma/ib), for multi-node collectives."""
    routing: RoutingKind = RoutingKind.LEAST_LOADED
    fallback: tuple[str, ...] = ()
    """served_model_names the gateway tries when this model cannot answer."""
    max_concurrency: int = Field(default=256, ge=1)
    """Requests the gateway sends this engine's Service at once before it counts as saturated."""
    autoscaling: EngineScaling = EngineScaling()

    @model_validator(mode="after")
    def _check(self) -> Engine:
        p = self.parallel
        gpus = self.nodes * self.gpus_per_node
        if self.runtime is Runtime.SEEKSERVE and (self.nodes > 1 or self.gpus_per_node > 1):
            raise ValueError(
                f"engine {self.name}: seekserve serves on one device; nodes {self.nodes} and "
                f"gpus_per_node {self.gpus_per_node} need runtime vllm or sglang"
            )
        if self.runtime is Runtime.VLLM and p.tensor * p.pipeline != max(gpus, 1):
            raise ValueError(
                f"engine {self.name}: tensor {p.tensor} x pipeline {p.pipeline} must equal its "
                f"{gpus} GPUs (nodes x gpus_per_node)"
            )
        if self.runtime is Runtime.SGLANG and p.tensor != gpus:
            raise ValueError(
                f"engine {self.name}: SGLang's tensor size {p.tensor} must equal its {gpus} GPUs "
                f"(nodes x gpus_per_node); data and expert ranks divide it"
            )
        if self.runtime is Runtime.SGLANG and (p.tensor % p.data or p.tensor % p.expert):
            raise ValueError(
                f"engine {self.name}: data {p.data} and expert {p.expert} must divide {p.tensor}"
            )
        return self

    @property
    def startup_failure_threshold(self) -> int:
        """Startup probes every 10 s for twice the load time."""
        return math.ceil(2 * self.load_time_s / 10)


class GatewayKey(_Section):
    name: str
    key_sha256_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    """The Secret key (an environment variable) holding the hex SHA-256 of the API key."""
    models: tuple[str, ...] = ()
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    priority: int = Field(default=1, ge=0, le=9)


class Gateway(_Section):
    replicas: int = Field(default=3, ge=1)
    min_available: int = Field(default=2, ge=0)
    """PodDisruptionBudget: gateway pods kept through node drains."""
    port: int = Field(default=4000, ge=1, le=65535)
    resources: Resources = Resources(cpu="2", memory="1Gi")
    cache_ttl_s: float = Field(default=600, gt=0)
    secret_name: str | None = None
    """A Secret (created beside the release) whose keys become the gateway's environment: the
    `${NAME}` references of `keys[].key_sha256_env` and `backends`' api keys."""
    keys: tuple[GatewayKey, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Gateway:
        if self.min_available >= self.replicas and self.replicas > 1:
            raise ValueError(
                f"gateway.min_available {self.min_available} leaves no pod to drain with "
                f"{self.replicas} replicas: make it at most {self.replicas - 1}"
            )
        if self.keys and self.secret_name is None:
            raise ValueError("gateway.keys read their hashes from a Secret: set gateway.secret_name")
        return self


class Redis(_Section):
    enabled: bool = True
    max_memory: str = "2gb"
    """Redis `maxmemory`; least recently used keys go first beyond it."""


class Mirror(_Section):
    enabled: bool = True
    url: str | None = None
    """A mirror outside the cluster; None with enabled: one `seekserve mirror serve` in the cluster."""
    storage_size: str = "1Ti"
    port: int = 8090


class CacheKind(StrEnum):
    HOST_PATH = "host_path"
    """A directory on each node: weights survive pod restarts and are pulled once per node."""
    EMPTY_DIR = "empty_dir"
    """Pulled again by every new pod."""


class ModelCache(_Section):
    kind: CacheKind = CacheKind.HOST_PATH
    host_path: str = "/var/lib/seekserve"


class Autoscaling(_Section):
    mode: AutoscalingMode = AutoscalingMode.KEDA
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    """Where KEDA's prometheus scaler sends its queries."""
    polling_interval_s: int = Field(default=15, ge=1)
    cooldown_s: int = Field(default=360, ge=0)
    """KEDA: idle time before scaling to zero (production-stack's 360 s)."""
    scale_down_window_s: int = Field(default=300, ge=0, le=3600)
    """HPA behavior: scale-down stabilisation window (the field guide's and llm-d's 300 s)."""
    gpu_utilization_target: int = Field(default=80, ge=1, le=100)
    """HPA mode: mean DCGM GPU utilisation (percent) per pod."""


class Monitoring(_Section):
    service_monitors: bool = True
    prometheus_rule: bool = True
    dashboard: bool = True
    labels: dict[str, str] = {"release": "kube-prometheus-stack"}
    """Labels the Prometheus Operator selects ServiceMonitors and rules by, and Grafana's sidecar
    (grafana_dashboard: "1") the dashboard ConfigMap."""
    scrape_interval: str = "15s"


class HostTuning(_Section):
    enabled: bool = True
    node_selector: dict[str, str] = {"nvidia.com/gpu.present": "true"}
    bbr: bool = True
    socket_buffer_bytes: int = Field(default=64 * 2**20, ge=2**20)
    """net.core.rmem_max / wmem_max and the top of tcp_rmem / tcp_wmem."""
    transparent_hugepages: str = Field(default="madvise", pattern="^(always|madvise|never)$")


class Values(_Section):
    namespace: str = "seekserve"
    images: Images = Images()
    gateway: Gateway = Gateway()
    redis: Redis = Redis()
    mirror: Mirror = Mirror()
    model_cache: ModelCache = ModelCache()
    engines: tuple[Engine, ...] = Field(min_length=1)
    autoscaling: Autoscaling = Autoscaling()
    monitoring: Monitoring = Monitoring()
    host_tuning: HostTuning = HostTuning()

    @model_validator(mode="after")
    def _check(self) -> Values:
        names = [e.served_model_name for e in self.engines]
        for engine in self.engines:
            unknown = set(engine.fallback) - set(names)
            if unknown:
                raise ValueError(
                    f"engine {engine.name}: fallback {sorted(unknown)} is no engine's served_model_name "
                    f"({', '.join(names)})"
                )
        if len({e.name for e in self.engines}) != len(self.engines):
            raise ValueError("engines: two engines share a name; names must be unique")
        if self.autoscaling.mode is AutoscalingMode.HPA and any(
            e.autoscaling.scale_to_zero for e in self.engines
        ):
            raise ValueError("scale_to_zero needs autoscaling.mode keda: an HPA keeps at least one replica")
        return self


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`: mappings merge key by key, everything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read values file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (namespace:, engines:, ...)")
    return data


def load_values(*paths: Path) -> Values:
    """The values of `paths` merged in order and validated."""
    data: dict[str, Any] = {}
    for path in paths:
        data = merge(data, _read(path))
    return validated(Values, data, " + ".join(str(p) for p in paths))
