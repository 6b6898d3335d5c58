"""Quantized models served through LLM.generate, the OpenAI-compatible server and the CLI: agreement,
memory accounting, options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_apply import AGREEMENT

from conftest import FAMILIES, MODES
from factories import greedy, prefill_logits, random_prompts
from seekserve import LLM, SamplingParams
from seekserve.engine import kv_cache
from seekserve.errors import ConfigError
from server.live import ENGINE_OPTIONS, engine_loader, start_server
from test_cli import run_cli

PROMPT = "The capital of France is"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", MODES)
def test_generated_tokens_are_the_float_models_choices(
    realistic_dirs: Callable[[str], Path], family: str, mode: str
) -> None:
    """Generate with the quantized model (batched decode steps, small-batch kernels), then ask the
    float model for its top-1 token at every generated position of the same sequences."""
    model_dir = realistic_dirs(family)
    prompts = random_prompts(4, lengths=[8, 20, 33, 5], seed=4)
    llm = LLM(
        str(model_dir), dtype="float32", quantization=mode, num_kv_blocks=64, block_size=8, max_model_len=128
    )
    agree = total = 0
    for prompt, out in zip(prompts, llm.generate(prompts, greedy(24)), strict=True):
        generated = out.outputs[0].token_ids
        assert len(generated) == 24
        sequence = prompt + generated
        chosen = prefill_logits(model_dir, sequence)[len(prompt) - 1 : -1].argmax(-1)
        agree += int((chosen == torch.tensor(generated)).sum())
        total += len(generated)
    assert agree / total >= AGREEMENT[mode]


def test_the_kv_cache_gets_what_quantization_saved(llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU the default KV budget is a share of free memory capped at 4 GiB plus the saving: with
    memory to spare (the cap binds) the int8 engine's cache is larger by exactly what it saved."""
    monkeypatch.setattr(kv_cache, "_CPU_KV_CACHE_MAX_BYTES", 1 << 20)
    monkeypatch.setattr(kv_cache, "available_memory_bytes", lambda: 1 << 40)
    dense = LLM(str(llama_dir), dtype="float32", max_model_len=128).engine
    quant = LLM(str(llama_dir), dtype="float32", max_model_len=128, quantization="int8").engine
    assert dense.weight_bytes_saved == 0
    model_bytes = [e.weight_bytes - e.packed_copy_bytes for e in (dense, quant)]  # copies for speed aside
    assert quant.weight_bytes_saved == model_bytes[0] - model_bytes[1] > 0
    block_bytes = dense.kv_bytes_per_token * dense.config.cache.block_size
    assert dense.num_kv_blocks == (1 << 20) // block_bytes
    assert quant.num_kv_blocks == ((1 << 20) + quant.weight_bytes_saved) // block_bytes


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"quantization": "int8", "quantization_group_size": 64}, "takes none"),
        ({"quantization": "int4", "quantization_group_size": 48}, "use 32, 64 or 128"),
        ({"quantization": "fp8", "quantization_group_size": -1}, "0 for one scale per output channel"),
        (
            {"quantization": "int4", "quantize_activations": True},
            "quantize_activations is for quantization=int8",
        ),
        ({"quantization": "int8", "max_quantized_kernel_rows": -1}, "at least 0"),
        ({"quantization": "int3"}, "choose one of none, fp8, int8, int4"),
    ],
)
def test_bad_quantization_options_are_config_errors(
    llama_dir: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        LLM(str(llama_dir), **options)


def test_the_cli_serves_a_quantized_model(llama_dir: Path) -> None:
    assert "--quantization-group-size" in run_cli("generate", "--help").stdout
    args = ("--max-tokens", "6", "--dtype", "float32", "--max-model-len", "64", "--quantization", "int4")
    result = run_cli("generate", "--model", str(llama_dir), *args, PROMPT)
    assert result.returncode == 0, result.stderr
    expected = LLM(str(llama_dir), dtype="float32", max_model_len=64, quantization="int4").generate(
        PROMPT, SamplingParams(temperature=0.0, max_tokens=6)
    )
    assert result.stdout == expected[0].outputs[0].text + "\n"


@pytest.mark.parametrize("mode", MODES)
def test_the_server_serves_a_quantized_model(llama_dir: Path, mode: str) -> None:
    """The same model served with each mode over the OpenAI API answers as the offline engine does."""
    live = start_server(engine_loader(llama_dir, quantization=mode))
    try:
        reply = live.client().completions.create(
            model="tiny", prompt=PROMPT, max_tokens=8, temperature=0, extra_body={"ignore_eos": True}
        )
        report = live.engine.info.quantization
        assert report is not None and report.mode == mode
    finally:
        live.stop()
    offline = LLM(str(llama_dir), quantization=mode, **ENGINE_OPTIONS)
    expected = offline.generate(PROMPT, greedy(8))[0].outputs[0]
    assert reply.choices[0].text == expected.text
    assert reply.usage is not None and reply.usage.completion_tokens == len(expected.token_ids) == 8
