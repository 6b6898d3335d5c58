"""Models by name (built-in configs), by config.json and by folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seekserve.errors import ConfigError
from seekserve.plan.catalog import KNOWN_MODELS, load_model

# Published parameter counts (docs/deepseek.md's table, from the released configs).
PUBLISHED = {
    "deepseek-ai/DeepSeek-V3": 671.03e9,
    "deepseek-ai/DeepSeek-R1": 671.03e9,
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": 1.78e9,
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": 7.62e9,
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": 14.77e9,
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": 32.76e9,
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": 8.03e9,
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": 70.55e9,
}


@pytest.mark.parametrize("hub_id", sorted(KNOWN_MODELS))
def test_every_known_model_loads_with_its_published_size(hub_id: str) -> None:
    model = load_model(hub_id)
    assert model.name == hub_id
    base = hub_id.removesuffix("-0324").removesuffix("-0528")
    assert model.size.num_params == pytest.approx(PUBLISHED[base], rel=0.002)  # published to 2 decimals
    assert model.native_dtype == ("fp8" if "Distill" not in hub_id else "bf16")
    assert model.max_position_embeddings == (163840 if "Distill" not in hub_id else 131072)
    assert model.is_mla == model.is_moe == ("Distill" not in hub_id)


@pytest.mark.parametrize(
    "spec", ["DeepSeek-R1-Distill-Qwen-7B", "deepseek-r1-distill-qwen-7b", "r1-distill-qwen-7b"]
)
def test_short_names(spec: str) -> None:
    assert load_model(spec).name == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def test_a_config_file_or_folder(tmp_path: Path) -> None:
    config = load_model("DeepSeek-R1-Distill-Llama-8B").config
    (tmp_path / "config.json").write_text(json.dumps(config))
    for spec in (str(tmp_path), str(tmp_path / "config.json")):
        model = load_model(spec)
        assert model.name == spec
        assert model.size.num_params == 8_030_261_248


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"'gpt-5' is neither a config\.json.*DeepSeek-V3, DeepSeek-V3-0324"
    ):
        load_model("gpt-5")
