"""FP8 block-quantized checkpoints (DeepSeek-V3's release format) dequantized while loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from factories import (
    FP8_MAX,
    fp8_block_dequantize,
    fp8_block_quantize,
    greedy,
    hf_greedy,
    hf_logits,
    make_fp8_checkpoint,
    prefill_logits,
    random_prompts,
)
from seekserve import LLM
from seekserve.engine.config import ModelConfig
from seekserve.engine.model_loader import load_model
from seekserve.errors import ModelLoadError, UnsupportedModelError
from seekserve.layers.fp8_checkpoint import Fp8BlockFormat, dequantize_fp8, fp8_block_format

BLOCK = 16
PROMPT = random_prompts(1, lengths=[30], seed=3)[0]


def quantize(w: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    return fp8_block_quantize(w, block)


def reference_dequantize(q: torch.Tensor, scale: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    return fp8_block_dequantize(q, scale, block)


@pytest.fixture(scope="module")
def fp8_dirs(deepseek_v3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(FP8 checkpoint of the tiny V3, the same model with the dequantized weights in float32)."""
    fp8_dir, dequantized_dir = tmp_path_factory.mktemp("fp8"), tmp_path_factory.mktemp("dequantized")
    shutil.copytree(deepseek_v3_dir, dequantized_dir, dirs_exist_ok=True)
    dequantized = make_fp8_checkpoint(deepseek_v3_dir, fp8_dir, BLOCK)
    save_file(dequantized, str(dequantized_dir / "model.safetensors"), metadata={"format": "pt"})
    return fp8_dir, dequantized_dir


def test_fp8_checkpoint_logits_equal_the_dequantized_reference(fp8_dirs: tuple[Path, Path]) -> None:
    fp8_dir, dequantized_dir = fp8_dirs
    torch.testing.assert_close(
        prefill_logits(fp8_dir, PROMPT), hf_logits(dequantized_dir, PROMPT), rtol=0, atol=1e-4
    )


def test_loaded_weights_are_within_fp8_error_of_the_original(
    fp8_dirs: tuple[Path, Path], deepseek_v3_dir: Path
) -> None:
    # Logits of a random MoE are no measure here (one flipped expert choice moves them a lot), so
    # check the weights the engine ended up with: e4m3 rounds to 3 mantissa bits, a relative error
    # of at most 2^-4, plus at most half the smallest subnormal (2^-10 of a block's scale) near zero.
    cpu = torch.device("cpu")
    got = load_model(ModelConfig(model=str(fp8_dirs[0]), dtype="float32"), cpu).model.state_dict()
    original = load_model(ModelConfig(model=str(deepseek_v3_dir), dtype="float32"), cpu).model.state_dict()
    num_changed = 0
    for name, w in original.items():
        if name.endswith(("_proj.weight", "experts.gate_up_proj", "experts.down_proj")):
            bound = w.abs() * 2**-4 + w.abs().amax() / FP8_MAX * 2**-10
            assert ((got[name] - w).abs() <= bound).all(), name
            num_changed += int(not torch.equal(got[name], w))
        else:
            assert torch.equal(got[name], w), f"{name} is not quantized and must load exactly"
    assert num_changed > 20, "the linear weights must have gone through FP8"


def test_fp8_checkpoint_generates_like_transformers_on_the_dequantized_weights(
    fp8_dirs: tuple[Path, Path],
) -> None:
    fp8_dir, dequantized_dir = fp8_dirs
    prompts = random_prompts(3, lengths=[4, 21, 12], seed=5)
    llm = LLM(str(fp8_dir), dtype="float32", num_kv_blocks=32, block_size=4, max_model_len=64)
    outs = llm.generate(prompts, greedy(10))
    assert [o.outputs[0].token_ids for o in outs] == hf_greedy(dequantized_dir, prompts, 10)


@pytest.mark.parametrize("shape", [(64, 48), (40, 64), (37, 29), (5, 3)])
def test_dequantize_matches_the_blockwise_definition(shape: tuple[int, int]) -> None:
    w = torch.randn(shape, generator=torch.Generator().manual_seed(shape[0]))
    q, scale = quantize(w)
    got = dequantize_fp8(q, scale, Fp8BlockFormat((BLOCK, BLOCK)), torch.float32)
    assert got.shape == w.shape and got.is_contiguous()
    torch.testing.assert_close(got, reference_dequantize(q, scale), rtol=0, atol=0)


def test_dequantize_with_rectangular_blocks_and_one_scale_per_tensor() -> None:
    w = torch.randn(20, 12)
    q = (w / 0.01).to(torch.float8_e4m3fn)
    scale = torch.tensor([[0.01, 0.02], [0.03, 0.04], [0.05, 0.06]])
    got = dequantize_fp8(q, scale, Fp8BlockFormat((8, 6)), torch.float32)
    torch.testing.assert_close(got[8:16, 6:], q[8:16, 6:].float() * 0.04)
    torch.testing.assert_close(got[16:, :6], q[16:, :6].float() * 0.05)
    per_tensor = dequantize_fp8(q, torch.tensor(0.5), Fp8BlockFormat(None), torch.bfloat16)
    assert per_tensor.dtype == torch.bfloat16
    torch.testing.assert_close(per_tensor, (q.float() * 0.5).to(torch.bfloat16))


def test_scales_of_the_wrong_shape_are_rejected() -> None:
    q, _ = quantize(torch.randn(40, 64))
    with pytest.raises(ValueError, match=r"needs scales of shape \(3, 4\), the checkpoint has \(2, 4\)"):
        dequantize_fp8(q, torch.ones(2, 4), Fp8BlockFormat((BLOCK, BLOCK)), torch.float32)


def test_quantization_config_is_read_or_refused() -> None:
    class Config:
        quantization_config: dict[str, object] | None = None

    config = Config()
    assert fp8_block_format(config) is None
    config.quantization_config = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    assert fp8_block_format(config) == Fp8BlockFormat((128, 128))
    config.quantization_config = {"quant_method": "fp8"}
    assert fp8_block_format(config) == Fp8BlockFormat(None)
    config.quantization_config = {"quant_method": "awq"}
    with pytest.raises(UnsupportedModelError, match="quant_method='awq'"):
        fp8_block_format(config)
    config.quantization_config = {"quant_method": "fp8", "weight_block_size": [0, 128]}
    with pytest.raises(ModelLoadError, match="weight_block_size"):
        fp8_block_format(config)


def test_missing_scale_is_a_load_error(fp8_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fp8_dirs[0], broken)
    shard = broken / "model-00002-of-00002.safetensors"
    scales = load_file(str(shard))
    del scales["model.layers.0.self_attn.o_proj.weight_scale_inv"]
    save_file(scales, str(shard))
    with pytest.raises(
        ModelLoadError, match=r"o_proj\.weight is torch\.float8_e4m3fn but .* no .*_scale_inv"
    ):
        prefill_logits(broken, PROMPT)


def test_fp8_weights_without_quantization_config_are_refused(
    fp8_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "undeclared"
    shutil.copytree(fp8_dirs[0], broken)
    config = json.loads((broken / "config.json").read_text())
    del config["quantization_config"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="declares no quantization_config"):
        prefill_logits(broken, PROMPT)
