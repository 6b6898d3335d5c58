"""The model a plan is for: a config.json path, a model folder, or a name the plan knows.

Known names come with a copy of their published config.json, trimmed to the architecture fields
(`plan/configs/*.json`, shipped in the wheel), so a plan needs neither the weights nor the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from seekserve.errors import ConfigError
from seekserve.models.sizing import ModelSize, WeightDType, model_size, read_config

__all__ = ["KNOWN_MODELS", "PlannedModel", "load_model"]

KNOWN_MODELS: dict[str, str] = {
    "deepseek-ai/DeepSeek-V3": "DeepSeek-V3",
    "deepseek-ai/DeepSeek-V3-0324": "DeepSeek-V3",
    "deepseek-ai/DeepSeek-R1": "DeepSeek-R1",
    "deepseek-ai/DeepSeek-R1-0528": "DeepSeek-R1",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": "DeepSeek-R1-Distill-Qwen-1.5B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": "DeepSeek-R1-Distill-Qwen-7B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": "DeepSeek-R1-Distill-Qwen-14B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": "DeepSeek-R1-Distill-Qwen-32B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": "DeepSeek-R1-Distill-Llama-8B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": "DeepSeek-R1-Distill-Llama-70B",
}
"""Hub id -> the built-in config file (without .json). The 0324 and 0528 releases share the
architecture of the first ones."""


@dataclass(frozen=True)
class PlannedModel:
    """A model as a plan sees it: its sizes and what the serving engines are told to load."""

    name: str
    """The hub id, or the path as given."""
    config: dict[str, Any]
    size: ModelSize

    @property
    def native_dtype(self) -> WeightDType:
        """fp8 for a checkpoint released in FP8 (DeepSeek-V3/R1), else bf16."""
        quant = self.config.get("quantization_config") or {}
        return "fp8" if isinstance(quant, dict) and quant.get("quant_method") == "fp8" else "bf16"

    @property
    def max_position_embeddings(self) -> int:
        value = self.config.get("max_position_embeddings")
        return value if isinstance(value, int) and value > 0 else 4096

    @property
    def is_mla(self) -> bool:
        """Multi-head latent attention: one latent row per token, not split by tensor parallelism."""
        return self.size.num_kv_heads == 0

    @property
    def is_moe(self) -> bool:
        return self.size.expert_weight_bytes() > 0


def _known(spec: str) -> str | None:
    """The built-in config for a hub id or its short name, case-insensitively."""
    wanted = spec.strip().lower()
    for hub_id in KNOWN_MODELS:
        short = hub_id.split("/")[1].lower()
        if wanted in (hub_id.lower(), short, short.removeprefix("deepseek-")):
            return hub_id
    return None


def load_model(spec: str) -> PlannedModel:
    """The model `spec` names: a config.json, a folder holding one, or a known name."""
    path = Path(spec).expanduser()
    if path.exists():
        config = read_config(path)
        return PlannedModel(spec, config, model_size(config))
    hub_id = _known(spec)
    if hub_id is None:
        known = ", ".join(k.split("/")[1] for k in KNOWN_MODELS)
        raise ConfigError(
            f"--model {spec!r} is neither a config.json, a folder holding one, nor a known name "
            f"({known}): give the path of the model's config.json"
        )
    text = resources.files("seekserve.plan").joinpath(f"configs/{KNOWN_MODELS[hub_id]}.json").read_text()
    config = json.loads(text)
    return PlannedModel(hub_id, config, model_size(config))
