"""Model size on paper, from a config.json alone: parameters, weight bytes per dtype, KV bytes per token.

`model_size(config)` lists every weight tensor of the model as `WeightGroup`s (shape, how many, how
many one token uses), and `ModelSize` derives the figures from that inventory:

- parameters: all weights of the decoder and its heads; the multi-token-prediction (MTP) layers of
  DeepSeek-V3 are counted apart, since serving without speculative decoding does not load them;
- activated parameters per token: every weight a token's forward pass multiplies with, that is all
  but the routed experts it is not sent to and the embedding table (a lookup of one row); this is how
  DeepSeek counts (V2-Lite 2.4B, V2 21B, V3 37B);
- weight bytes: bf16 stores everything in 2 bytes; fp8 stores linear-layer weights in 1 byte plus a
  float32 scale per 128×128 block (DeepSeek-V3's release format); int8 in 1 byte plus a bf16 scale per
  output channel (`quant/int8.py`'s format); int4 in half a byte plus a bf16 scale per group of 128
  inputs. Embeddings, norms, routers and the LM head stay bf16;
- KV bytes per token: MLA caches (kv_lora_rank + qk_rope_head_dim) values per layer, a dense model
  2 × num_key_value_heads × head_dim.

Routed experts are marked (`WeightGroup.expert`), and `ModelSize` keeps the shape figures a GPU plan
needs (layers, hidden size, vocabulary, attention and KV heads), so `plan/` can tell what tensor,
pipeline and expert parallelism put on each GPU without reading the config again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from seekserve.errors import ModelLoadError, UnsupportedModelError

__all__ = [
    "KV_DTYPE_BYTES",
    "WEIGHT_DTYPES",
    "ModelSize",
    "WeightDType",
    "WeightGroup",
    "model_size",
    "read_config",
]

WeightDType = Literal["bf16", "fp8", "int8", "int4"]
WEIGHT_DTYPES: tuple[str, ...] = ("bf16", "fp8", "int8", "int4")
KV_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
"""Bytes per cached value for each KV-cache dtype."""
_FP8_BLOCK = 128
_INT4_GROUP = 128


@dataclass(frozen=True)
class WeightGroup:
    """`count` tensors of one shape, `num_active` of which a single token's forward pass uses."""

    name: str
    shape: tuple[int, ...]
    count: int
    num_active: int
    linear: bool
    """A linear layer's [out, in] weight, which fp8, int8 and int4 quantize; other tensors stay bf16."""
    expert: bool = False
    """A routed expert's weight: expert parallelism spreads these over every GPU of a stage."""

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def bytes_each(self, dtype: WeightDType) -> int:
        if not self.linear or dtype == "bf16":
            return 2 * self.numel
        rows, cols = self.shape
        if dtype == "fp8":
            return self.numel + 4 * -(-rows // _FP8_BLOCK) * -(-cols // _FP8_BLOCK)
        if dtype == "int8":
            return self.numel + 2 * rows
        return self.numel // 2 + 2 * rows * -(-cols // _INT4_GROUP)


@dataclass(frozen=True)
class ModelSize:
    """The inventory of a model's weights and its KV-cache footprint."""

    model_type: str
    weights: tuple[WeightGroup, ...]
    mtp_weights: tuple[WeightGroup, ...]
    """Weights of the multi-token-prediction layers (shared embedding and head not repeated)."""
    kv_values_per_token: int
    """Values the KV cache holds per token, over all layers."""
    num_layers: int = 0
    """Decoder layers (each holds its part of the KV cache)."""
    hidden_size: int = 0
    vocab_size: int = 0
    num_attention_heads: int = 0
    num_kv_heads: int = 0
    """KV heads, which tensor parallelism splits the cache by; 0 for MLA, whose one latent row per
    token every tensor-parallel rank keeps whole."""

    @property
    def num_params(self) -> int:
        return sum(g.numel * g.count for g in self.weights)

    @property
    def num_active_params(self) -> int:
        return sum(g.numel * g.num_active for g in self.weights)

    @property
    def num_mtp_params(self) -> int:
        return sum(g.numel * g.count for g in self.mtp_weights)

    def weight_bytes(self, dtype: WeightDType = "bf16", include_mtp: bool = False) -> int:
        """Bytes of the weights stored as `dtype` (bf16, fp8, int8 or int4)."""
        return sum(g.bytes_each(dtype) * g.count for g in self._groups(dtype, include_mtp))

    def expert_weight_bytes(self, dtype: WeightDType = "bf16", include_mtp: bool = False) -> int:
        """Bytes of the routed experts alone (0 for a dense model), stored as `dtype`."""
        return sum(g.bytes_each(dtype) * g.count for g in self._groups(dtype, include_mtp) if g.expert)

    def _groups(self, dtype: str, include_mtp: bool) -> tuple[WeightGroup, ...]:
        if dtype not in WEIGHT_DTYPES:
            raise ValueError(f"weight dtype {dtype!r} is not one of {', '.join(WEIGHT_DTYPES)}")
        return self.weights + (self.mtp_weights if include_mtp else ())

    def kv_bytes_per_token(self, dtype: str = "bf16") -> int:
        """KV-cache bytes one token takes over all layers, for a cache of `dtype` values."""
        if dtype not in KV_DTYPE_BYTES:
            raise ValueError(f"KV dtype {dtype!r} is not one of {', '.join(KV_DTYPE_BYTES)}")
        return self.kv_values_per_token * KV_DTYPE_BYTES[dtype]


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed config.json of a model directory (or the file itself)."""
    file = Path(path)
    if file.is_dir():
        file = file / "config.json"
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {file}: {e}") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"{file} is not a JSON object")
    return data


def model_size(config: Mapping[str, Any]) -> ModelSize:
    """Sizes of the model a config.json describes (DeepSeek-V2/V3/R1, Llama, Mistral, Qwen2)."""
    model_type = str(config.get("model_type", ""))
    counter = _COUNTERS.get(model_type)
    if counter is None:
        raise UnsupportedModelError(
            f"cannot size model_type {model_type!r}: sizing knows {', '.join(sorted(_COUNTERS))}"
        )
    return counter(_Config(config, model_type))


class _Config:
    """config.json values with the defaults transformers applies, and a clear error for missing ones."""

    def __init__(self, values: Mapping[str, Any], model_type: str):
        self.values = values
        self.model_type = model_type

    def __getitem__(self, key: str) -> int:
        value = self.values.get(key)
        if not isinstance(value, int):
            raise ModelLoadError(f"config.json of model_type {self.model_type!r} lacks an integer {key!r}")
        return value

    def get(self, key: str, default: Any) -> Any:
        value = self.values.get(key)
        return default if value is None else value


def _embeddings(c: _Config) -> list[WeightGroup]:
    hidden, vocab = c["hidden_size"], c["vocab_size"]
    groups = [WeightGroup("embed_tokens", (vocab, hidden), 1, 0, False)]  # a lookup, not a matmul
    if not c.get("tie_word_embeddings", False):
        groups.append(WeightGroup("lm_head", (vocab, hidden), 1, 1, False))
    return [*groups, WeightGroup("norm", (hidden,), 1, 1, False)]


def _mlp(
    name: str, hidden: int, inter: int, count: int, num_active: int, expert: bool = False
) -> list[WeightGroup]:
    return [
        WeightGroup(f"{name}.gate_proj", (inter, hidden), count, num_active, True, expert),
        WeightGroup(f"{name}.up_proj", (inter, hidden), count, num_active, True, expert),
        WeightGroup(f"{name}.down_proj", (hidden, inter), count, num_active, True, expert),
    ]


def _dense(c: _Config) -> ModelSize:
    """Llama, Mistral, Qwen2: GQA attention and a gated MLP in every layer."""
    hidden, layers = c["hidden_size"], c["num_hidden_layers"]
    heads = c["num_attention_heads"]
    kv_heads = c.get("num_key_value_heads", heads)
    head_dim = c.get("head_dim", hidden // heads)
    q, kv = heads * head_dim, kv_heads * head_dim
    groups = [
        WeightGroup("q_proj", (q, hidden), layers, layers, True),
        WeightGroup("k_proj", (kv, hidden), layers, layers, True),
        WeightGroup("v_proj", (kv, hidden), layers, layers, True),
        WeightGroup("o_proj", (hidden, q), layers, layers, True),
        WeightGroup("layernorms", (hidden,), 2 * layers, 2 * layers, False),
        *_mlp("mlp", hidden, c["intermediate_size"], layers, layers),
    ]
    qkv_bias = c.model_type == "qwen2" or bool(c.get("attention_bias", False))
    if qkv_bias:
        groups.append(WeightGroup("qkv_bias", (q + 2 * kv,), layers, layers, False))
    if c.model_type != "qwen2" and c.get("attention_bias", False):
        groups.append(WeightGroup("o_bias", (hidden,), layers, layers, False))
    if c.get("mlp_bias", False):
        inter = c["intermediate_size"]
        groups.append(WeightGroup("mlp_bias", (2 * inter + hidden,), layers, layers, False))
    shape = _shape(c, layers, kv_heads)
    return ModelSize(c.model_type, (*_embeddings(c), *groups), (), 2 * kv * layers, **shape)


def _shape(c: _Config, num_layers: int, num_kv_heads: int) -> dict[str, int]:
    """ModelSize's shape fields."""
    return {
        "num_layers": num_layers,
        "hidden_size": c["hidden_size"],
        "vocab_size": c["vocab_size"],
        "num_attention_heads": c["num_attention_heads"],
        "num_kv_heads": num_kv_heads,
    }


def _mla(c: _Config, count: int) -> list[WeightGroup]:
    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    rank, rope = c["kv_lora_rank"], c["qk_rope_head_dim"]
    nope, v = c["qk_nope_head_dim"], c["v_head_dim"]
    q_rank = c.get("q_lora_rank", None)
    groups = [
        WeightGroup("kv_a_proj_with_mqa", (rank + rope, hidden), count, count, True),
        WeightGroup("kv_a_layernorm", (rank,), count, count, False),
        WeightGroup("kv_b_proj", (heads * (nope + v), rank), count, count, True),
        WeightGroup("o_proj", (hidden, heads * v), count, count, True),
        WeightGroup("layernorms", (hidden,), 2 * count, 2 * count, False),
    ]
    if q_rank is None:
        groups.append(WeightGroup("q_proj", (heads * (nope + rope), hidden), count, count, True))
    else:
        groups += [
            WeightGroup("q_a_proj", (q_rank, hidden), count, count, True),
            WeightGroup("q_a_layernorm", (q_rank,), count, count, False),
            WeightGroup("q_b_proj", (heads * (nope + rope), q_rank), count, count, True),
        ]
    if c.get("attention_bias", False):
        groups.append(
            WeightGroup("attention_biases", ((q_rank or 0) + rank + rope + hidden,), count, count, False)
        )
    return groups


def _moe(c: _Config, count: int) -> list[WeightGroup]:
    hidden, inter = c["hidden_size"], c["moe_intermediate_size"]
    experts, top_k = c["n_routed_experts"], c["num_experts_per_tok"]
    shared = c.get("n_shared_experts", 0)
    groups = [
        WeightGroup("router", (experts, hidden), count, count, False),
        *_mlp("routed_experts", hidden, inter, count * experts, count * top_k, expert=True),
    ]
    if c.get("topk_method", "noaux_tc" if c.model_type == "deepseek_v3" else "greedy") == "noaux_tc":
        groups.append(WeightGroup("e_score_correction_bias", (experts,), count, count, False))
    if shared:
        groups += _mlp("shared_experts", hidden, inter * shared, count, count)
    return groups


def _deepseek(c: _Config) -> ModelSize:
    """DeepSeek-V2/V3: MLA in every layer, MoE after first_k_dense_replace every moe_layer_freq layers."""
    layers = c["num_hidden_layers"]
    has_experts = bool(c.get("n_routed_experts", 0))
    first, freq = c.get("first_k_dense_replace", 0), c.get("moe_layer_freq", 1)
    num_moe = sum(1 for i in range(layers) if has_experts and i >= first and i % freq == 0)
    groups = [*_embeddings(c), *_mla(c, layers)]
    if num_moe:
        groups += _moe(c, num_moe)
    if layers - num_moe:
        groups += _mlp("mlp", c["hidden_size"], c["intermediate_size"], layers - num_moe, layers - num_moe)
    mtp: list[WeightGroup] = []
    num_mtp = c.get("num_nextn_predict_layers", 0)
    if num_mtp:
        hidden = c["hidden_size"]
        mtp = [
            *_mla(c, num_mtp),
            *(
                _moe(c, num_mtp)
                if has_experts
                else _mlp("mlp", hidden, c["intermediate_size"], num_mtp, num_mtp)
            ),
            WeightGroup("eh_proj", (hidden, 2 * hidden), num_mtp, num_mtp, True),
            WeightGroup("enorm/hnorm/shared_head.norm", (hidden,), 3 * num_mtp, 3 * num_mtp, False),
        ]
    kv_values = (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * layers
    return ModelSize(c.model_type, tuple(groups), tuple(mtp), kv_values, **_shape(c, layers, 0))


_COUNTERS: dict[str, Callable[[_Config], ModelSize]] = {
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "llama": _dense,
    "mistral": _dense,
    "qwen2": _dense,
}
"""model_type -> the function that lists its weights."""
