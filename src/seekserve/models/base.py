"""The contract between the engine and a model family, and the shared weight-loading logic."""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from seekserve.errors import ModelLoadError
from seekserve.layers.attention import AttentionMetadata
from seekserve.layers.fp8_checkpoint import Fp8BlockTensor, as_dense
from seekserve.layers.modules import Embedding, Linear, PartLoader, RMSNorm, RotaryEmbedding

__all__ = ["CausalLM", "DecoderLM", "DecoderLayer", "DecoderStack", "KVCacheSpec", "LayerCache"]

LayerCache = tuple[torch.Tensor, ...]
"""One layer's cache tensors, each [num_slots, *per_token_shape] (e.g. K and V)."""


@dataclass(frozen=True)
class KVCacheSpec:
    """What one token costs in the KV cache: per layer, one tensor of each shape in `shapes`."""

    num_layers: int
    shapes: tuple[tuple[int, ...], ...]
    """Per-token shape of each cache tensor of a layer, e.g. ((kv_heads, head_dim),) * 2 for K and V."""

    def bytes_per_token(self, dtype: torch.dtype) -> int:
        per_layer = sum(int(torch.Size(s).numel()) for s in self.shapes)
        return self.num_layers * per_layer * dtype.itemsize

    def allocate(self, num_slots: int, dtype: torch.dtype, device: torch.device) -> list[LayerCache]:
        """One contiguous tensor per shape, viewed per layer. Left uninitialised: a slot is only
        read after the step that wrote it, so pages are touched only as the cache fills."""
        stacks = [
            torch.empty(self.num_layers, num_slots, *s, dtype=dtype, device=device) for s in self.shapes
        ]
        return [tuple(stack[i] for stack in stacks) for i in range(self.num_layers)]


class CausalLM(nn.Module, abc.ABC):
    """A decoder-only language model the engine can run.

    `forward` takes one step's flattened tokens (decodes first, then prefill chunks, as the
    scheduler orders them), writes their K/V into `kv_caches` at `meta.slot_mapping`, and returns
    the final hidden states [num_tokens, hidden]. `compute_logits` maps the rows the engine
    samples from to logits [num_rows, vocab], in the model's dtype or float32 (the sampler converts
    what it needs; greedy argmax needs nothing). Nothing here may block on I/O.
    """

    stacked_params: ClassVar[dict[str, tuple[str, int]]] = {}
    """Checkpoint module name -> (fused module name, part index), e.g. q_proj -> (qkv_proj, 0)."""
    ignored_weights: ClassVar[tuple[str, ...]] = (r"rotary_emb\.inv_freq$",)
    """Regexes of checkpoint tensor names that are not weights of this implementation."""

    def __init__(self, config: Any, dtype: torch.dtype, max_positions: int):
        super().__init__()
        self.config = config
        self.dtype = dtype
        self.max_positions = max_positions

    @abc.abstractmethod
    def kv_cache_spec(self) -> KVCacheSpec: ...

    @abc.abstractmethod
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: list[LayerCache],
        meta: AttentionMetadata,
    ) -> torch.Tensor: ...

    @abc.abstractmethod
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor: ...

    def logits_head(self) -> nn.Module | None:
        """The module whose output `compute_logits` returns as it is, or None when it transforms it."""
        return None

    def plain_lm_head(self) -> torch.Tensor | None:
        """The weight W [vocab, hidden] when `compute_logits(h)` is exactly h W^T (no bias, no
        quantization, no transform after the matmul) and W is a plain tensor; else None."""
        return None

    def tied_params(self) -> dict[str, str]:
        """Parameter name -> the parameter it shares storage with (not loaded on its own)."""
        return {}

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor | Fp8BlockTensor]]) -> None:
        """Fill every parameter from (checkpoint name, tensor) pairs; a missing one is an error."""
        expected = self.checkpoint_parts()
        parts: dict[str, set[int]] = {}
        ignored = [re.compile(p) for p in self.ignored_weights]
        for name, tensor in weights:
            if not any(p.search(name) for p in ignored):
                param_name, index = self._load_one(name, tensor)
                parts.setdefault(param_name, set()).add(index)
        loaded = {name for name, got in parts.items() if len(got) == expected.get(name)}
        missing = sorted(set(expected) - loaded - set(self.tied_params()))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ModelLoadError(f"the checkpoint lacks weights for {shown}")

    def checkpoint_parts(self) -> dict[str, int]:
        """Checkpoint parameter name -> number of checkpoint tensors that fill it.

        A module with `checkpoint_params()` (fused and stacked layers, and their quantized forms) names
        its own; any other module's parameters take one tensor each.
        """
        expected: dict[str, int] = {}
        owned: list[str] = []
        for module_name, module in self.named_modules():
            if any(module_name.startswith(o + ".") for o in owned):
                continue
            prefix = f"{module_name}." if module_name else ""
            declared = getattr(module, "checkpoint_params", None)
            if declared is not None:
                owned.append(module_name)
                expected.update({prefix + k: n for k, n in declared().items()})
            else:
                expected.update({prefix + k: 1 for k, _ in module.named_parameters(recurse=False)})
        return expected

    def _load_one(self, name: str, tensor: torch.Tensor | Fp8BlockTensor) -> tuple[str, int]:
        """Copy one checkpoint tensor into its parameter; return the parameter's name and part."""
        module_name, _, kind = name.rpartition(".")
        parent, _, leaf = module_name.rpartition(".")
        index = 0
        if leaf in self.stacked_params:
            fused, index = self.stacked_params[leaf]
            module_name = f"{parent}.{fused}" if parent else fused
        target = _submodule(self, module_name)
        if isinstance(target, PartLoader):
            try:
                target.load_part(index, tensor, is_bias=kind == "bias")
            except ValueError as e:
                raise ModelLoadError(f"checkpoint tensor {name}: {e}") from None
            return f"{module_name}.{kind}", index
        assert index == 0, f"{module_name} is not a fused linear layer"
        param = None if target is None else target._parameters.get(kind)
        if param is None:
            raise ModelLoadError(f"the checkpoint has a tensor {name} that this model does not use")
        if param.shape != tensor.shape:
            raise ModelLoadError(
                f"checkpoint tensor {name} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(param.shape)}: the checkpoint does not match its config.json"
            )
        param.data.copy_(as_dense(tensor, param.dtype))
        return name, 0


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


class DecoderLayer(nn.Module):
    """Pre-norm decoder layer: h + attn(norm(h)), then + mlp(norm(.)), with transformers' module names.

    `self_attn` is called as self_attn(h, cos, sin, cache, meta); `mlp` as mlp(h). The residual
    add is fused into the next norm (RMSNorm.add_forward), so the layer returns (h, residual).
    """

    def __init__(
        self, self_attn: nn.Module, mlp: nn.Module, hidden_size: int, eps: float, dtype: torch.dtype
    ):
        super().__init__()
        self.self_attn = self_attn
        self.mlp = mlp
        self.input_layernorm = RMSNorm(hidden_size, eps, dtype)
        self.post_attention_layernorm = RMSNorm(hidden_size, eps, dtype)

    def forward(
        self,
        h: torch.Tensor,
        residual: torch.Tensor | None,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: LayerCache,
        meta: AttentionMetadata,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, residual = self.input_layernorm.add_forward(h, residual)
        h = self.self_attn(h, cos, sin, cache, meta)
        h, residual = self.post_attention_layernorm.add_forward(h, residual)
        return self.mlp(h), residual


class DecoderStack(nn.Module):
    """embed_tokens -> layers -> norm, with transformers' module names (`model.*` in checkpoints).

    Each layer is called as layer(h, residual, cos, sin, cache, meta) -> (h, residual), adding the
    residual inside its first norm, so the final norm adds the last one.
    """

    def __init__(self, config: Any, layers: Iterable[nn.Module], dtype: torch.dtype):
        super().__init__()
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, dtype)
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)


class DecoderLM(CausalLM):
    """A CausalLM made of a `DecoderStack` (`model`), an LM head and one rotary table for all layers.

    Subclasses set `model` and `rotary` in their constructor and call `init_lm_head()`.
    """

    model: DecoderStack
    rotary: RotaryEmbedding

    def init_lm_head(self) -> None:
        config = self.config
        self.lm_head = Linear(config.hidden_size, [config.vocab_size], bias=False, dtype=self.dtype)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def tied_params(self) -> dict[str, str]:
        if self.config.tie_word_embeddings:
            return {"lm_head.weight": "model.embed_tokens.weight"}
        return {}

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: list[LayerCache],
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        h = self.model.embed_tokens(input_ids)
        residual = None
        if meta.layer_stack is not None:
            h, residual = meta.layer_stack.run(h, positions, meta)
        else:
            cos, sin = self.rotary.lookup(positions, h.dtype)
            for layer, cache in zip(self.model.layers, kv_caches, strict=True):
                h, residual = layer(h, residual, cos, sin, cache, meta)
        h, _ = self.model.norm.add_forward(h, residual)
        return h

    def layer_rotaries(self) -> list[RotaryEmbedding]:
        """The rotary tables each decoder layer rotates with (one for all here)."""
        return [self.rotary] * len(self.model.layers)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    def logits_head(self) -> nn.Module | None:
        return self.lm_head

    def plain_lm_head(self) -> torch.Tensor | None:
        head = self.logits_head()
        if type(head) is not Linear or head.bias is not None:
            return None  # quantized or biased
        if self.config.tie_word_embeddings:
            return self.model.embed_tokens.weight  # plain even when the head's copy is prepacked
        return head.weight if head.weight.layout == torch.strided else None
