"""DeepSeek's stacked routed experts with quantized weights (the quantized form of `FusedExperts`).

Each expert's matrices are quantized as its checkpoint tensors arrive and finished (packed) as
soon as that expert's gate and up (or down) projection is complete, so at most one expert's
unpacked int4 values exist at a time. Routing and grouping are `FusedExperts`' own (`run_grouped`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from seekserve.layers.fp8_checkpoint import Fp8BlockTensor
from seekserve.models.moe import FusedExperts, Routing, expert_part, run_grouped
from seekserve.quant.base import QuantizedWeight, StackShape

__all__ = ["QuantizedExperts"]

WeightFactory = Callable[[StackShape], QuantizedWeight]
"""An empty QuantizedWeight of the chosen format for a shape."""


class QuantizedExperts(nn.Module):
    """gate_up_proj: [num_experts] × [2 · intermediate, hidden];
    down_proj: [num_experts] × [hidden, intermediate]."""

    def __init__(self, experts: FusedExperts, make_weight: WeightFactory):
        super().__init__()
        self.num_experts = experts.num_experts
        self.intermediate_size = inter = experts.intermediate_size
        hidden = experts.gate_up_proj.shape[-1]
        lead = (self.num_experts,)
        self.gate_up_proj = make_weight(StackShape(lead, 2 * inter, hidden, (inter, inter)))
        self.down_proj = make_weight(StackShape(lead, hidden, inter, (hidden,)))
        self._parts: dict[tuple[str, int], set[int]] = {}

    def forward(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        return run_grouped(x, routing, self.num_experts, self._expert)

    def _expert(self, expert: int, xs: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj.matmul(xs, (expert,)).chunk(2, dim=-1)
        return self.down_proj.matmul((F.silu(gate) * up).contiguous(), (expert,))

    def load_expert(self, expert: int, proj: str, tensor: torch.Tensor | Fp8BlockTensor) -> tuple[str, int]:
        """Quantize one expert's gate_proj, up_proj or down_proj weight; return (parameter, part index)."""
        name, part, rows = expert_part(self.num_experts, self.intermediate_size, expert, proj)
        weight: QuantizedWeight = getattr(self, name)
        start = rows.start or 0
        num_rows = weight.out_features if rows.stop is None else rows.stop - start
        if tuple(tensor.shape) != (num_rows, weight.in_features):
            raise ValueError(f"shape {tuple(tensor.shape)} does not fit {(num_rows, weight.in_features)}")
        if isinstance(tensor, Fp8BlockTensor):
            weight.load_fp8((expert,), start, tensor)
        else:
            weight.load_rows_chunked((expert,), start, tensor)
        done = self._parts.setdefault((name, expert), set())
        done.add(part)
        if len(done) == len(weight.part_sizes):
            weight.finish((expert,))
        return name, part

    def checkpoint_params(self) -> dict[str, int]:
        return {"gate_up_proj": 2 * self.num_experts, "down_proj": self.num_experts}
