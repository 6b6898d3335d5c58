from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from factories import make_tokenizer
from seekserve.bench.client import OpenAIClient
from seekserve.bench.config import BenchConfig
from seekserve.bench.datasets import BenchRequest, check_dataset_spec, load_dataset, load_tokenizer
from seekserve.bench.fake_server import FakeServer
from seekserve.bench.shared_prefix import SharedPrefixDataset, SharedPrefixSpec, parse_shared_prefix
from seekserve.errors import ConfigError

BASE: dict[str, Any] = {"base_url": "http://127.0.0.1:8000", "model": "m"}


def take(n: int, seed: int = 0, **config: Any) -> list[BenchRequest]:
    dataset = load_dataset(BenchConfig(**{**BASE, **config}))
    return list(itertools.islice(dataset.requests(random.Random(seed)), n))


def system_of(request: BenchRequest) -> str:
    assert isinstance(request.prompt, list), "a chat request carries messages"
    return str(request.prompt[0]["content"])


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tok")
    make_tokenizer(path)
    return path


def test_chat_requests_share_exactly_n_prefixes_of_exact_lengths(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tokenizer_dir))

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    requests = take(
        20, dataset="shared-prefix:5,96", input_len="24", output_len="7", tokenizer=str(tokenizer_dir)
    )
    systems = [system_of(r) for r in requests]
    assert len(set(systems)) == 5
    for r in requests:
        assert isinstance(r.prompt, list) and [m["role"] for m in r.prompt] == ["system", "user"]
        system, question = r.prompt[0]["content"], r.prompt[1]["content"]
        assert count(system) == 96 and count(question) == 24
        assert r.prompt_len == 120 and r.output_len == 7
    assert len({r.prompt[1]["content"] for r in requests if isinstance(r.prompt, list)}) == 20
    # each round of 5 uses every prefix once, in a freshly shuffled order
    rounds = [tuple(systems[i : i + 5]) for i in range(0, 20, 5)]
    assert all(len(set(r)) == 5 for r in rounds)
    assert len(set(rounds)) > 1, "every round in the same order: requests are not shuffled"


def test_completions_join_prefix_and_question_keeping_the_prefix_tokens(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tokenizer_dir))
    requests = take(
        8, dataset="shared-prefix:2,64", input_len="16", endpoint="completions", tokenizer=str(tokenizer_dir)
    )
    prefixes = {str(r.prompt).split("\n\n")[0] for r in requests}
    assert len(prefixes) == 2
    for r in requests:
        assert isinstance(r.prompt, str)
        prefix, question = r.prompt.split("\n\n")
        prefix_ids = tokenizer.encode(prefix, add_special_tokens=False).ids
        ids = tokenizer.encode(r.prompt, add_special_tokens=False).ids
        assert len(prefix_ids) == 64 and ids[:64] == prefix_ids, "the prefix cache needs the same tokens"
        assert len(tokenizer.encode(question, add_special_tokens=False).ids) == 16
        assert r.prompt_len == len(ids) and r.output_len == 128


def test_without_a_tokenizer_lengths_are_words_and_the_defaults_are_8_of_512() -> None:
    requests = take(16, dataset="shared-prefix", input_len="uniform:10,20")
    systems = [system_of(r) for r in requests]
    assert len(set(systems)) == 8 and set(systems[:8]) == set(systems[8:])
    for r in requests:
        assert isinstance(r.prompt, list) and r.prompt_len is None
        assert len(r.prompt[0]["content"].split()) == 512
        assert 10 <= len(r.prompt[1]["content"].split()) <= 20


def test_the_seed_decides_prefixes_order_and_questions() -> None:
    spec = {"dataset": "shared-prefix:3,40", "input_len": "8"}
    assert take(12, seed=7, **spec) == take(12, seed=7, **spec)
    assert take(12, seed=7, **spec) != take(12, seed=8, **spec)
    first = take(3, seed=7, **spec)
    assert {system_of(r) for r in take(30, seed=7, **spec)} == {system_of(r) for r in first}


@pytest.mark.parametrize(
    ("arg", "spec"),
    [
        (None, SharedPrefixSpec(8, 512)),
        ("3,100", SharedPrefixSpec(3, 100)),
        (" 1, 2", SharedPrefixSpec(1, 2)),
    ],
)
def test_specs_parse(arg: str | None, spec: SharedPrefixSpec) -> None:
    assert parse_shared_prefix(arg) == spec
    assert check_dataset_spec("shared-prefix" + ("" if arg is None else f":{arg}")) == (
        SharedPrefixDataset,
        None,
    )


@pytest.mark.parametrize(
    "spec", ["shared-prefix:", "shared-prefix:8", "shared-prefix:0,512", "shared-prefix:a,b"]
)
def test_bad_specs_name_the_form(spec: str) -> None:
    with pytest.raises(ConfigError) as e:
        BenchConfig(**BASE, dataset=spec)
    assert str(e.value) == (
        f"dataset '{spec}' is invalid: write shared-prefix:NUM_PREFIXES,PREFIX_LEN with whole numbers "
        "of at least 1, e.g. shared-prefix:8,512"
    )


def test_chat_bodies_carry_the_system_and_user_messages(with_fake_server: Callable[..., Any]) -> None:
    async def test(server: FakeServer) -> list[Any]:
        config = BenchConfig(
            base_url=server.base_url, model="fake-model", dataset="shared-prefix:2,5", input_len="3"
        )
        requests = list(itertools.islice(load_dataset(config).requests(random.Random(0)), 2))
        bodies = []
        async with OpenAIClient(config) as client:
            for i, r in enumerate(requests):
                record = await client.send(r, i, time.perf_counter())
                assert record.ok and record.prompt_tokens == 8, record.error_message
                bodies.append(server.last_body)
        return bodies

    bodies = with_fake_server(test)
    assert [[m["role"] for m in b["messages"]] for b in bodies] == [["system", "user"]] * 2
    assert [len(b["messages"][0]["content"].split()) for b in bodies] == [5, 5]
    assert bodies[0]["messages"][0]["content"] != bodies[1]["messages"][0]["content"]
