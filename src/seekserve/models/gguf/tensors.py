"""GGUF tensors -> checkpoint tensors with transformers' names and layout, per architecture.

The models load checkpoints by the names transformers uses in safetensors files, so a GGUF file
is turned into the same (name, tensor) stream. What llama.cpp changed on conversion is undone here:

- llama: q and k rows are permuted so each head's two rotary halves interleave; un-permute them.
- gemma3: RMS norm weights are stored as (1 + w); subtract the 1 again (in float32).
- deepseek2: experts are stacked into one [num_experts, ...] tensor per projection; split them
  (one expert at a time, so a 256-expert layer is never dequantized whole). Files converted for
  MLA absorption split kv_b into per-head k_b (transposed) and v_b; join them back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch

from seekserve.errors import ModelLoadError

__all__ = ["TENSOR_MAPS", "LazyTensor", "TensorMap"]

_GLOBAL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
_DENSE = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


class LazyTensor:
    """A GGUF tensor not read yet: `load()` dequantizes it whole, `load_slice(i)` its i-th row of dim 0."""

    def __init__(self, shape: tuple[int, ...], read: Callable[[int | None], torch.Tensor]):
        self.shape = shape
        self._read = read

    def load(self) -> torch.Tensor:
        return self._read(None)

    def load_slice(self, index: int) -> torch.Tensor:
        return self._read(index)


class TensorMap:
    """Names and layouts of one GGUF architecture; `convert` gives the checkpoint tensors of a GGUF tensor."""

    block: ClassVar[dict[str, str]] = {**_DENSE, "ffn_norm": "post_attention_layernorm"}
    """GGUF block tensor -> module path under model.layers.N."""
    skipped: ClassVar[frozenset[str]] = frozenset()
    """GGUF tensors without a checkpoint counterpart (their content went into the config)."""
    skipped_prefixes: ClassVar[tuple[str, ...]] = ()
    """Prefixes of GGUF tensors that belong to parts seekserve does not run (a vision tower)."""

    def __init__(self, config: Any, tensor_names: set[str]):
        self.config = config
        self.tensor_names = tensor_names

    def convert(self, name: str, tensor: LazyTensor) -> Iterator[tuple[str, torch.Tensor]]:
        """(checkpoint name, float32 tensor) pairs for one GGUF tensor."""
        if name not in self.skipped and not name.startswith(self.skipped_prefixes):
            yield self.checkpoint_name(name), self.transform(name, tensor.load())

    def finish(self) -> None:
        """Called after the last tensor; raises if a tensor waits for a partner that never came."""

    def checkpoint_name(self, name: str) -> str:
        base, _, kind = name.rpartition(".")
        if base in _GLOBAL:
            return f"{_GLOBAL[base]}.{kind}"
        match = _BLOCK.fullmatch(name)
        if match and match[2] in self.block:
            return f"model.layers.{match[1]}.{self.block[match[2]]}.{kind}"
        family = type(self).__name__.removesuffix("Tensors")
        raise ModelLoadError(
            f"GGUF tensor {name} has no counterpart in seekserve's {family} model; the file may be a "
            f"variant seekserve does not implement"
        )

    def transform(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        return tensor


class LlamaTensors(TensorMap):
    skipped = frozenset({"rope_freqs.weight"})

    def transform(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        if ".attn_q." in name:
            return _unpermute(name, tensor, self.config.num_attention_heads)
        if ".attn_k." in name:
            return _unpermute(name, tensor, self.config.num_key_value_heads)
        return tensor


def _unpermute(name: str, w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's row interleave of a q or k weight (or bias): per head, rows stored as
    [d/2, 2] (pairs) go back to [2, d/2] (the two rotary halves)."""
    if w.shape[0] % (2 * heads):
        raise ModelLoadError(
            f"tensor {name} has {w.shape[0]} rows, which the model's {heads} heads cannot share in rotary "
            f"pairs: the file's tensor table does not match its metadata"
        )
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


class Qwen2Tensors(TensorMap):
    pass


class Gemma3Tensors(TensorMap):
    block: ClassVar[dict[str, str]] = {
        **_DENSE,
        "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm",
        "post_attention_norm": "post_attention_layernorm",
        "ffn_norm": "pre_feedforward_layernorm",
        "post_ffw_norm": "post_feedforward_layernorm",
    }
    # Multimodal Gemma 3 files (as Ollama packs them) carry the vision encoder and its projector.
    skipped_prefixes = ("v.", "mm.")

    def transform(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        return tensor - 1.0 if name.endswith("norm.weight") else tensor


class Deepseek2Tensors(TensorMap):
    block: ClassVar[dict[str, str]] = {
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_q_a": "self_attn.q_a_proj",
        "attn_q_a_norm": "self_attn.q_a_layernorm",
        "attn_q_b": "self_attn.q_b_proj",
        "attn_kv_a_mqa": "self_attn.kv_a_proj_with_mqa",
        "attn_kv_a_norm": "self_attn.kv_a_layernorm",
        "attn_kv_b": "self_attn.kv_b_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
        "ffn_gate_inp": "mlp.gate",
        "ffn_gate_shexp": "mlp.shared_experts.gate_proj",
        "ffn_up_shexp": "mlp.shared_experts.up_proj",
        "ffn_down_shexp": "mlp.shared_experts.down_proj",
    }
    _EXPERTS: ClassVar[dict[str, str]] = {
        "ffn_gate_exps": "gate_proj",
        "ffn_up_exps": "up_proj",
        "ffn_down_exps": "down_proj",
    }

    def __init__(self, config: Any, tensor_names: set[str]):
        super().__init__(config, tensor_names)
        self._kv_b_parts: dict[str, dict[str, torch.Tensor]] = {}

    def convert(self, name: str, tensor: LazyTensor) -> Iterator[tuple[str, torch.Tensor]]:
        match = _BLOCK.fullmatch(name)
        part = match[2] if match else ""
        prefix = f"model.layers.{match[1]}" if match else ""
        if part in self._EXPERTS:
            proj = self._EXPERTS[part]
            for e in range(tensor.shape[0]):
                yield f"{prefix}.mlp.experts.{e}.{proj}.weight", tensor.load_slice(e)
        elif part == "exp_probs_b":
            yield f"{prefix}.mlp.gate.e_score_correction_bias", tensor.load()
        elif part in ("attn_k_b", "attn_v_b"):
            if name.replace(part, "attn_kv_b") not in self.tensor_names:  # else kv_b itself is in the file
                yield from self._join_kv_b(prefix, part, tensor.load())
        else:
            yield from super().convert(name, tensor)

    def _join_kv_b(self, prefix: str, part: str, tensor: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        parts = self._kv_b_parts.setdefault(prefix, {})
        parts[part] = tensor
        if len(parts) == 2:
            del self._kv_b_parts[prefix]
            k_b = parts["attn_k_b"].transpose(1, 2)  # [heads, rank, nope] -> [heads, nope, rank]
            v_b = parts["attn_v_b"]  # [heads, v_head_dim, rank]
            kv_b = torch.cat((k_b, v_b), dim=1)  # [heads, nope + v_head_dim, rank]
            yield f"{prefix}.self_attn.kv_b_proj.weight", kv_b.reshape(-1, kv_b.shape[-1])

    def finish(self) -> None:
        if self._kv_b_parts:
            layer = next(iter(self._kv_b_parts))
            raise ModelLoadError(f"the GGUF file has only one of attn_k_b / attn_v_b for {layer}")


TENSOR_MAPS: dict[str, type[TensorMap]] = {
    "llama": LlamaTensors,
    "qwen2": Qwen2Tensors,
    "gemma3": Gemma3Tensors,
    "deepseek2": Deepseek2Tensors,
}
"""GGUF `general.architecture` -> its tensor map."""
