"""Multi-head latent attention (DeepSeek-V2/V3) over a paged cache of latent vectors.

The cache of a layer holds one row per token: the normalised compressed KV and the rotary key that
all heads share, nothing per head:

    rows: [num_slots, kv_lora_rank + qk_rope_head_dim]
    row:  [ c_kv (kv_lora_rank) | k_pe (qk_rope_head_dim) ]      DeepSeek-V3: 512 + 64 = 576 values

Keys and values of head h are up-projections of c_kv through `kv_b_proj` = [W_UK; W_UV] per head:

    k[h] = [ W_UK[h] c_kv | k_pe ]        v[h] = W_UV[h] c_kv

Prefill up-projects its chunk's keys and values and runs ordinary causal attention. Decode absorbs
W_UK into the query and W_UV into the output, so it attends over the rows themselves as a single
shared key/value head:

    q[h]·k[h] = (W_UK[h]^T q_nope[h])·c_kv + q_pe[h]·k_pe        out[h] = W_UV[h] (Σ p · c_kv)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seekserve.errors import ModelLoadError
from seekserve.layers.attention import AttentionMetadata, PagedAttention
from seekserve.layers.modules import Linear, RMSNorm, apply_rotary
from seekserve.models.base import LayerCache

__all__ = ["MLAConfig", "MLAttention", "apply_rotary_interleaved", "mla_softmax_scale"]

_LATENT_NORM_EPS = 1e-6
"""DeepSeek's q_a_layernorm and kv_a_layernorm use this epsilon whatever `rms_norm_eps` says."""


@dataclass(frozen=True)
class MLAConfig:
    """The shape of one MLA layer, read from a DeepSeek config.json."""

    hidden_size: int
    num_heads: int
    q_lora_rank: int | None
    """Rank of the low-rank query (q_a_proj -> norm -> q_b_proj); None for a plain q_proj (V2-Lite)."""
    kv_lora_rank: int
    """Width of the compressed KV vector c_kv that the cache stores."""
    qk_nope_head_dim: int
    """Per-head query/key dimensions without position information."""
    qk_rope_head_dim: int
    """Per-head query dimensions with rotary position; the rotary key is shared by all heads."""
    v_head_dim: int
    softmax_scale: float
    """Attention scale: qk_head_dim ** -0.5, times YaRN's mscale squared where the config asks."""
    rope_interleave: bool = True
    """Rotary dimensions come in interleaved pairs (x0, x1), (x2, x3), ... as DeepSeek's weights do."""
    attention_bias: bool = False
    """Bias on q_a_proj, kv_a_proj_with_mqa and o_proj."""

    def __post_init__(self) -> None:
        sizes = {
            "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_heads,
            "kv_lora_rank": self.kv_lora_rank,
            "qk_rope_head_dim": self.qk_rope_head_dim,
            "v_head_dim": self.v_head_dim,
            "qk_nope_head_dim": self.qk_nope_head_dim,
        }
        if self.q_lora_rank is not None:
            sizes["q_lora_rank"] = self.q_lora_rank
        for name, value in sizes.items():
            if value < 1:
                raise ModelLoadError(f"config.json has {name}={value}: it must be positive")
        if self.qk_rope_head_dim % 2:
            raise ModelLoadError(
                f"config.json has qk_rope_head_dim={self.qk_rope_head_dim}: rotary dimensions come in "
                f"pairs, so it must be even"
            )

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def cache_row_size(self) -> int:
        """Values the cache holds per token for this layer."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @classmethod
    def from_hf(cls, config: Any) -> MLAConfig:
        qk_head_dim = config.qk_nope_head_dim + config.qk_rope_head_dim
        return cls(
            hidden_size=config.hidden_size,
            num_heads=config.num_attention_heads,
            q_lora_rank=config.q_lora_rank,
            kv_lora_rank=config.kv_lora_rank,
            qk_nope_head_dim=config.qk_nope_head_dim,
            qk_rope_head_dim=config.qk_rope_head_dim,
            v_head_dim=config.v_head_dim,
            softmax_scale=mla_softmax_scale(config.rope_parameters or {}, qk_head_dim),
            rope_interleave=bool(getattr(config, "rope_interleave", True)),
            attention_bias=bool(getattr(config, "attention_bias", False)),
        )


def mla_softmax_scale(rope_parameters: dict[str, Any], qk_head_dim: int) -> float:
    """qk_head_dim ** -0.5, times mscale(factor, mscale_all_dim) ** 2 for scaled rope (YaRN) configs."""
    scale = qk_head_dim**-0.5
    if rope_parameters.get("rope_type", "default") == "default":
        return scale
    mscale_all_dim = float(rope_parameters.get("mscale_all_dim") or 0.0)
    factor = float(rope_parameters.get("factor", 1.0))
    if mscale_all_dim and factor > 1.0:
        mscale = 0.1 * mscale_all_dim * math.log(factor) + 1.0
        scale *= mscale * mscale
    return scale


def apply_rotary_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x0, x1), (x2, x3), ... of [..., dim]; the result is in halves layout.

    Queries and keys are both returned as [rotated evens | rotated odds], so their dot products are
    those of the interleaved rotation.
    """
    return apply_rotary(torch.cat((x[..., 0::2], x[..., 1::2]), dim=-1), cos, sin)


class MLAttention(nn.Module):
    """One MLA layer: writes (c_kv, k_pe) rows to the paged cache and attends over them."""

    w_uk: torch.Tensor | None
    w_uv_t: torch.Tensor | None

    def __init__(self, cfg: MLAConfig, dtype: torch.dtype):
        super().__init__()
        self.cfg = cfg
        hidden, heads = cfg.hidden_size, cfg.num_heads
        bias = cfg.attention_bias
        if cfg.q_lora_rank is None:
            self.q_proj = Linear(hidden, [heads * cfg.qk_head_dim], bias=False, dtype=dtype)
        else:
            self.q_a_proj = Linear(hidden, [cfg.q_lora_rank], bias=bias, dtype=dtype)
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, _LATENT_NORM_EPS, dtype)
            self.q_b_proj = Linear(cfg.q_lora_rank, [heads * cfg.qk_head_dim], bias=False, dtype=dtype)
        self.kv_a_proj_with_mqa = Linear(hidden, [cfg.cache_row_size], bias=bias, dtype=dtype)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank, _LATENT_NORM_EPS, dtype)
        self.kv_b_proj = Linear(
            cfg.kv_lora_rank, [heads * (cfg.qk_nope_head_dim + cfg.v_head_dim)], bias=False, dtype=dtype
        )
        self.o_proj = Linear(heads * cfg.v_head_dim, [hidden], bias=bias, dtype=dtype)
        self.register_buffer("w_uk", None, persistent=False)
        self.register_buffer("w_uv_t", None, persistent=False)

    def forward(
        self,
        h: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: LayerCache,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        """h: [num_tokens, hidden] -> [num_tokens, hidden]; cache is this layer's (rows,)."""
        cfg = self.cfg
        n = h.shape[0]
        q_nope, q_pe = (
            self._query(h)
            .view(n, cfg.num_heads, cfg.qk_head_dim)
            .split([cfg.qk_nope_head_dim, cfg.qk_rope_head_dim], dim=-1)
        )
        c_kv, k_pe = self.kv_a_proj_with_mqa(h).split([cfg.kv_lora_rank, cfg.qk_rope_head_dim], dim=-1)
        c_kv = self.kv_a_layernorm(c_kv)  # [n, kv_lora_rank]
        rotate = apply_rotary_interleaved if cfg.rope_interleave else apply_rotary
        q_pe = rotate(q_pe, cos, sin)  # [n, heads, rope]
        k_pe = rotate(k_pe.unsqueeze(1), cos, sin).squeeze(1)  # [n, rope]
        (rows,) = cache
        PagedAttention.write(rows, meta.slot_mapping, torch.cat((c_kv, k_pe), dim=-1))
        out = h.new_empty(n, cfg.num_heads, cfg.v_head_dim)
        nd = meta.num_decodes
        if nd:
            out[:nd] = self._decode(q_nope[:nd], q_pe[:nd], rows, meta)
        for chunk, view in zip(meta.prefills, meta.prefill_views(None), strict=True):
            s, e = chunk.start, chunk.end
            if view.slots is None:
                keys_c, keys_pe = c_kv[s:e], k_pe[s:e]
            else:
                keys_c, keys_pe = (
                    rows[view.slots].to(h.dtype).split([cfg.kv_lora_rank, cfg.qk_rope_head_dim], dim=-1)
                )
            out[s:e] = self._prefill(q_nope[s:e], q_pe[s:e], keys_c, keys_pe, view.mask)
        return self.o_proj(out.view(n, cfg.num_heads * cfg.v_head_dim))

    def _query(self, h: torch.Tensor) -> torch.Tensor:
        if self.cfg.q_lora_rank is None:
            return self.q_proj(h)
        return self.q_b_proj(self.q_a_layernorm(self.q_a_proj(h)))

    def absorb(self) -> None:
        """Split kv_b_proj into the contiguous per-head matrices decode multiplies with.

        Called once the weights are loaded (again if kv_b_proj changes): batched matmuls on strided
        views of kv_b_proj would copy the weight on every step. A quantized kv_b_proj is dequantized
        here, so decode multiplies with the same (rounded) weights that prefill does.
        """
        cfg = self.cfg
        w = self.kv_b_proj.dense_weight().view(
            cfg.num_heads, cfg.qk_nope_head_dim + cfg.v_head_dim, cfg.kv_lora_rank
        )
        self.w_uk = w[:, : cfg.qk_nope_head_dim].contiguous()  # [heads, nope, kv_lora_rank]
        self.w_uv_t = w[:, cfg.qk_nope_head_dim :].transpose(1, 2).contiguous()  # [heads, kv_lora_rank, v]

    def _decode(
        self, q_nope: torch.Tensor, q_pe: torch.Tensor, rows: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        """Absorbed attention of one new token per sequence over its latent rows -> [B, heads, v_head_dim]."""
        if self.w_uk is None or self.w_uv_t is None:
            self.absorb()
        assert self.w_uk is not None and self.w_uv_t is not None, "absorb() sets both"
        q_latent = torch.bmm(q_nope.transpose(0, 1), self.w_uk).transpose(0, 1)  # [B, heads, kv_lora_rank]
        # One key/value head shared by all query heads: the heads take the place of query positions,
        # so the rows are read once per sequence instead of once per head.
        query = torch.cat((q_latent, q_pe), dim=-1).unsqueeze(1)  # [B, 1, heads, row]
        view = meta.decode_view(None)
        keys = rows[view.slots].to(query.dtype).unsqueeze(1)  # [B, 1, max_len, row]
        values = keys[..., : self.cfg.kv_lora_rank]  # [B, 1, max_len, kv_lora_rank]
        latent_out = F.scaled_dot_product_attention(
            query, keys, values, attn_mask=view.mask, scale=self.cfg.softmax_scale
        ).squeeze(1)  # [B, heads, kv_lora_rank]
        return torch.bmm(latent_out.transpose(0, 1), self.w_uv_t).transpose(0, 1)

    def _prefill(
        self,
        q_nope: torch.Tensor,
        q_pe: torch.Tensor,
        c_kv: torch.Tensor,
        k_pe: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Attention of a chunk's queries over up-projected keys [num_keys, ...] -> [chunk, heads, v]."""
        cfg = self.cfg
        num_keys = c_kv.shape[0]
        kv = self.kv_b_proj(c_kv).view(num_keys, cfg.num_heads, cfg.qk_nope_head_dim + cfg.v_head_dim)
        k_nope, v = kv.split([cfg.qk_nope_head_dim, cfg.v_head_dim], dim=-1)
        k = torch.cat((k_nope, k_pe.unsqueeze(1).expand(-1, cfg.num_heads, -1)), dim=-1)
        q = torch.cat((q_nope, q_pe), dim=-1)
        out = F.scaled_dot_product_attention(
            q.transpose(0, 1)[None],
            k.transpose(0, 1)[None],
            v.transpose(0, 1)[None],
            attn_mask=mask,
            is_causal=mask is None,
            scale=cfg.softmax_scale,
        )
        return out[0].transpose(0, 1)
