"""Which layouts a cluster offers a model, and whether each fits.

For a cluster of N nodes × G GPUs the candidates are:
- replicas inside a node: the smallest tensor-parallel size (1, 2, 4, 8) whose replica fits, and the
  whole node (TP G), repeated over the cluster (DP);
- one engine over several nodes: TP G × PP N (tensor parallel inside a node, pipeline stages across
  nodes), and TP over every GPU (all-reduces then cross the network between nodes);
- for mixture-of-experts models: DP attention over every GPU with the routed experts spread over all
  of them (expert parallelism).

A layout fits when the engines accept it (`memory.layout_error`), its weights, activations and runtime
fit the budget of every GPU, and its KV cache holds at least one sequence of max_model_len tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from seekserve.plan.catalog import PlannedModel
from seekserve.plan.gpus import Cluster
from seekserve.plan.memory import GpuMemory, Layout, PlanConfig, gpu_memory, layout_error

__all__ = ["LayoutPlan", "candidate_layouts", "default_clusters", "plan_layout", "plan_layouts"]

_GB = 1e9
_DEFAULT_CLUSTERS = (
    (40 * _GB, "1xRTX4090,1xL40S,1xH100,8xH100"),
    (400 * _GB, "1xH100,2xH100,4xH100,8xH100,8xH200"),
    (float("inf"), "8xH100,8xH200,2x8xH100,4x8xH100"),
)


@dataclass(frozen=True)
class LayoutPlan:
    """One layout on one cluster: its memory, whether it fits, and why not."""

    cluster: Cluster
    layout: Layout
    memory: GpuMemory
    fits: bool
    reason: str
    """Why it does not fit ("" when it does)."""
    notes: tuple[str, ...]
    """What to know when it fits: slow links, weight-only FP8, sequences shorter than max_model_len."""
    max_model_len: int
    concurrency: int

    @property
    def max_concurrent_tokens(self) -> int:
        """KV-cache tokens over all pools of the layout (0 when it does not fit)."""
        return self.memory.kv_tokens * self.layout.num_pools if self.fits else 0

    @property
    def max_full_sequences(self) -> int:
        """Sequences of max_model_len tokens the layout holds at once."""
        return (self.memory.kv_tokens // self.max_model_len) * self.layout.num_pools if self.fits else 0

    @property
    def tokens_per_sequence(self) -> int:
        """KV-cache tokens each of `concurrency` sequences gets on average (0 when it does not fit)."""
        return self.max_concurrent_tokens // self.concurrency


def _gb(n: int) -> str:
    return f"{n / _GB:,.1f} GB"


def _why_not(plan_memory: GpuMemory, cluster: Cluster, max_model_len: int, config: PlanConfig) -> str:
    m = plan_memory
    fixed = m.weights_bytes + m.activation_bytes + m.runtime_bytes
    if m.kv_cache_bytes < 0:
        device = cluster.kind.memory_bytes
        whole = (
            f"; weights and runtime alone exceed all {_gb(device)} of one {cluster.kind.name}"
            if m.weights_bytes + m.runtime_bytes > device
            else ""
        )
        return (
            f"per GPU, weights {_gb(m.weights_bytes)} + activations {_gb(m.activation_bytes)} + runtime "
            f"{_gb(m.runtime_bytes)} = {_gb(fixed)}, over the budget of {_gb(m.budget_bytes)} "
            f"({config.gpu_memory_utilization:.2f} of the GPU's memory){whole}"
        )
    if m.kv_tokens < max_model_len:
        return (
            f"the KV cache left ({_gb(m.kv_cache_bytes)} per GPU) holds {m.kv_tokens:,} tokens, less than "
            f"one sequence of max_model_len {max_model_len:,}: lower --max-model-len to {m.kv_tokens:,}"
        )
    return ""


def _notes(model: PlannedModel, cluster: Cluster, layout: Layout, config: PlanConfig) -> list[str]:
    notes = []
    kind = cluster.kind
    if config.weight_dtype(model) == "fp8" and not kind.fp8:
        notes.append(f"{kind.name} has no FP8 tensor cores: FP8 weights run weight-only (Marlin), slower")
    if layout.tp > 1 and not kind.fast_peer_links:
        notes.append(f"TP{layout.tp} all-reduces over {kind.interconnect} every layer: expect low throughput")
    if layout.tp > cluster.gpus_per_node:
        notes.append(f"TP{layout.tp} spans nodes: every layer's all-reduce crosses the network between nodes")
    if layout.pp > 1:
        notes.append("pipeline stages add no speed to one request; throughput needs many requests in flight")
    if layout.expert_parallel:
        links = " and fast links between nodes" if cluster.num_nodes > 1 else ""
        notes.append(
            "sized as vLLM places it: all but the routed experts on every DP rank; needs the all-to-all "
            f"kernels (DeepEP){links}"
        )
    if config.include_mtp:
        notes.append("includes the multi-token-prediction layer for speculative decoding")
    return notes


def plan_layout(model: PlannedModel, cluster: Cluster, layout: Layout, config: PlanConfig) -> LayoutPlan:
    """Whether `layout` fits `model` on `cluster`, with its per-GPU memory."""
    memory = gpu_memory(model, cluster, layout, config)
    max_len = config.context_len(model)
    reason = layout_error(model, layout) or _why_not(memory, cluster, max_len, config)
    fits = not reason
    notes = tuple(_notes(model, cluster, layout, config)) if fits else ()
    return LayoutPlan(cluster, layout, memory, fits, reason, notes, max_len, config.concurrency)


def candidate_layouts(model: PlannedModel, cluster: Cluster, config: PlanConfig) -> list[Layout]:
    """The layouts worth showing for `model` on `cluster` (see the module's docstring)."""
    per_node, nodes, total = cluster.gpus_per_node, cluster.num_nodes, cluster.num_gpus
    sizes = [t for t in (1, 2, 4, 8) if t <= per_node and per_node % t == 0]
    smallest = next(
        (t for t in sizes if plan_layout(model, cluster, Layout(t, dp=total // t), config).fits), per_node
    )
    layouts = [Layout(smallest, dp=total // smallest), Layout(per_node, dp=nodes)]
    if nodes > 1:
        layouts += [Layout(per_node, pp=nodes), Layout(total)]
    if model.is_moe and total > 1:
        layouts.append(Layout(1, dp=total, expert_parallel=True))
    unique: list[Layout] = []
    for layout in layouts:
        if layout not in unique:
            unique.append(layout)
    return unique


def default_clusters(weights_bytes: int) -> str:
    """The clusters a plan shows when none is named, by the size of the weights."""
    return next(clusters for limit, clusters in _DEFAULT_CLUSTERS if weights_bytes < limit)


def plan_layouts(model: PlannedModel, clusters: list[Cluster], config: PlanConfig) -> list[LayoutPlan]:
    """Every candidate layout of every cluster, in the order given."""
    return [
        plan_layout(model, cluster, layout, config)
        for cluster in clusters
        for layout in candidate_layouts(model, cluster, config)
    ]
