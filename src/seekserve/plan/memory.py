"""What one GPU of a layout holds: weights, activations, runtime, and the KV cache in what is left.

Per GPU, within the engine's budget (`gpu_memory_utilization` × device memory, as vLLM sizes it):

    budget ─┬─ weights       (all weights but routed experts) / TP  +  routed experts / expert shards,
            │                 times the largest pipeline stage's share of the layers: ceil(L/PP) / L
            ├─ activations   max_num_batched_tokens × hidden_size × 16 values × 2 bytes (one prefill
            │                 step: residual, norm, attention and MLP inputs and outputs, and the gate/up
            │                 outputs, 7-11 hidden widths in these models; not divided by TP, a bound)
            │                 + rows in flight × vocab_size × 4 bytes (float32 logits to sample from)
            ├─ runtime       a fixed 2 GiB: CUDA context, NCCL buffers, CUDA graphs
            └─ KV cache      the rest, at `kv_bytes_per_token` per token on this GPU

KV bytes per token on one GPU are the model's per-layer figure times the layers of its stage, split by
tensor parallelism where the cache has heads to split: a dense model's KV heads go max(1, heads/TP) to
a rank, while MLA's one latent row per token (DeepSeek-V3: 512 + 64 values) is kept whole by every
rank. Data-parallel ranks (replicas, or DP attention) each keep the cache of their own requests, so a
layout holds `num_pools` independent caches.
"""

from __future__ import annotations

from dataclasses import dataclass

from seekserve.errors import ConfigError
from seekserve.models.sizing import WEIGHT_DTYPES, WeightDType
from seekserve.plan.catalog import PlannedModel
from seekserve.plan.gpus import Cluster

__all__ = ["ACTIVATION_VALUES_PER_HIDDEN", "GpuMemory", "Layout", "PlanConfig", "gpu_memory", "layout_error"]

ACTIVATION_VALUES_PER_HIDDEN = 16
"""Hidden-width bf16 values per token of a prefill step that the activation headroom sets aside."""
_GIB = 1 << 30


@dataclass(frozen=True)
class PlanConfig:
    """How the model is to be served; the `seekserve plan` options default to these."""

    quantization: WeightDType | None = None
    """Weight format: bf16, fp8, int8 or int4; unset: the checkpoint's own (fp8 for DeepSeek-V3/R1)."""
    kv_cache_dtype: str = "bf16"
    """KV cache values: bf16 (the engines' default for these models) or fp8."""
    max_model_len: int | None = None
    """Longest sequence (prompt + output) to serve; unset: the model's max_position_embeddings."""
    concurrency: int = 256
    """Sequences in flight across the layout (vLLM's max_num_seqs, SGLang's max_running_requests)."""
    gpu_memory_utilization: float = 0.90
    """Share of each GPU's memory the engine may use (vLLM's default 0.90)."""
    max_num_batched_tokens: int = 8192
    """Tokens in one engine step (a prefill chunk); sizes the activation headroom."""
    runtime_overhead_bytes: int = 2 * _GIB
    """Per GPU, inside the budget: CUDA context, NCCL buffers, CUDA graphs."""
    include_mtp: bool = False
    """Load the multi-token-prediction layer too (speculative decoding with it)."""

    def __post_init__(self) -> None:
        if self.quantization is not None and self.quantization not in WEIGHT_DTYPES:
            raise ConfigError(f"quantization {self.quantization!r} is not one of {', '.join(WEIGHT_DTYPES)}")
        if self.kv_cache_dtype not in ("bf16", "fp8"):
            raise ConfigError(f"kv_cache_dtype {self.kv_cache_dtype!r} is not one of bf16, fp8")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ConfigError(f"max_model_len must be at least 1, got {self.max_model_len}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_num_batched_tokens < 1:
            raise ConfigError(f"max_num_batched_tokens must be at least 1, got {self.max_num_batched_tokens}")
        if self.runtime_overhead_bytes < 0:
            raise ConfigError(f"runtime_overhead_bytes must be >= 0, got {self.runtime_overhead_bytes}")

    def weight_dtype(self, model: PlannedModel) -> WeightDType:
        return self.quantization or model.native_dtype

    def context_len(self, model: PlannedModel) -> int:
        return self.max_model_len or model.max_position_embeddings


@dataclass(frozen=True)
class Layout:
    """How a model is spread over GPUs: `dp` ranks, each of `tp` × `pp` GPUs.

    Without expert parallelism the ranks are replicas (each holds the whole model). With it, every
    rank keeps its own attention (DP attention) and the routed experts are spread over all
    `dp` × `tp` GPUs.
    """

    tp: int
    """Tensor-parallel GPUs of a rank (for DP attention: of its attention)."""
    pp: int = 1
    """Pipeline stages of a rank."""
    dp: int = 1
    """Data-parallel ranks: replicas, or DP attention ranks with expert parallelism."""
    expert_parallel: bool = False
    """Spread the routed experts over all dp × tp GPUs."""

    def __post_init__(self) -> None:
        if min(self.tp, self.pp, self.dp) < 1:
            raise ConfigError(f"layout sizes must be at least 1, got TP{self.tp} PP{self.pp} DP{self.dp}")
        if self.expert_parallel and self.pp > 1:
            raise ConfigError("expert parallelism with pipeline stages is not a layout the plan covers")

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def num_pools(self) -> int:
        """Independent KV caches: one per data-parallel rank."""
        return self.dp

    @property
    def expert_shards(self) -> int:
        return self.tp * self.dp if self.expert_parallel else self.tp

    @property
    def name(self) -> str:
        if self.expert_parallel:
            attention = f"DP{self.dp} attention" + (f" (TP{self.tp})" if self.tp > 1 else "")
            return f"{attention} + EP{self.expert_shards}"
        core = f"TP{self.tp}" + (f" x PP{self.pp}" if self.pp > 1 else "")
        return core if self.dp == 1 else f"DP{self.dp} x {core}"


@dataclass(frozen=True)
class GpuMemory:
    """The bytes of one GPU (the fullest one) of a layout."""

    budget_bytes: int
    weights_bytes: int
    activation_bytes: int
    runtime_bytes: int
    kv_bytes_per_token: int
    """KV-cache bytes one token of a sequence takes on this GPU."""

    @property
    def kv_cache_bytes(self) -> int:
        """What is left for the KV cache; negative when the rest does not fit."""
        return self.budget_bytes - self.weights_bytes - self.activation_bytes - self.runtime_bytes

    @property
    def kv_tokens(self) -> int:
        """Tokens the KV cache of this GPU's pool holds."""
        return max(0, self.kv_cache_bytes) // self.kv_bytes_per_token


def layout_error(model: PlannedModel, layout: Layout) -> str | None:
    """Why the engines refuse `layout` for `model` (head counts TP must divide), or None."""
    size = model.size
    attention_tp = layout.tp
    if size.num_attention_heads % attention_tp:
        return (
            f"TP{attention_tp} does not divide the {size.num_attention_heads} attention heads "
            "(vLLM and SGLang require it)"
        )
    kv = size.num_kv_heads
    if kv and kv % attention_tp and attention_tp % kv:
        return (
            f"TP{attention_tp} and the {kv} KV heads do not divide one another (vLLM and SGLang require it)"
        )
    if layout.pp > size.num_layers:
        return f"PP{layout.pp} is more stages than the {size.num_layers} layers"
    return None


def _weights_per_gpu(model: PlannedModel, layout: Layout, config: PlanConfig, stage_layers: int) -> int:
    dtype = config.weight_dtype(model)
    total = model.size.weight_bytes(dtype, config.include_mtp)
    experts = model.size.expert_weight_bytes(dtype, config.include_mtp)
    layers = model.size.num_layers
    dense = -(-(total - experts) * stage_layers // (layers * layout.tp))
    return dense + -(-experts * stage_layers // (layers * layout.expert_shards))


def _kv_bytes_per_token(model: PlannedModel, layout: Layout, config: PlanConfig, stage_layers: int) -> int:
    size = model.size
    per_layer = size.kv_bytes_per_token(config.kv_cache_dtype) // size.num_layers
    if size.num_kv_heads == 0:  # MLA: every tensor-parallel rank keeps the whole latent row
        return per_layer * stage_layers
    heads_per_rank = max(1, size.num_kv_heads // layout.tp)
    return per_layer * stage_layers * heads_per_rank // size.num_kv_heads


def gpu_memory(model: PlannedModel, cluster: Cluster, layout: Layout, config: PlanConfig) -> GpuMemory:
    """The memory of the fullest GPU of `layout` (the first pipeline stage when layers split unevenly)."""
    size = model.size
    stage_layers = -(-size.num_layers // layout.pp)
    rows = -(-config.concurrency // layout.num_pools)
    activations = (
        config.max_num_batched_tokens * size.hidden_size * ACTIVATION_VALUES_PER_HIDDEN * 2
        + rows * size.vocab_size * 4
    )
    return GpuMemory(
        budget_bytes=int(cluster.kind.memory_bytes * config.gpu_memory_utilization),
        weights_bytes=_weights_per_gpu(model, layout, config, stage_layers),
        activation_bytes=activations,
        runtime_bytes=config.runtime_overhead_bytes,
        kv_bytes_per_token=_kv_bytes_per_token(model, layout, config, stage_layers),
    )
