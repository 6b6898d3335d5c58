"""Greedy tokens without the full LM head matmul, for CPUs.

A decode step of a small model on a CPU reads its weights once per token, and the LM head is most
of them (Gemma 3 270M: 336 MB of 536 MB in bfloat16). When every request of a step takes the
argmax of the raw logits (temperature 0, no penalties, no log-probabilities), the head need not
produce logits at all: an int8 copy of it screens the vocabulary with a bound on its error, and
the exact weight decides among the few rows the bound cannot rule out (kernels/greedy_head.cpp).
The token is the argmax of the full logits; the step reads about half the head's bytes.
"""

from __future__ import annotations

import torch

from seekserve.engine.cpu_kernels import CpuKernels
from seekserve.models.base import CausalLM

__all__ = ["GreedyHead"]


class GreedyHead:
    """The screened argmax of one model's LM head; built by `GreedyHead.build`."""

    def __init__(self, weight: torch.Tensor, kernels: CpuKernels, max_rows: int) -> None:
        self.weight = weight
        self.kernels = kernels
        self.max_rows = max_rows
        """Most hidden rows per call: above it the full matmul (compute-bound) is faster."""
        q, scale = kernels.quantize_rows(weight)
        self.vnni = kernels.has_vnni
        """Screen with integer dot products (the int8 copy in the VNNI layout), else float ones."""
        if self.vnni:
            self.q, self.l1 = kernels.pack_vnni(q)
            self.scale = torch.zeros_like(self.l1)
            self.scale[: scale.shape[0]] = scale
        else:
            self.q, self.scale, self.l1 = q, scale, torch.empty(0)
        self.rows_rescored = 0
        """Vocabulary rows the last call rescored with the exact weight, over all its hidden rows."""

    @classmethod
    def build(cls, model: CausalLM, kernels: CpuKernels | None, max_rows: int) -> GreedyHead | None:
        """The screened head of `model`, or None when its logits are not a plain matmul the
        kernels can screen (quantized, biased or soft-capped heads; other dtypes; odd sizes)."""
        weight = model.plain_lm_head()
        if kernels is None or max_rows < 1 or weight is None or weight.device.type != "cpu":
            return None
        if not kernels.supports(weight.dtype) or weight.shape[1] % 16 or not weight.is_contiguous():
            return None
        return cls(weight, kernels, max_rows)

    @property
    def nbytes(self) -> int:
        """Bytes of the int8 copy and its scales (held in addition to the model's weights)."""
        return self.q.nbytes + self.scale.nbytes + self.l1.nbytes

    def accepts(self, num_rows: int) -> bool:
        return num_rows <= self.max_rows

    def tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """argmax(compute_logits(hidden)) per row, int64 [rows]."""
        hidden = hidden.to(self.weight.dtype)
        if self.vnni:
            tokens, rescored = self.kernels.greedy_head_vnni(hidden, self.weight, self.q, self.scale, self.l1)
        else:
            tokens, rescored = self.kernels.greedy_head(hidden, self.weight, self.q, self.scale)
        self.rows_rescored = int(rescored.sum())
        return tokens
