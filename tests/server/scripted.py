"""A tiny Llama whose weights make it answer, greedily, with a fixed script: a reasoning model on cue.

Its decoder layers add nothing (output projections are zero), so the logits depend on the last
token alone: the embedding of the k-th token of a chain is the k-th unit vector, and the LM head
row of token k+1 reads that unit. The chain starts at the last token of the chat template's
generation prompt (which ends with "<think>\\n", as DeepSeek-R1's does), runs through the script
and ends with end-of-sequence. `<think>` and `</think>` are ordinary added tokens, as in R1's
tokenizer, so they stay in the decoded text.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

from factories import CHAT_TEMPLATE, llama_config, make_tokenizer

R1_TEMPLATE = CHAT_TEMPLATE.replace("<|assistant|>{% endif %}", "<|assistant|><think>\n{% endif %}")
_LOGIT = 10.0


def _make_think_tags_plain(path: Path) -> None:
    """Turn <think> and </think> from special tokens into ordinary added tokens."""
    tags = {"<think>", "</think>"}
    tokenizer_json = path / "tokenizer.json"
    data = json.loads(tokenizer_json.read_text())
    for token in data["added_tokens"]:
        if token["content"] in tags:
            token["special"] = False
    tokenizer_json.write_text(json.dumps(data))
    config_json = path / "tokenizer_config.json"
    config = json.loads(config_json.read_text())
    for token in config.get("added_tokens_decoder", {}).values():
        if token["content"] in tags:
            token["special"] = False
    config_json.write_text(json.dumps(config))
    (path / "chat_template.jinja").write_text(R1_TEMPLATE)


def make_scripted_model_dir(path: Path, script: str) -> Path:
    """A model dir that answers any chat with `script` (greedy decoding), then end-of-sequence."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path.mkdir(parents=True, exist_ok=True)
    make_tokenizer(path)
    _make_think_tags_plain(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    start = tokenizer.encode(prompt, add_special_tokens=False)[-1]
    chain = [start, *tokenizer.encode(script, add_special_tokens=False), tokenizer.eos_token_id]
    config = llama_config(num_hidden_layers=1)
    assert len(set(chain[:-1])) == len(chain) - 1, f"the script must use distinct tokens: {chain}"
    assert len(chain) < config.hidden_size, "the script is longer than the model has dimensions"
    config.eos_token_id, config.bos_token_id = tokenizer.eos_token_id, tokenizer.bos_token_id
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    sink = config.hidden_size - 1
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(1.0 if "norm" in name else 0.0)
        embed = model.model.embed_tokens.weight  # [vocab, hidden]
        embed[:, sink] = 1.0  # tokens off the chain point nowhere in particular
        head = model.lm_head.weight  # [vocab, hidden]
        for k, (token, successor) in enumerate(itertools.pairwise(chain)):
            embed[token] = 0.0
            embed[token, k] = 1.0
            head[successor, k] = _LOGIT
    model.save_pretrained(str(path))
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": tokenizer.eos_token_id}))
    return path
