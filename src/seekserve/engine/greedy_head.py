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

from seekserve.layers.cpu_kernels import CpuKernels
from seekserve.models.base import CausalLM
from seekserve.quant.int8 import Int8Weight
from seekserve.quant.linear import QuantizedLinear

__all__ = ["GreedyHead"]


class GreedyHead:
    """The screened argmax of one model's LM head; built by `GreedyHead.build`.

    A plain head (float32 or bfloat16) gets an int8 copy, in the VNNI layout where the CPU has
    integer dot products; a head already quantized to int8 per row is screened in place (its own
    values, no copy) and its rescore reproduces the int8 matmul, so int8 and int4 models (whose
    head is int8) read their head at the screen's speed rather than torch's int8 kernel's.
    """

    def __init__(
        self,
        kernels: CpuKernels,
        max_rows: int,
        dtype: torch.dtype,
        weight: torch.Tensor | None,
        int8: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.kernels = kernels
        self.max_rows = max_rows
        """Most hidden rows per call; a step with more takes the full matmul."""
        self.dtype = dtype
        self.weight = weight
        """The plain head, or None when the head is int8 (q and scale are then the head itself)."""
        q, scale = int8 if int8 is not None else kernels.quantize_rows(weight)  # type: ignore[arg-type]
        self.vnni = weight is not None and kernels.has_vnni
        """Screen with integer dot products (the int8 copy in the VNNI layout), else float ones."""
        if self.vnni:
            self.q, self.l1 = kernels.pack_vnni(q)
            self.scale = torch.zeros_like(self.l1)
            self.scale[: scale.shape[0]] = scale
            self.row_sums = None
        else:
            self.q, self.scale, self.l1 = q, scale.float(), torch.empty(0)
            self.row_sums = kernels.row_sums(q) if kernels.has_vnni else None
            """Per-row sums of q for the one-row integer screen (VNNI CPUs), else None."""
        extra = sum(t.nbytes for t in self.row_sums) if self.row_sums is not None else 0
        self.nbytes = self.scale.nbytes + self.l1.nbytes + extra + (self.q.nbytes if int8 is None else 0)
        """Bytes held in addition to the model's weights (the int8 copy and its scales)."""
        self.rows_rescored = 0
        """Vocabulary rows the last call rescored with the exact weight, over all its hidden rows."""

    @classmethod
    def build(cls, model: CausalLM, kernels: CpuKernels | None, max_rows: int) -> GreedyHead | None:
        """The screened head of `model`, or None when its logits are not a plain matmul the
        kernels can screen (biased, soft-capped or non-int8 quantized heads; other dtypes; odd
        sizes)."""
        if kernels is None or max_rows < 1 or not kernels.supports(model.dtype):
            return None
        weight = model.plain_lm_head()
        if weight is not None:
            if weight.device.type != "cpu" or weight.shape[1] % 16 or not weight.is_contiguous():
                return None
            return cls(kernels, max_rows, weight.dtype, weight)
        head = model.logits_head()
        if (
            not (isinstance(head, QuantizedLinear) and isinstance(head.qweight, Int8Weight))
            or head.bias is not None
        ):
            return None
        values, scales = head.qweight.values, head.qweight.scales
        if values.dim() != 2 or values.device.type != "cpu" or values.shape[1] % 16:
            return None
        return cls(kernels, max_rows, model.dtype, None, (values.detach(), scales.detach()))

    def accepts(self, num_rows: int) -> bool:
        return num_rows <= self.max_rows

    def tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """argmax(compute_logits(hidden)) per row, int64 [rows]."""
        hidden = hidden.to(self.dtype)
        if self.vnni:
            assert self.weight is not None
            tokens, rescored = self.kernels.greedy_head_vnni(hidden, self.weight, self.q, self.scale, self.l1)
        else:
            tokens, rescored = self.kernels.greedy_head(
                hidden, self.weight, self.q, self.scale, self.row_sums
            )
        self.rows_rescored = int(rescored.sum())
        return tokens
