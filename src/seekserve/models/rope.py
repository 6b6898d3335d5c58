"""Rotary frequencies from a model's rope configuration.

Scaled variants (linear, llama3, yarn, longrope, ...) use transformers' own initialisers, so the
frequencies are exactly those of the reference implementation. The dynamic-NTK type is applied
with its base frequencies (transformers rescales only past the original context length).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["rope_parameters"]


def rope_parameters(config: Any, head_dim: int, layer_type: str | None = None) -> tuple[torch.Tensor, float]:
    """(inv_freq [rotary_dim // 2] float32, cos/sin scaling) for the config (and layer type)."""
    params = config.rope_parameters
    if layer_type is not None and layer_type in params:
        params = params[layer_type]
    rope_type = params.get("rope_type", "default")
    if rope_type == "default":
        dim = int(head_dim * params.get("partial_rotary_factor", 1.0))
        base = float(params["rope_theta"])
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        factors = getattr(config, "rope_freq_factors", None)
        if factors is not None:  # from GGUF files: Llama 3.1 scaling as one divisor per frequency
            inv_freq = inv_freq / torch.tensor(factors, dtype=torch.float)
        return inv_freq, 1.0
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    init = ROPE_INIT_FUNCTIONS.get(rope_type)
    if init is None:
        known = ", ".join(["default", *ROPE_INIT_FUNCTIONS])
        raise ValueError(f"rope_type {rope_type!r} is not supported; known types: {known}")
    inv_freq, scaling = init(config, torch.device("cpu"), layer_type=layer_type)
    return inv_freq.float(), float(scaling)
