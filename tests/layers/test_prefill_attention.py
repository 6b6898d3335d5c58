"""Blockwise causal prefill attention (CPU) against SDPA with the explicit mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seekserve.layers.attention import _blockwise_causal


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("num_queries", "offset", "window", "heads"),
    [
        (300, 0, None, (4, 1)),
        (130, 45, None, (6, 2)),
        (260, 0, 100, (4, 4)),
        (200, 30, 64, (8, 2)),
        (1, 9, 4, (2, 1)),
    ],
    ids=["causal-gqa", "with-history", "window", "window-history", "one-query"],
)
def test_blockwise_causal_matches_masked_sdpa(
    num_queries: int, offset: int, window: int | None, heads: tuple[int, int], dtype: torch.dtype
) -> None:
    num_heads, num_kv_heads = heads
    gen = torch.Generator().manual_seed(num_queries + offset)
    q = torch.randn(num_queries, num_heads, 32, generator=gen)
    k = torch.randn(num_queries + offset, num_kv_heads, 32, generator=gen)
    v = torch.randn(num_queries + offset, num_kv_heads, 32, generator=gen)
    query_pos = torch.arange(offset, offset + num_queries)[:, None]
    key_pos = torch.arange(num_queries + offset)[None, :]
    mask = key_pos <= query_pos
    if window:
        mask &= key_pos > query_pos - window
    group = num_heads // num_kv_heads
    keys, values = (x.repeat_interleave(group, 1).transpose(0, 1) for x in (k, v))
    expected = F.scaled_dot_product_attention(q.transpose(0, 1), keys, values, attn_mask=mask, scale=0.2)
    expected = expected.transpose(0, 1)
    got = _blockwise_causal(q.to(dtype), k.to(dtype), v.to(dtype), 0.2, offset, window)
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 3e-2, "rtol": 3e-2}
    torch.testing.assert_close(got.float(), expected, **tolerance)
