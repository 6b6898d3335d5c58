"""Fused int4 decode layers (engine/fused_decode.py) against the layer-by-layer path, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from factories import gemma3_config, llama_config, make_model_dir, qwen2_config, random_prompts
from seekserve.engine import fused_decode as fused_module
from seekserve.engine.llm_engine import LLMEngine
from seekserve.engine.sampling_params import SamplingParams
from seekserve.quant.int4 import vnni_kernels

pytestmark = pytest.mark.skipif(
    vnni_kernels() is None,
    reason="the int4 kernel needs a CPU with AVX-512 VNNI and VBMI (and a C++ compiler)",
)

CONFIGS = {"gemma3": gemma3_config, "llama": llama_config, "qwen2": qwen2_config}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: make_model_dir(tmp_path_factory.mktemp(name), make()) for name, make in CONFIGS.items()}


def engine(model_dir: Path, dtype: str, **options: object) -> LLMEngine:
    return LLMEngine.from_options(
        model=str(model_dir), dtype=dtype, quantization="int4", num_kv_blocks=64, block_size=4,
        max_model_len=128, **options,
    )  # fmt: skip


def decode_steps(eng: LLMEngine, prompts: list[list[int]], steps: int) -> list[torch.Tensor]:
    """Prefill the prompts, then the hidden states of `steps` decode steps, re-run on their inputs
    (the forward writes the same K/V to the same slots)."""
    for i, prompt in enumerate(prompts):
        eng.add_request(str(i), prompt, SamplingParams(temperature=0.0, max_tokens=64, ignore_eos=True))
    while (
        any(r.num_computed_tokens < r.num_prompt_tokens for r in eng.scheduler.running)
        or eng.scheduler.waiting
    ):
        eng.step()
    hidden = []
    for _ in range(steps):
        inputs = eng.runner.prepare(eng.scheduler.schedule())
        with torch.inference_mode():
            hidden.append(
                eng.model(inputs.input_ids, inputs.positions, eng.runner.kv_caches, inputs.meta).clone()
            )
        eng.step()
    return hidden


@pytest.mark.parametrize("family", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_decode_steps_equal_the_layer_by_layer_path(
    model_dirs: dict[str, Path], family: str, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = random_prompts(3, lengths=[5, 13, 9], seed=7)
    fused = engine(model_dirs[family], dtype)
    fused_hidden = decode_steps(fused, prompts, 12)
    plan = fused.runner.fused_decode
    assert plan is not None and plan.gemma == (family == "gemma3")

    monkeypatch.setattr(fused_module.FusedDecode, "build", classmethod(lambda cls, *a: None))
    plain_hidden = decode_steps(engine(model_dirs[family], dtype), prompts, 12)
    for a, b in zip(fused_hidden, plain_hidden, strict=True):
        assert a.shape == (3, fused.model.config.hidden_size)
        assert torch.equal(a, b)


def test_steps_with_a_prefill_or_too_many_rows_run_layer_by_layer(model_dirs: dict[str, Path]) -> None:
    eng = engine(model_dirs["gemma3"], "float32", max_quantized_kernel_rows=2)
    for i, prompt in enumerate(random_prompts(3, lengths=[5, 6, 7], seed=1)):
        eng.add_request(str(i), prompt, SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))
    inputs = eng.runner.prepare(eng.scheduler.schedule())  # the prefills
    assert inputs.meta.prefills and inputs.meta.layer_stack is None
    eng.step()
    inputs = eng.runner.prepare(eng.scheduler.schedule())  # three decodes, two rows allowed
    assert inputs.meta.num_decodes == 3 and not inputs.meta.prefills
    assert inputs.meta.layer_stack is None
    plan = eng.runner.fused_decode
    assert plan is not None and plan.max_rows == 2
    eng.abort("2")
    inputs = eng.runner.prepare(eng.scheduler.schedule())  # two decodes
    assert inputs.meta.num_decodes == 2 and inputs.meta.layer_stack is plan


def test_a_position_past_the_rotary_table_is_refused_before_any_layer_runs(
    model_dirs: dict[str, Path],
) -> None:
    eng = engine(model_dirs["gemma3"], "float32")
    eng.add_request("0", [5, 6, 7], SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))
    eng.step()
    inputs = eng.runner.prepare(eng.scheduler.schedule())
    h = torch.randn(1, eng.model.config.hidden_size)
    plan = inputs.meta.layer_stack
    assert isinstance(plan, fused_module.FusedDecode)
    table_rows = plan.rotaries[0].cos.shape[0]
    before = h.clone()
    with pytest.raises(ValueError, match=f"past the rotary table's {table_rows} positions"):
        plan.run(h, torch.tensor([table_rows]), inputs.meta)
    assert torch.equal(h, before)


@pytest.mark.parametrize(("family", "mode"), [("llama", "none"), ("llama", "int8"), ("deepseek_v3", "int4")])
def test_other_models_have_no_fused_decode(
    model_dirs: dict[str, Path], deepseek_v3_dir: Path, family: str, mode: str
) -> None:
    """Unquantized or int8 layers, and DeepSeek's MLA and MoE layers, run layer by layer."""
    model_dir = deepseek_v3_dir if family == "deepseek_v3" else model_dirs[family]
    eng = LLMEngine.from_options(
        model=str(model_dir),
        dtype="float32",
        quantization=mode,
        num_kv_blocks=16,
        block_size=4,
        max_model_len=64,
    )
    assert eng.runner.fused_decode is None
