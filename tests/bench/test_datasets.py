from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from factories import make_tokenizer
from seekserve.bench.config import BenchConfig
from seekserve.bench.datasets import BenchRequest, load_dataset, load_tokenizer, random_text
from seekserve.errors import ConfigError

BASE: dict[str, Any] = {"base_url": "http://127.0.0.1:8000", "model": "m"}


def take(config: BenchConfig, n: int, seed: int = 0) -> list[BenchRequest]:
    return list(itertools.islice(load_dataset(config).requests(random.Random(seed)), n))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tok")
    make_tokenizer(path)
    return path


def test_random_prompts_have_exact_lengths_with_a_tokenizer(tokenizer_dir: Path) -> None:
    config = BenchConfig(
        **BASE, input_len="uniform:20,60", output_len="normal:30,5", tokenizer=str(tokenizer_dir)
    )
    tokenizer = load_tokenizer(str(tokenizer_dir))
    requests = take(config, 40)
    for r in requests:
        assert isinstance(r.prompt, str)
        assert r.prompt_len == len(tokenizer.encode(r.prompt, add_special_tokens=False).ids)
        assert 20 <= r.prompt_len <= 60
    assert len({r.prompt for r in requests}) == 40, "prompts must not repeat (prefix caching)"
    assert len({r.prompt_len for r in requests}) > 10 and len({r.output_len for r in requests}) > 5


def test_random_prompts_without_a_tokenizer_are_words_and_lengths_unknown() -> None:
    requests = take(BenchConfig(**BASE, input_len="50", output_len="7"), 5)
    assert all(len(str(r.prompt).split()) == 50 and r.prompt_len is None for r in requests)
    assert {r.output_len for r in requests} == {7}
    assert take(BenchConfig(**BASE), 3, seed=1) == take(BenchConfig(**BASE), 3, seed=1)
    assert take(BenchConfig(**BASE), 1)[0].output_len == 128


def test_random_text_is_exact_for_long_prompts(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tokenizer_dir / "tokenizer.json"))
    text, n = random_text(4000, random.Random(0), tokenizer)
    assert n == 4000 == len(tokenizer.encode(text, add_special_tokens=False).ids)


def write_jsonl(path: Path, lines: list[Any]) -> str:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return f"jsonl:{path}"


def test_jsonl_records_keep_order_and_fields_and_start_over(tmp_path: Path) -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    spec = write_jsonl(
        tmp_path / "p.jsonl",
        [{"prompt": "one", "output_len": 5, "arrival_s": 0.5}, "", {"messages": messages, "max_tokens": 9}],
    )
    requests = take(BenchConfig(**BASE, dataset=spec, output_len="3"), 4)
    assert requests[0] == BenchRequest("one", 5, arrival_s=0.5)
    assert requests[1] == BenchRequest(messages, 9)
    assert requests[2:] == requests[:2]
    assert load_dataset(BenchConfig(**BASE, dataset=spec)).size == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "p.jsonl:2 is not valid JSON"),
        ('"just a string"', 'p.jsonl:2: each line must be an object with either "prompt" or "messages"'),
        ('{"prompt": "a", "messages": []}', "either"),
        ('{"prompt": 5}', '"prompt" must be a string'),
        ('{"prompt": "a", "output_len": 0}', '"output_len" must be a whole number'),
        ('{"prompt": "a", "arrival_s": -1}', '"arrival_s" must be a number of seconds'),
    ],
)
def test_bad_jsonl_lines_are_reported_with_their_line_number(tmp_path: Path, line: str, message: str) -> None:
    spec = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "ok"}, line])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_dataset(BenchConfig(**BASE, dataset=spec))


def test_chat_messages_need_the_chat_endpoint(tmp_path: Path) -> None:
    spec = write_jsonl(tmp_path / "p.jsonl", [{"messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(ConfigError, match="needs --endpoint chat"):
        load_dataset(BenchConfig(**BASE, dataset=spec, endpoint="completions"))


def sharegpt(path: Path, conversations: list[Any]) -> str:
    path.write_text(json.dumps(conversations))
    return f"sharegpt:{path}"


def conversation(prompt: str, reply: str) -> dict[str, Any]:
    return {"conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": reply}]}


def test_sharegpt_takes_the_first_turn_and_the_reply_length(tmp_path: Path) -> None:
    spec = sharegpt(
        tmp_path / "s.json",
        [
            conversation("tell me about the sea " * 3, "x" * 400),
            conversation("hi", "too short a prompt"),
            {"conversations": [{"from": "human", "value": "only one turn"}]},
            {"no": "conversations"},
        ],
    )
    requests = take(BenchConfig(**BASE, dataset=spec), 3)
    assert requests == [BenchRequest("tell me about the sea " * 3, 100)] * 3  # 400 chars ~ 100 tokens
    assert take(BenchConfig(**BASE, dataset=spec, output_len="12"), 1)[0].output_len == 12


def test_sharegpt_counts_tokens_with_a_tokenizer(tmp_path: Path, tokenizer_dir: Path) -> None:
    prompt, reply = "The capital of France is Paris. " * 4, "Hello world! " * 10
    spec = sharegpt(tmp_path / "s.json", [conversation(prompt, reply)])
    tokenizer = load_tokenizer(str(tokenizer_dir))
    [request] = take(BenchConfig(**BASE, dataset=spec, tokenizer=str(tokenizer_dir)), 1)
    assert request.prompt_len == len(tokenizer.encode(prompt, add_special_tokens=False).ids)
    assert request.output_len == len(tokenizer.encode(reply, add_special_tokens=False).ids)


def test_sharegpt_without_usable_conversations_is_an_error(tmp_path: Path) -> None:
    spec = sharegpt(tmp_path / "s.json", [conversation("a", "b")])
    with pytest.raises(ConfigError, match="passes the length filter"):
        take(BenchConfig(**BASE, dataset=spec), 1)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="expected a non-empty JSON list"):
        load_dataset(BenchConfig(**BASE, dataset=f"sharegpt:{tmp_path / 'bad.json'}"))


def test_a_missing_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist; give a tokenizer\.json"):
        load_dataset(BenchConfig(**BASE, tokenizer=str(tmp_path)))
