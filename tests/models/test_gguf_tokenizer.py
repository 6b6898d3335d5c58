"""Tokenizers from GGUF metadata: transformers' conversion, converted once and then read from the cache;
models without a chat template get the default one and say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import gemma3_config, llama_config, make_model_dir, qwen2_config
from gguf_factories import Q, Storage, write_gguf
from seekserve import LLM, SamplingParams
from seekserve.models.chat_template import DEFAULT_CHAT_TEMPLATE
from seekserve.models.gguf import GGUFCheckpoint
from seekserve.models.gguf import tokenizer as gguf_tokenizer

TEXTS = ["The quick brown fox", "def main(): return 42\n", "  two spaces", "<s>x</s> <think>y</think>"]
CONFIGS = {"llama": llama_config, "qwen2": qwen2_config, "gemma3": gemma3_config}


def write(tmp_path: Path, arch: str, chat_template: bool = True) -> tuple[Path, Path]:
    model_dir = make_model_dir(tmp_path / "hf", CONFIGS[arch]())
    path = tmp_path / f"{arch}.gguf"
    write_gguf(path, model_dir, arch, Storage(Q.F32), chat_template=chat_template)
    return path, model_dir


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_tokenizer_equals_transformers_and_is_cached(
    tmp_path: Path, arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoTokenizer

    path, model_dir = write(tmp_path, arch)
    cache = tmp_path / "tokenizers"
    converted = GGUFCheckpoint(path).tokenizer(cache)
    reference = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    assert [converted.encode(t) for t in TEXTS] == [reference.encode(t) for t in TEXTS]
    assert converted.chat_template == AutoTokenizer.from_pretrained(model_dir).chat_template
    assert len(list(cache.iterdir())) == 1

    def no_conversion(*args: object) -> None:
        raise AssertionError("the cached tokenizer should have been used")

    monkeypatch.setattr(gguf_tokenizer, "_convert", no_conversion)
    cached = GGUFCheckpoint(path).tokenizer(cache)
    assert [cached.encode(t) for t in TEXTS] == [reference.encode(t) for t in TEXTS]
    assert cached.chat_template == converted.chat_template


def test_damaged_cache_is_converted_again(tmp_path: Path) -> None:
    path, _ = write(tmp_path, "llama")
    cache = tmp_path / "tokenizers"
    expected = GGUFCheckpoint(path).tokenizer(cache).encode(TEXTS[1])
    (folder,) = cache.iterdir()
    (folder / "tokenizer.json").write_text("{ not json")
    assert GGUFCheckpoint(path).tokenizer(cache).encode(TEXTS[1]) == expected


def test_model_without_chat_template_gets_the_default(tmp_path: Path) -> None:
    path, _ = write(tmp_path, "llama", chat_template=False)
    llm = LLM(str(path), dtype="float32", num_kv_blocks=40)
    assert llm.engine.uses_default_chat_template
    assert llm.get_tokenizer().chat_template == DEFAULT_CHAT_TEMPLATE
    prompt = llm.get_tokenizer().apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<s>User: Hi\nAssistant:"
    out = llm.chat([{"role": "user", "content": "Hi"}], SamplingParams(temperature=0, max_tokens=3))
    assert len(out[0].outputs[0].token_ids) >= 1


def test_model_with_chat_template_keeps_it(tmp_path: Path) -> None:
    path, _ = write(tmp_path, "qwen2")
    llm = LLM(str(path), dtype="float32", num_kv_blocks=40)
    assert not llm.engine.uses_default_chat_template
    assert llm.engine.model_name == str(path)
