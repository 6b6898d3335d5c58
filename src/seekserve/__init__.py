"""seekserve: run DeepSeek models smoothly, from a laptop CPU to a GPU cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LLM", "SamplingParams", "__version__"]

if TYPE_CHECKING:
    from seekserve.engine.sampling_params import SamplingParams
    from seekserve.llm import LLM


def __getattr__(name: str) -> Any:
    # Lazy, so `import seekserve` (and CLI commands that need no model) stay fast.
    if name == "LLM":
        from seekserve.llm import LLM

        return LLM
    if name == "SamplingParams":
        from seekserve.engine.sampling_params import SamplingParams

        return SamplingParams
    raise AttributeError(f"module 'seekserve' has no attribute {name!r}")
