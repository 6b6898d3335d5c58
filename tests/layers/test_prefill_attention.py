"""Prefill chunks through PagedAttention.attend (the path every device takes): a chunk's own keys,
or its history read back from the paged cache, with grouped-query heads and sliding windows,
against attention written out by hand in float64."""

from __future__ import annotations

import pytest
import torch

from seekserve.layers.attention import AttentionMetadata, PagedAttention, PrefillChunk

BLOCK = 16


def reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int, window: int | None
) -> torch.Tensor:
    """q [Lq, H, D] at positions offset.., over k, v [offset + Lq, KV, D]: softmax(q k^T * 0.2) v."""
    group = q.shape[1] // k.shape[1]
    keys, values = (x.double().repeat_interleave(group, 1).transpose(0, 1) for x in (k, v))
    scores = q.double().transpose(0, 1) @ keys.transpose(1, 2) * 0.2  # [H, Lq, Lk]
    query_pos = torch.arange(offset, offset + q.shape[0])[:, None]
    key_pos = torch.arange(k.shape[0])[None, :]
    visible = key_pos <= query_pos
    if window:
        visible &= key_pos > query_pos - window
    return (scores.masked_fill(~visible, float("-inf")).softmax(-1) @ values).transpose(0, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("num_queries", "offset", "window", "heads"),
    [
        (300, 0, None, (4, 1)),
        (130, 45, None, (6, 2)),
        (260, 0, 100, (4, 4)),
        (200, 30, 64, (8, 2)),
        (1, 9, 4, (2, 1)),
        (33, 700, 512, (4, 1)),
    ],
    ids=["causal-gqa", "with-history", "window", "window-history", "one-query", "window-cuts-history"],
)
def test_prefill_chunk_matches_reference(
    num_queries: int, offset: int, window: int | None, heads: tuple[int, int], dtype: torch.dtype
) -> None:
    num_heads, num_kv_heads = heads
    total = offset + num_queries
    gen = torch.Generator().manual_seed(num_queries + offset)
    q = torch.randn(num_queries, num_heads, 32, generator=gen)
    k = torch.randn(total, num_kv_heads, 32, generator=gen)
    v = torch.randn(total, num_kv_heads, 32, generator=gen)
    # The request's blocks, out of order in a cache with room for more, as the block manager hands them out.
    num_blocks = -(-total // BLOCK)
    block_table = torch.randperm(2 * num_blocks, generator=gen)[:num_blocks]
    slots = block_table[torch.arange(total) // BLOCK] * BLOCK + torch.arange(total) % BLOCK
    k_cache = torch.full((2 * num_blocks * BLOCK, num_kv_heads, 32), float("nan"), dtype=dtype)
    v_cache = torch.full_like(k_cache, float("nan"))  # what no key is must never be read
    PagedAttention.write(k_cache, slots, k)
    PagedAttention.write(v_cache, slots, v)
    meta = AttentionMetadata(
        slot_mapping=slots[offset:],
        num_decodes=0,
        decode_seq_lens=[],
        decode_block_tables=torch.zeros(0, num_blocks, dtype=torch.int64),
        prefills=[PrefillChunk(0, num_queries, offset, block_table)],
        block_size=BLOCK,
    )
    got = PagedAttention.attend(
        q.to(dtype), k[offset:].to(dtype), v[offset:].to(dtype), k_cache, v_cache, meta, 0.2, window
    )
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 3e-2, "rtol": 3e-2}
    torch.testing.assert_close(got.double(), reference(q, k, v, offset, window), **tolerance)
