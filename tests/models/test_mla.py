"""Multi-head latent attention: rotary layout, softmax scale, and absorbed decode against up-projection."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from seekserve.errors import ModelLoadError
from seekserve.layers.attention import AttentionMetadata, PrefillChunk
from seekserve.layers.modules import RotaryEmbedding
from seekserve.models.mla import MLAConfig, MLAttention, apply_rotary_interleaved, mla_softmax_scale

ROPE = 8


INV_FREQ = 1.0 / (10000 ** (torch.arange(0, ROPE, 2, dtype=torch.float) / ROPE))


def _cos_sin(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return RotaryEmbedding(INV_FREQ, 1.0, 64).lookup(torch.arange(n), torch.float32)


def test_interleaved_rotary_equals_transformers_v3() -> None:
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import apply_rotary_pos_emb_interleave

    q, k = torch.randn(5, 3, ROPE), torch.randn(5, 1, ROPE)
    cos, sin = _cos_sin(5)  # [5, 1, ROPE // 2]
    full_cos, full_sin = torch.cat((cos, cos), -1)[:, 0], torch.cat((sin, sin), -1)[:, 0]  # [5, ROPE]
    ref_q, ref_k = apply_rotary_pos_emb_interleave(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], full_cos[None], full_sin[None]
    )
    torch.testing.assert_close(apply_rotary_interleaved(q, cos, sin), ref_q[0].transpose(0, 1))
    torch.testing.assert_close(apply_rotary_interleaved(k, cos, sin), ref_k[0].transpose(0, 1))


def test_interleaved_rotary_gives_v2_complex_rotation_scores() -> None:
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import apply_rotary_emb

    q, k = torch.randn(6, 2, ROPE), torch.randn(6, 1, ROPE)
    cos, sin = _cos_sin(6)
    angles = torch.outer(torch.arange(6, dtype=torch.float), INV_FREQ)
    freqs = torch.polar(torch.ones_like(angles), angles)  # [6, ROPE // 2] complex, as transformers' V2
    ref_q, ref_k = apply_rotary_emb(q.transpose(0, 1)[None], k.transpose(0, 1)[None], freqs[None])
    ref_scores = ref_q[0].transpose(0, 1) @ ref_k[0].transpose(0, 1).transpose(-1, -2)
    got_q, got_k = apply_rotary_interleaved(q, cos, sin), apply_rotary_interleaved(k, cos, sin)
    torch.testing.assert_close(got_q @ got_k.transpose(-1, -2), ref_scores)


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "default", "rope_theta": 10000.0},
        {"rope_type": "yarn", "factor": 40.0, "mscale": 1.0, "mscale_all_dim": 1.0},
        {"rope_type": "yarn", "factor": 40.0, "mscale": 0.707, "mscale_all_dim": 0.707},
        {"rope_type": "yarn", "factor": 4.0, "mscale": 1.0},
        {"rope_type": "yarn", "factor": 1.0, "mscale_all_dim": 1.0},
    ],
)
def test_softmax_scale_equals_transformers(rope: dict[str, Any]) -> None:
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import yarn_apply_mscale

    assert mla_softmax_scale(rope, 192) == pytest.approx(yarn_apply_mscale(rope, 192**-0.5), rel=1e-12)


def _meta_prefill(n: int) -> AttentionMetadata:
    return AttentionMetadata(
        slot_mapping=torch.arange(n),
        num_decodes=0,
        decode_seq_lens=[],
        decode_block_tables=torch.zeros(0, 0, dtype=torch.int64),
        prefills=[PrefillChunk(0, n, 0, torch.arange(4))],
        block_size=16,
    )


@pytest.mark.parametrize("q_lora_rank", [None, 24])
def test_absorbed_decode_equals_up_projected_attention(q_lora_rank: int | None) -> None:
    cfg = MLAConfig(64, 4, q_lora_rank, 32, 16, ROPE, 12, softmax_scale=0.2)
    attn = MLAttention(cfg, torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    n = 11
    h = torch.randn(n, 64, generator=gen)
    cos, sin = _cos_sin(n)
    rows = torch.zeros(64, cfg.cache_row_size)
    with torch.no_grad():
        full = attn(h, cos, sin, (rows,), _meta_prefill(n))  # up-projected prefill of all n tokens
        rows.zero_()
        attn(h[:-1], cos[:-1], sin[:-1], (rows,), _meta_prefill(n - 1))
        decode = AttentionMetadata(
            slot_mapping=torch.tensor([n - 1]),
            num_decodes=1,
            decode_seq_lens=[n],
            decode_block_tables=torch.arange(4)[None],
            prefills=[],
            block_size=16,
        )
        last = attn(h[-1:], cos[-1:], sin[-1:], (rows,), decode)  # absorbed, over the latent rows
    torch.testing.assert_close(last, full[-1:], rtol=1e-5, atol=1e-5)


def test_cache_row_is_latent_plus_rotary_key() -> None:
    cfg = MLAConfig(7168, 128, 1536, 512, 128, 64, 128, softmax_scale=1.0)
    assert cfg.cache_row_size == 576
    assert cfg.qk_head_dim == 192


def test_odd_rotary_dimension_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="qk_rope_head_dim=7"):
        MLAConfig(64, 4, None, 32, 16, 7, 16, softmax_scale=1.0)
