"""Engine configuration: one frozen dataclass per subsystem, validated on construction.

`EngineConfig.from_options(**options)` maps the flat options users pass to `LLM(...)` and
`seekserve serve` onto the sub-configs; an unknown option is an error that lists the known ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from seekserve.errors import ConfigError
from seekserve.quant.config import QuantConfig

__all__ = [
    "CacheConfig",
    "DeviceConfig",
    "EngineConfig",
    "ModelConfig",
    "SchedulerConfig",
]

DType = Literal["auto", "float32", "bfloat16", "float16"]
Scheduling = Literal["continuous", "static"]
Quantization = Literal["none", "fp8", "int8", "int4"]


def _check_positive(name: str, value: int | None, fix: str) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{name}={value} is invalid: it must be at least 1; {fix}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not supported: choose one of {', '.join(choices)}")


@dataclass(frozen=True)
class ModelConfig:
    """Which model to run and in what precision."""

    model: str | None = None
    """A Hugging Face directory, a GGUF file, or a hub id (org/name[:TAG]); None runs the default
    model (Gemma 3 270M, from the `default-model` extra)."""

    tokenizer: str | None = None
    """Tokenizer directory, when it differs from `model`."""

    dtype: DType = "auto"
    """Weight and activation dtype; "auto" takes the checkpoint's (float16 becomes bfloat16 on CPU)."""

    max_model_len: int | None = None
    """Longest sequence (prompt plus output) in tokens; None takes the model's context length."""

    quantization: Quantization = "none"
    """Weight quantization applied while loading: fp8 (float8 with 128×128 block scales), int8
    (per-channel) or int4 (group-wise); see docs/quantization.md for memory, speed and accuracy."""

    quantization_group_size: int | None = None
    """int4: weights per scale along the input (32, 64 or 128; default 32); fp8: block edge
    (default 128), 0 for per-channel scales; int8 takes none."""

    quantize_lm_head: bool = True
    """Quantize the LM head too (int8 when quantization=int4); a tied embedding then reads its rows
    from the quantized head."""

    max_quantized_kernel_rows: int | None = None
    """Steps of at most this many tokens use the low-bit kernels, larger ones dequantize each layer
    for a float matmul; unset takes the default measured on CPU for the mode."""

    quantize_activations: bool = False
    """int8 only: steps above max_quantized_kernel_rows also quantize activations (per token) and run
    int8×int8 matmuls: faster than bf16 at large batch on CPU, less accurate."""

    seed: int = 0
    """Seed for requests that sample without a seed of their own."""

    def __post_init__(self) -> None:
        if self.model is not None and not self.model:
            raise ConfigError(
                "model is empty: pass a model directory, GGUF file or hub id, or leave it unset for the "
                "default model"
            )
        _check_choice("dtype", self.dtype, ("auto", "float32", "bfloat16", "float16"))
        _check_choice("quantization", self.quantization, ("none", "fp8", "int8", "int4"))
        self.quant_config()
        _check_positive("max_model_len", self.max_model_len, "leave it unset to use the model's context")

    def quant_config(self) -> QuantConfig:
        """The quantization options as the quant package takes them (validated there)."""
        return QuantConfig(
            mode=self.quantization,
            group_size=self.quantization_group_size,
            quantize_lm_head=self.quantize_lm_head,
            max_kernel_rows=self.max_quantized_kernel_rows,
            dynamic_activations=self.quantize_activations,
        )


@dataclass(frozen=True)
class CacheConfig:
    """The paged KV cache."""

    block_size: int = 16
    """Tokens per KV block."""

    kv_cache_memory_bytes: int | None = None
    """Memory for the KV cache; None sizes it from the device (see `DeviceConfig`)."""

    num_kv_blocks: int | None = None
    """Exact number of KV blocks; overrides `kv_cache_memory_bytes`."""

    enable_prefix_caching: bool = True
    """Reuse the KV blocks of identical prompt prefixes across requests."""

    def __post_init__(self) -> None:
        if self.block_size not in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            raise ConfigError(
                f"block_size={self.block_size} is invalid: use a power of two from 1 to 256 (default 16)"
            )
        _check_positive("num_kv_blocks", self.num_kv_blocks, "or leave it unset to size from memory")
        _check_positive(
            "kv_cache_memory_bytes", self.kv_cache_memory_bytes, "or leave it unset to size from the device"
        )


@dataclass(frozen=True)
class SchedulerConfig:
    """How requests share each engine step."""

    max_num_seqs: int = 256
    """Most requests running at once."""

    max_num_batched_tokens: int | None = None
    """Token budget of one step (decodes first, then prefill chunks); None picks a device default."""

    scheduling: Scheduling = "continuous"
    """"continuous" admits new requests every step; "static" admits a batch and waits for all of it."""

    enable_chunked_prefill: bool = True
    """Split long prompts across steps; off, a prompt is prefilled in one step, whatever its length."""

    max_stall_factor: float | None = 2.5
    """While streams decode, size prefill chunks so a step takes at most this many times a
    decode-only step, widened by one such stall for each request waiting for prompt work (costs
    learned online; see engine/pacer.py); None lets prompts take the whole token budget."""

    prefill_spread_steps: int | None = 8
    """While streams decode, spread the prompt work waiting (all prompts' tokens not yet computed)
    over about this many steps, within the stall limit: a steady stream of arrivals then adds a
    little prompt work to every step instead of a long step now and then (engine/pacer.py). None
    takes what the stall limit allows."""

    min_prefill_chunk: int = 32
    """Smallest prefill chunk the stall limit or the spread may cut a step's prompt work down to."""

    max_queue_len: int | None = None
    """Most requests waiting to be admitted; more are rejected as overload. None is unbounded."""

    def __post_init__(self) -> None:
        _check_positive("max_num_seqs", self.max_num_seqs, "e.g. 256")
        _check_positive("max_num_batched_tokens", self.max_num_batched_tokens, "e.g. 512")
        _check_positive("max_queue_len", self.max_queue_len, "or leave it unset for no limit")
        _check_positive("min_prefill_chunk", self.min_prefill_chunk, "e.g. 32")
        _check_positive("prefill_spread_steps", self.prefill_spread_steps, "e.g. 8, or leave it unset")
        if self.max_stall_factor is not None and self.max_stall_factor <= 1.0:
            raise ConfigError(
                f"max_stall_factor={self.max_stall_factor} is invalid: a step with prompt work must be "
                f"allowed to take longer than a decode-only step; use a value above 1 (e.g. 2.5) or None"
            )
        _check_choice("scheduling", self.scheduling, ("continuous", "static"))
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens < self.max_num_seqs:
            raise ConfigError(
                f"max_num_batched_tokens={self.max_num_batched_tokens} is smaller than "
                f"max_num_seqs={self.max_num_seqs}: every running request needs one token per step; "
                f"raise max_num_batched_tokens to at least {self.max_num_seqs} or lower max_num_seqs"
            )


@dataclass(frozen=True)
class DeviceConfig:
    """Where the model runs."""

    device: str = "auto"
    """"auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:N"."""

    num_threads: int | None = None
    """CPU threads for tensor work; None uses every core this process may run on."""

    gpu_memory_utilization: float = 0.9
    """Share of GPU memory the engine may use in all (weights, activations, KV cache)."""

    cpu_prepack_weights: bool = True
    """On CPU, lay bfloat16 linear weights out for oneDNN once at load: faster matmuls; a tied LM head
    gets its own packed copy (on Gemma 3 270M, 335 MB more memory)."""

    cpu_greedy_head_rows: int | None = None
    """On CPU, a step whose requests all take the argmax of raw logits (temperature 0, no penalties
    or log-probabilities) and has at most this many of them gets its tokens from an int8 copy of the
    LM head that screens the vocabulary, the exact weight deciding among the rows it cannot rule out
    (engine/greedy_head.py): the argmax of the head's own logits for each row (near ties decided
    with torch's product; docs/performance.md says exactly what holds per head type), about half the
    head's bytes read. Costs the int8 copy
    (Gemma 3 270M: 168 MB); 0 turns it off. None screens every step on CPUs with integer dot
    products (AVX-512 VNNI), where the screen beats the matmul at any batch size, and steps of up to
    24 rows elsewhere. Plain heads and int8 heads only (not int4, biased or soft-capped)."""

    cpu_kv_cache_fraction: float = 0.25
    """On CPU, the share of available memory the KV cache takes when no size is given (at most 4 GiB)."""

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device={self.device!r} is not supported: use auto, cpu, cuda or cuda:N")
        _check_positive("num_threads", self.num_threads, "or leave it unset to use every core")
        if self.cpu_greedy_head_rows is not None and self.cpu_greedy_head_rows < 0:
            raise ConfigError(
                f"cpu_greedy_head_rows={self.cpu_greedy_head_rows} is invalid: use 0 (off), more, "
                "or leave it unset for the CPU's default"
            )
        for name in ("gpu_memory_utilization", "cpu_kv_cache_fraction"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"{name}={value} is invalid: it must be in (0, 1]")


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine needs, one sub-config per subsystem."""

    model: ModelConfig
    cache: CacheConfig = field(default_factory=CacheConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)

    @classmethod
    def option_owners(cls) -> dict[str, str]:
        """Every flat option name, mapped to the attribute of the sub-config that owns it."""
        return {f.name: attr for attr, sub in SUBCONFIGS.items() for f in fields(sub)}

    @classmethod
    def from_options(cls, **options: Any) -> EngineConfig:
        """Build a config from flat options such as `model=..., max_num_seqs=8, block_size=16`."""
        parts = cls._split(options)
        return cls(**{attr: sub(**parts.get(attr, {})) for attr, sub in SUBCONFIGS.items()})

    def replace(self, **options: Any) -> EngineConfig:
        """A copy with some flat options changed."""
        changed = {
            attr: dataclasses.replace(getattr(self, attr), **values)
            for attr, values in self._split(options).items()
        }
        return dataclasses.replace(self, **changed)

    @classmethod
    def _split(cls, options: dict[str, Any]) -> dict[str, dict[str, Any]]:
        owners = cls.option_owners()
        unknown = sorted(set(options) - set(owners))
        if unknown:
            raise ConfigError(
                f"unknown engine option(s) {', '.join(unknown)}; known options: {', '.join(sorted(owners))}"
            )
        parts: dict[str, dict[str, Any]] = {}
        for name, value in options.items():
            parts.setdefault(owners[name], {})[name] = value
        return parts


SUBCONFIGS: dict[str, type] = {
    "model": ModelConfig,
    "cache": CacheConfig,
    "scheduler": SchedulerConfig,
    "device": DeviceConfig,
}
