"""How many KV cache blocks the engine gets, and their allocation.

The budget is given (`CacheConfig.num_kv_blocks` or `kv_cache_memory_bytes`) or measured after the
weights are loaded and transformed, so memory that quantization saved is free to take.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seekserve.engine.config import EngineConfig
from seekserve.errors import ConfigError
from seekserve.memory import available_memory_bytes
from seekserve.models.base import CausalLM, LayerCache

__all__ = ["KVCache", "allocate_kv_cache"]

_CPU_KV_CACHE_MAX_BYTES = 4 << 30


@dataclass
class KVCache:
    """The paged KV cache of every layer, and its size."""

    layers: list[LayerCache]
    num_blocks: int
    block_size: int
    bytes_per_token: int

    @property
    def num_tokens(self) -> int:
        return self.num_blocks * self.block_size


def allocate_kv_cache(
    model: CausalLM, config: EngineConfig, device: torch.device, max_model_len: int, weight_bytes_saved: int
) -> KVCache:
    """Size the cache (see `default_kv_budget`), check one sequence of `max_model_len` fits, allocate."""
    spec = model.kv_cache_spec()
    cache = config.cache
    per_token = spec.bytes_per_token(model.dtype)
    blocks = cache.num_kv_blocks
    if blocks is None:
        budget = cache.kv_cache_memory_bytes
        if budget is None:
            budget = default_kv_budget(device, config, weight_bytes_saved)
        blocks = max(1, budget // (per_token * cache.block_size))
    capacity = blocks * cache.block_size
    if capacity < max_model_len:
        raise ConfigError(
            f"the KV cache holds {capacity} tokens ({blocks} blocks of {cache.block_size}, "
            f"{per_token} bytes per token) but one sequence may need max_model_len="
            f"{max_model_len}: give the cache at least "
            f"{max_model_len * per_token} bytes (kv_cache_memory_bytes) or "
            f"{-(-max_model_len // cache.block_size)} blocks (num_kv_blocks), or lower max_model_len"
        )
    return KVCache(spec.allocate(capacity, model.dtype, device), blocks, cache.block_size, per_token)


def default_kv_budget(device: torch.device, config: EngineConfig, weight_bytes_saved: int = 0) -> int:
    """KV cache bytes when none are given: what the device can spare after the weights.

    On CPU the budget is a share of the available memory, capped at 4 GiB plus what quantization
    saved: the engine's weights and cache together stay within the footprint the unquantized model
    would have had.
    """
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        allowed = int(total * config.device.gpu_memory_utilization) - (total - free)
        return max(0, int(allowed * 0.9))  # keep a tenth of it for activations
    share = int(available_memory_bytes() * config.device.cpu_kv_cache_fraction)
    return min(_CPU_KV_CACHE_MAX_BYTES + max(0, weight_bytes_saved), share)
