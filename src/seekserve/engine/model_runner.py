"""Model runner: owns the model, the copies of its weights kept for speed and the KV cache, and runs
one forward pass per step over a mixed batch of decodes and prefill chunks.

Building it, in this order (each step needs the one before):
1. the thread count (CPU), then the model's weights, quantized as they stream in (`model_loader`);
2. the greedy head (`GreedyHead`): an int8 copy of a plain LM head, made before prepacking so it
   reads the plain rows, and which keeps an untied head plain (its rescore reads those rows);
3. prepacking every other linear layer for the CPU's matmul (`Linear.prepack`);
4. the KV cache, sized from the memory left after 1-3 (`kv_cache.allocate_kv_cache`);
5. the fused decode of int4 models over that cache (`FusedDecode`), and the sampler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from seekserve.engine.config import EngineConfig
from seekserve.engine.fused_decode import FusedDecode
from seekserve.engine.greedy_head import GreedyHead
from seekserve.engine.kv_cache import KVCache, allocate_kv_cache
from seekserve.engine.model_loader import LoadedModel, load_model
from seekserve.engine.request import Request
from seekserve.engine.sampler import Sampler, SamplerOutput
from seekserve.engine.scheduler import SchedulerOutput
from seekserve.layers.attention import AttentionMetadata, PrefillChunk
from seekserve.layers.cpu_kernels import CpuKernels, cpu_kernels
from seekserve.layers.modules import prepack_linears
from seekserve.models.base import CausalLM, LayerCache
from seekserve.quant.apply import param_bytes

__all__ = ["ModelRunner", "StepInputs"]

_FLOAT_SCREEN_ROWS = 24
"""Most rows a step's greedy head screens by default on CPUs without integer dot products."""


ONEDNN_CACHE_ENTRIES = 128
"""What oneDNN's primitive cache and PyTorch's cache of oneDNN objects may each hold, unless the
environment sets ONEDNN_PRIMITIVE_CACHE_CAPACITY or LRU_CACHE_CAPACITY. Both are keyed by shape and
hold 1,024 by default. When prefill attention ran as bfloat16 matrix products, they took a new shape
for nearly every (query block, context length), and under varied prompts an engine's RSS climbed by
~800 MB before the caches filled (benchmarks/engine_rss.py). Prefill attention is SDPA now and the
linears pad their rows to steps of 16 (layers/modules.py, packed_rows), so few shapes remain; the
bound keeps any other varying shape from growing memory. 128 holds every shape a step uses several
times over."""


def bound_onednn_caches() -> None:
    """Bound the shape-keyed oneDNN caches (ONEDNN_CACHE_ENTRIES). Both read their capacity once,
    when oneDNN first runs in the process: call before any oneDNN work, as ModelRunner does."""
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.setdefault(name, str(ONEDNN_CACHE_ENTRIES))


@dataclass
class StepInputs:
    input_ids: torch.Tensor
    """[num_tokens] int64, decodes first, then prefill chunks."""
    positions: torch.Tensor
    """[num_tokens] int64."""
    meta: AttentionMetadata
    sample_rows: list[int]
    """Rows of the hidden states to sample from, one per request that samples this step."""


class ModelRunner:
    """Runs the model over the paged KV cache. Not thread-safe: one thread builds and steps it."""

    def __init__(self, config: EngineConfig, device: torch.device) -> None:
        self.device = device
        if device.type == "cpu":
            bound_onednn_caches()
            torch.set_num_threads(config.device.num_threads or len(os.sched_getaffinity(0)))
        self.loaded: LoadedModel = load_model(config.model, device)
        """The model with its tokenizer, limits and source, as loaded."""
        self.model: CausalLM = self.loaded.model
        self.kernels: CpuKernels | None = cpu_kernels() if device.type == "cpu" else None
        unpacked_bytes = param_bytes(self.model)
        self.greedy_head = self._build_greedy_head(config)
        """Greedy tokens from a screened LM head (see DeviceConfig.cpu_greedy_head_rows), or None."""
        if device.type == "cpu" and config.device.cpu_prepack_weights:
            prepack_linears(self.model, self._plain_head())
        self.weight_bytes = param_bytes(self.model) + (self.greedy_head.nbytes if self.greedy_head else 0)
        """Bytes of weights held, copies kept for speed included."""
        self.packed_copy_bytes = self.weight_bytes - unpacked_bytes
        """Of those, the copies kept for speed: a tied LM head's packed copy, the greedy head's int8
        copy (DeviceConfig.cpu_greedy_head_rows)."""
        saved = self.loaded.quantization.saved_bytes if self.loaded.quantization else 0
        self.kv_cache: KVCache = allocate_kv_cache(
            self.model, config, device, self.loaded.max_model_len, saved
        )
        self.kv_caches: list[LayerCache] = self.kv_cache.layers
        self.block_size = self.kv_cache.block_size
        self.fused_decode = FusedDecode.build(self.model, self.kv_caches, self.kernels)
        """All decoder layers of a decode-only step in one kernel call (int4 models), or None."""
        self.sampler = Sampler(config.model.seed, self.kernels, self.greedy_head)

    def _build_greedy_head(self, config: EngineConfig) -> GreedyHead | None:
        rows = config.device.cpu_greedy_head_rows
        if self.kernels is None or rows == 0:
            return None
        if rows is None:
            # With integer dot products the screen beats the matmul at every batch size measured
            # (performance.md); the float screen only while it stays memory-bound.
            rows = config.scheduler.max_num_seqs if self.kernels.has_vnni else _FLOAT_SCREEN_ROWS
        return GreedyHead.build(self.model, self.kernels, rows)

    def _plain_head(self) -> list[nn.Module]:
        """The LM head to leave unpacked: an untied head the greedy head rescores from (a tied
        head's plain rows are the embedding's, so the head itself gets its packed copy)."""
        head = getattr(self.model, "lm_head", None)
        untied = not getattr(self.loaded.hf_config, "tie_word_embeddings", False)
        screened = self.greedy_head is not None and self.greedy_head.weight is not None
        return [head] if screened and untied and isinstance(head, nn.Module) else []

    @torch.inference_mode()
    def execute(self, batch: SchedulerOutput, requests: list[Request]) -> SamplerOutput:
        """Run the step and sample the next token of `requests`: those of the batch that sample
        this step, in batch order."""
        inputs = self.prepare(batch)
        hidden = self.model(inputs.input_ids, inputs.positions, self.kv_caches, inputs.meta)
        if not requests:
            return SamplerOutput([], [])
        if len(inputs.sample_rows) != hidden.shape[0]:  # else every row, in order (rows ascend)
            rows = torch.tensor(inputs.sample_rows, dtype=torch.int64, device=self.device)
            hidden = hidden.index_select(0, rows)
        return self.sampler.sample(hidden, requests, self.model.compute_logits)

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
