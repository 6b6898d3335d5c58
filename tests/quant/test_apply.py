"""Quantization while loading, on tiny random models of every family: each layer within its bound,
untouched weights untouched, tied heads, native FP8 checkpoints, agreement with the float model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from conftest import FAMILIES, MODES
from factories import make_fp8_checkpoint, prefill_logits, random_prompts, relative_error
from seekserve.engine.config import ModelConfig
from seekserve.engine.model_loader import LoadedModel, load_model
from seekserve.layers.modules import Embedding, Linear
from seekserve.models.moe import FusedExperts
from seekserve.quant.apply import param_bytes
from seekserve.quant.experts import QuantizedExperts
from seekserve.quant.int8 import Int8Weight
from seekserve.quant.linear import QuantizedEmbedding, QuantizedLinear

CPU = torch.device("cpu")
BOUND = {"int8": 0.015, "fp8": 0.035, "int4": 0.12}
"""Relative error of a dequantized Gaussian weight matrix (see test_int8/test_int4/test_fp8)."""
AGREEMENT = {"int8": 0.95, "fp8": 0.85, "int4": 0.75}
"""Share of 300 positions whose top-1 token matches the float model's, for models initialised like
released ones; measured 0.98-0.99 (int8), 0.92-0.96 (fp8), 0.83-0.93 (int4) across the families."""


def load(model_dir: Path, **options: object) -> LoadedModel:
    return load_model(ModelConfig(model=str(model_dir), dtype="float32", **options), CPU)  # type: ignore[arg-type]


def head_bound(mode: str) -> float:
    return BOUND["int8" if mode == "int4" else mode]  # int4 mode keeps an int8 head


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", MODES)
def test_every_linear_layer_and_expert_stack_is_quantized_within_its_bound(
    family_dirs: dict[str, Path], family: str, mode: str
) -> None:
    dense, quant = load(family_dirs[family]), load(family_dirs[family], quantization=mode)
    float_modules = dict(dense.model.named_modules())
    linears = {n for n, m in float_modules.items() if isinstance(m, Linear)}
    quantized: set[str] = set()
    for name, module in quant.model.named_modules():
        if isinstance(module, QuantizedLinear):
            bound = head_bound(mode) if name == "lm_head" else BOUND[mode]
            assert relative_error(module.dense_weight(), float_modules[name].weight) < bound, name
            quantized.add(name)
        elif isinstance(module, QuantizedExperts):
            ref = float_modules[name]
            assert isinstance(ref, FusedExperts)
            for e in range(module.num_experts):
                assert relative_error(module.gate_up_proj.dequantize((e,)), ref.gate_up_proj[e]) < BOUND[mode]
                assert relative_error(module.down_proj.dequantize((e,)), ref.down_proj[e]) < BOUND[mode]
            quantized.add(name)
    experts = {n for n, m in float_modules.items() if isinstance(m, FusedExperts)}
    assert quantized == linears | experts, "every linear layer (the head included) and expert stack"
    float_params = dict(dense.model.named_parameters())
    for name, p in quant.model.named_parameters():
        if name in float_params:  # embeddings, norms, routers, biases
            assert torch.equal(p, float_params[name]), f"{name} must load unchanged"
    report = quant.quantization
    assert report is not None and report.num_layers == len(quantized) and report.mode == mode
    assert report.lm_head == ("int8" if mode == "int4" else mode)
    assert report.dense_weight_bytes == dense.weight_bytes
    assert report.weight_bytes == quant.weight_bytes
    if mode == "fp8" and not report.fp8_kept:  # CPU with memory to spare: dequantized at load
        assert quant.weight_bytes == dense.weight_bytes
    else:  # of float32: int8 a quarter, fp8 a quarter, int4 an eighth, plus scales (K = 24..128)
        modules = dict(quant.model.named_modules())
        held = sum(param_bytes(modules[n]) for n in quantized)
        assert held < 0.32 * sum(param_bytes(float_modules[n]) for n in quantized)


@pytest.mark.parametrize("mode", MODES)
def test_a_tied_head_is_quantized_once_and_serves_the_embedding(qwen2_dir: Path, mode: str) -> None:
    dense, quant = load(qwen2_dir), load(qwen2_dir, quantization=mode)
    head, embedding = quant.model.lm_head, quant.model.model.embed_tokens
    assert isinstance(head, QuantizedLinear) and isinstance(embedding, QuantizedEmbedding)
    assert embedding.qweight is head.qweight, "one quantized table for both"
    if mode == "int4":
        assert isinstance(head.qweight, Int8Weight), "int4 mode keeps an int8 head"
    table = dense.model.model.embed_tokens.weight
    ids = torch.tensor([3, 200, 3, 383])
    assert relative_error(embedding(ids), table[ids]) < head_bound(mode)
    if mode != "fp8":  # fp8 on CPU holds the FP8-rounded table in float32 (dequantized at load)
        floats = [p for p in quant.model.parameters() if p.shape == table.shape and p.is_floating_point()]
        assert not floats, "the float embedding is gone"


def test_the_head_can_stay_unquantized(qwen2_dir: Path, llama_dir: Path) -> None:
    tied = load(qwen2_dir, quantization="int8", quantize_lm_head=False).model
    assert isinstance(tied.lm_head, Linear) and isinstance(tied.model.embed_tokens, Embedding)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    untied = load(llama_dir, quantization="int4", quantize_lm_head=False)
    assert isinstance(untied.model.lm_head, Linear) and untied.quantization is not None
    assert untied.quantization.lm_head == "none"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", MODES)
def test_top1_tokens_agree_with_the_float_model(
    realistic_dirs: Callable[[str], Path], family: str, mode: str
) -> None:
    model_dir = realistic_dirs(family)
    ids = random_prompts(1, lengths=[300], seed=2)[0]
    want = prefill_logits(model_dir, ids).argmax(-1)
    got = prefill_logits(model_dir, ids, quantization=mode).argmax(-1)
    assert (got == want).float().mean() >= AGREEMENT[mode]


@pytest.fixture(scope="module")
def fp8_checkpoint(
    deepseek_v3_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, torch.Tensor]]:
    """The tiny DeepSeek-V3 as an FP8 release with 16×16 blocks, and its dequantized tensors."""
    fp8_dir = tmp_path_factory.mktemp("fp8-release")
    return fp8_dir, make_fp8_checkpoint(deepseek_v3_dir, fp8_dir, 16)


def test_native_fp8_checkpoints_are_kept_as_they_are(
    fp8_checkpoint: tuple[Path, dict[str, torch.Tensor]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With quantization="fp8" and the release's block size, the FP8 bytes and scales go into the
    layers unchanged: held as FP8 where it pays (forced here), or dequantized exactly once."""
    fp8_dir, dequantized = fp8_checkpoint
    from safetensors.torch import load_file

    release = load_file(str(fp8_dir / "model-00001-of-00002.safetensors"))
    scales = load_file(str(fp8_dir / "model-00002-of-00002.safetensors"))
    name = "model.layers.1.self_attn.o_proj"
    real_quant_config = ModelConfig.quant_config
    monkeypatch.setattr(
        ModelConfig,
        "quant_config",
        lambda self: dataclasses.replace(real_quant_config(self), fp8_storage="fp8"),
    )
    kept = load(fp8_dir, quantization="fp8", quantization_group_size=16).model
    o_proj = kept.get_submodule(name).qweight
    assert torch.equal(o_proj.values.view(torch.uint8), release[f"{name}.weight"].view(torch.uint8))
    assert torch.equal(o_proj.scale_inv, scales[f"{name}.weight_scale_inv"])
    monkeypatch.undo()
    auto = load(fp8_dir, quantization="fp8", quantization_group_size=16).model
    assert torch.equal(auto.get_submodule(name).dense_weight(), dequantized[f"{name}.weight"])


def test_fp8_checkpoints_quantize_to_the_other_modes(
    fp8_checkpoint: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    fp8_dir, dequantized = fp8_checkpoint
    model = load(fp8_dir, quantization="int8").model
    name = "model.layers.0.mlp.down_proj"
    assert (
        relative_error(model.get_submodule(name).dense_weight(), dequantized[f"{name}.weight"])
        < BOUND["int8"]
    )
    experts = model.get_submodule("model.layers.1.mlp.experts")
    gate = dequantized["model.layers.1.mlp.experts.3.gate_proj.weight"]
    assert relative_error(experts.gate_up_proj.dequantize((3,))[: gate.shape[0]], gate) < BOUND["int8"]
