"""Factories for tests: tiny tokenizers and tiny random models saved as Hugging Face directories."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from seekserve.engine.request import Request
from seekserve.engine.sampling_params import SamplingParams

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<think>", "</think>"]
_CORPUS = [
    "The quick brown fox jumps over the lazy dog. ",
    "Hello world! def main(): return 42\n",
    "The capital of France is Paris. The capital of Italy is Rome. ",
    "<|user|><|assistant|><|system|> 0123456789 numbers, letters; symbols: ()[]{}+-*/=<>",
]


def make_tokenizer(path: Path, vocab_size: int = 384) -> Any:
    """A byte-level BPE tokenizer trained on a fixed corpus; deterministic. Returns the HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    hf.chat_template = CHAT_TEMPLATE
    hf.save_pretrained(str(path))
    return hf


def make_model_dir(path: Path, config: Any, seed: int = 0, init_std: float = 0.15) -> Path:
    """Save a random transformers model for `config` (float32) plus a tokenizer into `path`."""
    from transformers import AutoModelForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(path, vocab_size=config.vocab_size)
    assert len(tokenizer) <= config.vocab_size, "tokenizer larger than the model vocabulary"
    config.eos_token_id = tokenizer.eos_token_id
    config.bos_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.1) if p.mean() > 0.5 else p.normal_(0.0, 0.1)
            else:
                p.normal_(0.0, init_std)
    model.save_pretrained(str(path))
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": tokenizer.eos_token_id}))
    return path


def rewrite_weights(model_dir: Path, update: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Let `update` change the tensors of a single-file checkpoint in place, then save them back."""
    from safetensors.torch import load_file, save_file

    file = model_dir / "model.safetensors"
    tensors = load_file(str(file))
    update(tensors)
    save_file(tensors, str(file), metadata={"format": "pt"})


def llama_config(**overrides: Any) -> Any:
    from transformers import LlamaConfig

    values: dict[str, Any] = dict(
        vocab_size=384,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        rms_norm_eps=1e-6,
    )
    values.update(overrides)
    return LlamaConfig(**values)


def qwen2_config(**overrides: Any) -> Any:
    from transformers import Qwen2Config

    values: dict[str, Any] = dict(
        vocab_size=384,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
    )
    values.update(overrides)
    return Qwen2Config(**values)


def gemma3_config(**overrides: Any) -> Any:
    """Tiny Gemma 3: sliding (window 8) and global layers alternate, distinct rope bases, GQA."""
    from transformers import Gemma3TextConfig

    values: dict[str, Any] = dict(
        vocab_size=384,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=8,
        sliding_window_pattern=2,
        query_pre_attn_scalar=24,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
        },
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
    )
    values.update(overrides)
    return Gemma3TextConfig(**values)


def deepseek_v3_config(**overrides: Any) -> Any:
    """Tiny DeepSeek-V3: low-rank query, grouped sigmoid routing with bias, a dense first layer, YaRN."""
    from transformers import DeepseekV3Config

    values: dict[str, Any] = dict(
        vocab_size=384,
        hidden_size=64,
        intermediate_size=96,
        moe_intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        q_lora_rank=48,
        kv_lora_rank=32,
        qk_nope_head_dim=16,
        qk_rope_head_dim=8,
        v_head_dim=24,
        n_routed_experts=8,
        n_shared_experts=1,
        num_experts_per_tok=2,
        n_group=4,
        topk_group=2,
        first_k_dense_replace=1,
        routed_scaling_factor=2.5,
        max_position_embeddings=512,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 128,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "mscale": 1.0,
            "mscale_all_dim": 0.8,
        },
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    values.update(overrides)
    return DeepseekV3Config(**values)


def deepseek_v2_config(**overrides: Any) -> Any:
    """Tiny DeepSeek-V2-Lite: plain query projection, softmax greedy routing, two shared experts."""
    from transformers import DeepseekV2Config

    values: dict[str, Any] = dict(
        vocab_size=384,
        hidden_size=64,
        intermediate_size=96,
        moe_intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        q_lora_rank=None,
        kv_lora_rank=32,
        qk_nope_head_dim=16,
        qk_rope_head_dim=8,
        v_head_dim=16,
        n_routed_experts=6,
        n_shared_experts=2,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        topk_method="greedy",
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    values.update(overrides)
    return DeepseekV2Config(**values)


def hf_greedy(model_dir: Path, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """transformers' greedy `generate` for each prompt alone (float32, end-of-sequence ignored)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    # No end-of-sequence token: generation runs to max_new_tokens and the end-of-sequence token stays
    # selectable, as with ignore_eos (min_new_tokens would mask it out of the logits instead).
    model.generation_config.eos_token_id = None
    outputs = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([prompt])
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=0,
            )
            outputs.append(out[0, len(prompt) :].tolist())
    return outputs


def hf_logits(model_dir: Path, ids: list[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """transformers' logits [len(ids), vocab] (as float32) for one sequence, computed in `dtype`."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    with torch.no_grad():
        return model.eval()(torch.tensor([ids])).logits[0].float()


def prefill_logits(model_dir: Path, ids: list[int], dtype: str = "float32", **options: Any) -> torch.Tensor:
    """seekserve's logits [len(ids), vocab] for one sequence prefilled in a single step
    (`options`: more ModelConfig fields, e.g. quantization="int8")."""
    from seekserve.engine.config import ModelConfig
    from seekserve.engine.model_loader import load_model
    from seekserve.layers.attention import AttentionMetadata, PrefillChunk

    cpu = torch.device("cpu")
    config = ModelConfig(model=str(model_dir), dtype=dtype, **options)  # type: ignore[arg-type]
    model = load_model(config, cpu).model
    n, block_size = len(ids), 16
    num_blocks = -(-n // block_size)
    caches = model.kv_cache_spec().allocate(num_blocks * block_size, model.dtype, cpu)
    meta = AttentionMetadata(
        slot_mapping=torch.arange(n),
        num_decodes=0,
        decode_seq_lens=[],
        decode_block_tables=torch.zeros(0, 0, dtype=torch.int64),
        prefills=[PrefillChunk(0, n, 0, torch.arange(num_blocks))],
        block_size=block_size,
    )
    with torch.inference_mode():
        return model.compute_logits(model(torch.tensor(ids), torch.arange(n), caches, meta)).float()


def random_prompts(
    num: int, lengths: list[int] | None = None, vocab: int = 384, seed: int = 0
) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    lengths = lengths or [5 + 7 * i for i in range(num)]
    return [torch.randint(10, vocab, (n,), generator=gen).tolist() for n in lengths[:num]]


def greedy(max_tokens: int = 16, **kw: Any) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, **kw)


def make_request(
    request_id: str = "r0", prompt: list[int] | None = None, max_tokens: int = 8, **kw: Any
) -> Request:
    return Request(
        request_id, prompt or [1, 2, 3, 4], SamplingParams(max_tokens=max_tokens, **kw), frozenset()
    )


def subprocess_env() -> dict[str, str]:
    """The environment for child processes, importing seekserve from this checkout's src/."""
    import os

    import seekserve

    src = str(Path(seekserve.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


FP8_MAX = torch.finfo(torch.float8_e4m3fn).max


def fp8_block_quantize(w: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W -> (float8_e4m3fn W, float32 scale_inv per block), the way DeepSeek-V3's weights were made."""
    rows, cols = w.shape
    nr, nc = -(-rows // block), -(-cols // block)
    padded = torch.zeros(nr * block, nc * block)
    padded[:rows, :cols] = w
    blocks = padded.view(nr, block, nc, block)
    scale = (blocks.abs().amax(dim=(1, 3)) / FP8_MAX).clamp(min=1e-12)  # [nr, nc]
    q = (blocks / scale[:, None, :, None]).view(nr * block, nc * block)[:rows, :cols]
    return q.to(torch.float8_e4m3fn), scale


def fp8_block_dequantize(q: torch.Tensor, scale: torch.Tensor, block: int) -> torch.Tensor:
    rows, cols = q.shape
    full = scale.repeat_interleave(block, 0)[:rows].repeat_interleave(block, 1)[:, :cols]
    return q.float() * full


def make_fp8_checkpoint(model_dir: Path, fp8_dir: Path, block: int) -> dict[str, torch.Tensor]:
    """Copy a float32 model as DeepSeek-V3 ships its FP8 release: linear weights (`*_proj.weight`)
    in float8_e4m3fn with `weight_scale_inv` per block×block block, in two shards with every scale in
    the second (a weight and its scale may be split in a release). Returns the dequantized tensors."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, fp8_dir, dirs_exist_ok=True)
    fp8: dict[str, torch.Tensor] = {}
    dequantized: dict[str, torch.Tensor] = {}
    for name, t in load_file(str(model_dir / "model.safetensors")).items():
        if t.dim() == 2 and name.endswith("_proj.weight"):
            q, scale = fp8_block_quantize(t, block)
            fp8[name], fp8[name + "_scale_inv"] = q, scale
            dequantized[name] = fp8_block_dequantize(q, scale, block)
        else:
            fp8[name] = dequantized[name] = t
    names = sorted(n for n in fp8 if not n.endswith("_scale_inv"))
    save_file({n: fp8[n] for n in names}, str(fp8_dir / "model-00001-of-00002.safetensors"))
    save_file(
        {n: t for n, t in fp8.items() if n not in names}, str(fp8_dir / "model-00002-of-00002.safetensors")
    )
    (fp8_dir / "model.safetensors").unlink()
    config = json.loads((fp8_dir / "config.json").read_text())
    config["quantization_config"] = {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [block, block],
    }
    (fp8_dir / "config.json").write_text(json.dumps(config))
    return dequantized


def fill_weight(qweight: Any, w: torch.Tensor, index: tuple[int, ...] = ()) -> Any:
    """Load a float matrix [N, K] into a quantized weight part by part (its `part_sizes`), then finish."""
    start = 0
    for size in qweight.part_sizes:
        qweight.load_rows(index, start, w[start : start + size])
        start += size
    qweight.finish(index)
    return qweight


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """‖got - want‖ / ‖want‖ in float32."""
    return float((got.float() - want.float()).norm() / want.float().norm())


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 10.0) -> None:
    """Terminate a child process and wait for it; kill it if it does not stop within `timeout_s`."""
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class WarningRecords(logging.Handler):
    """Collects the warnings (and worse) of the loggers it is added to."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
