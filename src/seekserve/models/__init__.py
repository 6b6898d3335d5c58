"""Model families and the registry that maps a checkpoint's architecture name to its class.

`CausalLM` and `KVCacheSpec` are imported on first use, so that what needs no torch (`sizing`, and
`seekserve plan` on top of it) imports none.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from seekserve.errors import UnsupportedModelError

if TYPE_CHECKING:
    from seekserve.models.base import CausalLM, KVCacheSpec

__all__ = ["ARCHITECTURES", "CausalLM", "KVCacheSpec", "model_class"]

ARCHITECTURES: dict[str, str] = {
    "DeepseekV2ForCausalLM": "seekserve.models.deepseek:DeepseekV2ForCausalLM",
    "DeepseekV3ForCausalLM": "seekserve.models.deepseek:DeepseekV3ForCausalLM",
    "Gemma3ForCausalLM": "seekserve.models.gemma3:Gemma3ForCausalLM",
    "LlamaForCausalLM": "seekserve.models.llama:LlamaForCausalLM",
    "MistralForCausalLM": "seekserve.models.llama:LlamaForCausalLM",
    "Qwen2ForCausalLM": "seekserve.models.llama:Qwen2ForCausalLM",
}
"""Architecture name (config.json `architectures[0]`) -> "module:Class" of its implementation."""


def model_class(architecture: str) -> type[CausalLM]:
    """The implementation of an architecture; an unknown one is an error listing the supported ones."""
    target = ARCHITECTURES.get(architecture)
    if target is None:
        raise UnsupportedModelError(
            f"architecture {architecture!r} is not supported; "
            f"seekserve runs {', '.join(sorted(ARCHITECTURES))}"
        )
    module, _, name = target.partition(":")
    cls: type[CausalLM] = getattr(importlib.import_module(module), name)
    return cls


def __getattr__(name: str) -> Any:
    if name in ("CausalLM", "KVCacheSpec"):
        from seekserve.models import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
