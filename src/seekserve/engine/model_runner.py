"""Model runner: one forward pass per step over a mixed batch of decodes and prefill chunks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from seekserve.engine.fused_decode import FusedDecode
from seekserve.engine.greedy_head import GreedyHead
from seekserve.engine.scheduler import SchedulerOutput
from seekserve.layers.attention import AttentionMetadata, PrefillChunk
from seekserve.layers.cpu_kernels import cpu_kernels
from seekserve.models.base import CausalLM, LayerCache

__all__ = ["ModelRunner", "StepInputs", "StepResult"]


@dataclass
class StepInputs:
    input_ids: torch.Tensor
    """[num_tokens] int64, decodes first, then prefill chunks."""
    positions: torch.Tensor
    """[num_tokens] int64."""
    meta: AttentionMetadata
    sample_rows: list[int]
    """Rows of the hidden states to compute logits for, one per request that samples this step."""


@dataclass
class StepResult:
    """What a step computed for its sampling requests, in batch order: their logits, or (when the
    engine asked for greedy tokens and the runner could take them without logits) their tokens."""

    logits: torch.Tensor | None = None
    """[num_sampling_requests, vocab] in the model's dtype or float32."""
    token_ids: torch.Tensor | None = None
    """[num_sampling_requests] int64."""


class ModelRunner:
    """Runs the model over the paged KV cache. Owns the cache tensors; not thread-safe."""

    def __init__(
        self,
        model: CausalLM,
        kv_caches: list[LayerCache],
        block_size: int,
        device: torch.device,
        greedy_head: GreedyHead | None = None,
    ):
        self.model = model
        self.kv_caches = kv_caches
        self.block_size = block_size
        self.device = device
        self.kernels = cpu_kernels() if device.type == "cpu" else None
        self.greedy_head = greedy_head
        """Greedy tokens from a screened LM head (see DeviceConfig.cpu_greedy_head_rows), or None."""
        self.fused_decode = FusedDecode.build(model, kv_caches, self.kernels)
        """All decoder layers of a decode-only step in one kernel call (int4 models), or None."""

    @torch.inference_mode()
    def execute(self, batch: SchedulerOutput, greedy: bool = False) -> StepResult:
        """Run the step. With `greedy` (every sampling request takes the argmax of the raw logits)
        the result may hold the tokens instead of the logits."""
        inputs = self.prepare(batch)
        hidden = self.model(inputs.input_ids, inputs.positions, self.kv_caches, inputs.meta)
        if not inputs.sample_rows:
            return StepResult()
        if len(inputs.sample_rows) != hidden.shape[0]:  # else every row, in order (rows ascend)
            rows = torch.tensor(inputs.sample_rows, dtype=torch.int64, device=self.device)
            hidden = hidden.index_select(0, rows)
        if greedy and self.greedy_head is not None and self.greedy_head.accepts(len(inputs.sample_rows)):
            return StepResult(token_ids=self.greedy_head.tokens(hidden))
        return StepResult(logits=self.model.compute_logits(hidden))

    def prepare(self, batch: SchedulerOutput) -> StepInputs:
        bs = self.block_size
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        sample_rows: list[int] = []
        for row, sched in enumerate(batch.decodes):
            r = sched.request
            p = r.num_computed_tokens
            ids.append(r.token_ids[p])
            positions.append(p)
            slots.append(r.block_ids[p // bs] * bs + p % bs)
            sample_rows.append(row)
        chunks: list[PrefillChunk] = []
        prefill_slots: list[np.ndarray] = []
        for sched in batch.prefills:
            r, start, n = sched.request, len(ids), sched.num_new_tokens
            c = r.num_computed_tokens
            ids.extend(r.token_ids[c : c + n])
            positions.extend(range(c, c + n))
            table = np.asarray(r.block_ids, dtype=np.int64)
            pos = np.arange(c, c + n, dtype=np.int64)
            prefill_slots.append(table[pos // bs] * bs + pos % bs)
            chunks.append(PrefillChunk(start, start + n, c, torch.from_numpy(table).to(self.device)))
            if sched.samples:
                sample_rows.append(start + n - 1)
        slot_mapping = np.concatenate([np.asarray(slots, dtype=np.int64), *prefill_slots])
        meta = AttentionMetadata(
            slot_mapping=self._tensor(slot_mapping),
            num_decodes=len(batch.decodes),
            decode_seq_lens=[s.request.num_computed_tokens + 1 for s in batch.decodes],
            decode_block_tables=self._block_tables(batch),
            prefills=chunks,
            block_size=bs,
            kernels=self.kernels,
        )
        if self.fused_decode is not None and self.fused_decode.applies(meta):
            meta.layer_stack = self.fused_decode
        return StepInputs(self._tensor(ids), self._tensor(positions), meta, sample_rows)

    def _block_tables(self, batch: SchedulerOutput) -> torch.Tensor:
        tables = [s.request.block_ids for s in batch.decodes]
        width = max((len(t) for t in tables), default=0)
        padded = np.zeros((len(tables), width), dtype=np.int64)
        for i, t in enumerate(tables):
            padded[i, : len(t)] = t
        return self._tensor(padded)

    def _tensor(self, values: list[int] | np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.int64)).to(self.device)
