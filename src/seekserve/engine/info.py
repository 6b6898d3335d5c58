"""`EngineInfo`: what a loaded engine serves and how much it holds, fixed once the model has loaded.

The server, the metrics and the CLI read the engine's model and capacity from here
(`AsyncEngine.info`), never from the engine's own attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seekserve.quant.apply import QuantReport

__all__ = ["EngineInfo"]


@dataclass(frozen=True)
class EngineInfo:
    """The model an engine runs and the capacity it was given."""

    model_name: str
    """The model's name as the user gave it (hub id, directory or file), or the default model's name."""
    model_path: Path
    """The model directory or GGUF file the weights were read from."""
    architectures: tuple[str, ...]
    """The checkpoint's `architectures` (e.g. ("LlamaForCausalLM",)); empty when it names none."""
    dtype: str
    """Compute dtype of the weights and the KV cache, as torch names it without the prefix ("bfloat16")."""
    device: str
    """Where the model runs ("cpu", "cuda:0")."""
    cpu_kernels: str | None
    """The CPU kernel set in use, e.g. "avx512 (VNNI, VBMI int4)", "portable (no AVX-512)" or
    "off (why)" (`layers.cpu_kernels.kernel_status`); None when the model runs on a GPU."""
    max_model_len: int
    """Most tokens one sequence may hold, prompt and completion together."""
    uses_default_chat_template: bool
    """True when the model brings no chat template and seekserve's default one is used."""
    quantization: QuantReport | None
    """What weight quantization did, or None for an unquantized model."""
    weight_bytes: int
    """Bytes of weights held, copies kept for speed included."""
    packed_copy_bytes: int
    """Of `weight_bytes`, the copies kept for speed (packed LM head, greedy head)."""
    kv_cache_tokens: int
    """Tokens the KV cache holds across all sequences (`num_kv_blocks * block_size`)."""
    num_kv_blocks: int
    """KV cache blocks."""
    block_size: int
    """Tokens per KV cache block."""
    kv_bytes_per_token: int
    """KV cache bytes one token takes, all layers together."""
    max_num_seqs: int
    """Most sequences running at once."""
    max_num_batched_tokens: int
    """Most tokens one step computes."""
    max_queue_len: int | None
    """Most requests waiting before new ones are refused (None: no limit)."""

    @property
    def architecture(self) -> str:
        """The architectures joined by commas, "?" when the checkpoint names none."""
        return ",".join(self.architectures) or "?"
