"""Attention over the paged KV cache, and the per-step metadata it reads.

The KV cache of a layer is a flat array of slots, `block_size` slots per block:

    k_cache: [num_blocks * block_size, num_kv_heads, head_dim]      (v_cache likewise)
    slot of a request's token at position p = block_ids[p // block_size] * block_size + p % block_size

One step's tokens are flattened, decodes first, then prefill chunks:

    tokens:  [ d0 d1 d2 | p0 p0 p0 p0 p0 | p1 p1 p1 ]     (3 decodes, 2 prefill chunks)

`PagedAttention` computes the decodes with the CPU kernel (layers/kernels/paged_attention.cpp,
reading keys and values in place) when the runner attached one to the metadata; otherwise it
gathers each sequence's keys and values from their slots and calls `scaled_dot_product_attention`
in one batched call. A prefill chunk attends over its own keys (plus those gathered from its
cached history) in one SDPA call, with an explicit mask where it has history or a window. On CPU
that is torch's flash-attention kernel: with torch 2.13 it is 1.6-3x faster than the blockwise
matrix products used before, and it has no per-shape cost, where a bf16 `torch.matmul` of a new
(query rows, keys) shape built a new oneDNN primitive (about 3.5 ms) and filled oneDNN's caches
(docs/performance.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from seekserve.layers.cpu_kernels import CpuKernels

__all__ = ["AttentionMetadata", "DecodeView", "PagedAttention", "PrefillChunk", "PrefillView"]


@dataclass(frozen=True)
class PrefillChunk:
    """A request's chunk of new tokens: flat rows [start, end), positions [num_computed, seq_len)."""

    start: int
    end: int
    num_computed: int
    block_table: torch.Tensor
    """[num_blocks] int64, the request's blocks."""

    @property
    def seq_len(self) -> int:
        return self.num_computed + self.end - self.start


@dataclass(frozen=True)
class DecodeView:
    """Where the decodes' keys live, for one attention window."""

    slots: torch.Tensor
    """[num_decodes, max_len] int64 slot of each key (padding repeats a valid slot)."""
    mask: torch.Tensor | None
    """[num_decodes, 1, 1, max_len] bool, True where a key is attended; None when none is padding."""


@dataclass(frozen=True)
class PrefillView:
    """Where one prefill chunk's keys live, for one attention window."""

    slots: torch.Tensor | None
    """[num_keys] int64 slots of the keys, or None when the keys are exactly the chunk's own."""
    mask: torch.Tensor | None
    """[chunk_len, num_keys] bool, True where attended; None means plain causal over own keys."""


class LayerStack(Protocol):
    """All decoder layers of a step run at once, instead of the model's own loop over its layers.

    The model runner picks one for a step (engine/fused_decode.py: one kernel call for every layer
    of an int4 decode step) and hands it to the model through `AttentionMetadata.layer_stack`; the
    model then calls it on its embedded rows and skips its loop. It must leave the hidden states
    and the KV cache exactly as the loop would.
    """

    def run(
        self, h: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The layers on the embedded rows h [num_tokens, hidden]: (h, residual) as the model's
        layer loop leaves them (residual None where the model keeps none between layers)."""
        ...


@dataclass
class AttentionMetadata:
    """Everything attention needs about one step's batch; built once per step by the runner."""

    slot_mapping: torch.Tensor
    """[num_tokens] int64 cache slot each new token's K/V is written to."""
    num_decodes: int
    decode_seq_lens: list[int]
    """Context length of each decode, its new token included."""
    decode_block_tables: torch.Tensor
    """[num_decodes, max_blocks] int64 (padded with 0)."""
    prefills: list[PrefillChunk]
    block_size: int
    kernels: CpuKernels | None = None
    """CPU kernels for decode attention; None uses the torch path."""
    layer_stack: LayerStack | None = None
    """Set by the runner when this step's decoder layers run as one call; None runs the model's loop."""
    _decode_views: dict[int | None, DecodeView] = field(default_factory=dict)
    _prefill_views: dict[int | None, list[PrefillView]] = field(default_factory=dict)

    @functools.cached_property
    def decode_lens(self) -> torch.Tensor:
        """[num_decodes] int64 context lengths, the new token included."""
        return torch.tensor(self.decode_seq_lens, dtype=torch.int64, device=self.slot_mapping.device)

    def decode_view(self, window: int | None) -> DecodeView:
        """Key slots and padding mask of the decodes, keeping only the last `window` keys if set."""
        view = self._decode_views.get(window)
        if view is None:
            view = self._decode_views[window] = self._make_decode_view(window)
        return view

    def prefill_views(self, window: int | None) -> list[PrefillView]:
        views = self._prefill_views.get(window)
        if views is None:
            views = self._prefill_views[window] = [self._make_prefill_view(c, window) for c in self.prefills]
        return views

    def _make_decode_view(self, window: int | None) -> DecodeView:
        device = self.slot_mapping.device
        lens = self.decode_lens
        starts = (lens - window).clamp_(min=0) if window else torch.zeros_like(lens)
        counts = lens - starts
        max_len = int(counts.max())
        offsets = torch.arange(max_len, device=device)
        positions = torch.minimum(starts[:, None] + offsets, lens[:, None] - 1)  # [B, max_len]
        blocks = torch.gather(self.decode_block_tables, 1, positions // self.block_size)
        slots = blocks * self.block_size + positions % self.block_size
        mask = None
        if int(counts.min()) != max_len:
            mask = (offsets < counts[:, None])[:, None, None, :]
        return DecodeView(slots, mask)

    def _make_prefill_view(self, chunk: PrefillChunk, window: int | None) -> PrefillView:
        device = self.slot_mapping.device
        first_key = max(0, chunk.num_computed - window + 1) if window else 0
        if chunk.num_computed == 0 and (window is None or chunk.seq_len <= window):
            return PrefillView(None, None)
        key_pos = torch.arange(first_key, chunk.seq_len, device=device)
        query_pos = torch.arange(chunk.num_computed, chunk.seq_len, device=device)
        mask = key_pos[None, :] <= query_pos[:, None]
        if window:
            mask &= key_pos[None, :] > query_pos[:, None] - window
        if chunk.num_computed == 0:
            return PrefillView(None, mask)
        slots = chunk.block_table[key_pos // self.block_size] * self.block_size + key_pos % self.block_size
        return PrefillView(slots, mask)


class PagedAttention:
    """Attention over the paged cache: the CPU decode kernel where attached, else gather + SDPA."""

    @staticmethod
    def write(cache: torch.Tensor, slot_mapping: torch.Tensor, values: torch.Tensor) -> None:
        """Store this step's new K or V rows ([num_tokens, ...]) into their cache slots."""
        cache.index_copy_(0, slot_mapping, values.to(cache.dtype))

    @staticmethod
    def attend(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
        scale: float,
        window: int | None = None,
    ) -> torch.Tensor:
        """Attention of this step's queries over their sequences' keys.

        q: [num_tokens, num_heads, head_dim]; k, v: [num_tokens, num_kv_heads, head_dim], already
        written to the caches. Returns [num_tokens, num_heads, head_dim].
        """
        out = torch.empty_like(q)
        nd = meta.num_decodes
        kernels = meta.kernels
        if nd and kernels is not None and kernels.supports(q.dtype) and k_cache.dtype == q.dtype:
            out[:nd] = kernels.paged_decode(
                q[:nd],
                k_cache,
                v_cache,
                meta.decode_block_tables,
                meta.decode_lens,
                meta.block_size,
                window,
                scale,
            )
        elif nd:
            decode = meta.decode_view(window)
            keys = k_cache[decode.slots].transpose(1, 2)  # [B, num_kv_heads, max_len, head_dim]
            values = v_cache[decode.slots].transpose(1, 2)
            out[:nd] = _sdpa(q[:nd].unsqueeze(2), keys, values, decode.mask, scale, causal=False).squeeze(2)
        for chunk, view in zip(meta.prefills, meta.prefill_views(window), strict=True):
            s, e = chunk.start, chunk.end
            if view.slots is None:
                keys, values = k[s:e], v[s:e]
            else:
                keys, values = k_cache[view.slots], v_cache[view.slots]
            out[s:e] = _sdpa(
                q[s:e].transpose(0, 1)[None],
                keys.transpose(0, 1)[None],
                values.transpose(0, 1)[None],
                view.mask,
                scale,
                causal=view.mask is None,
            )[0].transpose(0, 1)
        return out


def _sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    causal: bool,
) -> torch.Tensor:
    """SDPA on [batch, heads, len, head_dim] tensors, with grouped-query heads expanded if needed."""
    return F.scaled_dot_product_attention(
        q,
        k.to(q.dtype),
        v.to(q.dtype),
        attn_mask=mask,
        is_causal=causal,
        scale=scale,
        enable_gqa=k.shape[1] != q.shape[1],
    )
