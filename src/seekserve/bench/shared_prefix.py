"""The shared-prefix dataset: many conversations that open with one of a few long system prompts.

    shared-prefix           8 system prompts of 512 tokens
    shared-prefix:N,LEN     N system prompts of LEN tokens

Each request is one of the system prompts followed by a distinct question of --input-len random
tokens: a system and a user message for --endpoint chat, the two texts joined by a blank line for
completions. The prefixes take turns in a new shuffled order each round, so every N requests use
each prefix once and requests of different prefixes interleave. It measures what prefix caching
and prefix-aware routing save: with a tokenizer the lengths are exact, without one each random word
is about one token (as in the random dataset).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from seekserve.bench.datasets import (
    BenchRequest,
    Dataset,
    count_tokens,
    load_tokenizer,
    output_len_of,
    random_text,
)
from seekserve.bench.lengths import LengthDistribution, parse_length
from seekserve.errors import ConfigError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from seekserve.bench.config import BenchConfig

__all__ = ["SHARED_PREFIX", "SharedPrefixDataset", "SharedPrefixSpec", "parse_shared_prefix"]

SHARED_PREFIX = "shared-prefix"
DEFAULT_NUM_PREFIXES, DEFAULT_PREFIX_LEN = 8, 512
PREFIX_SEPARATOR = "\n\n"
"""Between prefix and question in a completions prompt (a whitespace boundary keeps the prefix's tokens)."""


@dataclass(frozen=True, slots=True)
class SharedPrefixSpec:
    """What "shared-prefix:N,LEN" asks for."""

    num_prefixes: int = DEFAULT_NUM_PREFIXES
    """Distinct system prompts."""

    prefix_len: int = DEFAULT_PREFIX_LEN
    """Tokens in each system prompt (exact with a tokenizer, else words)."""


def parse_shared_prefix(arg: str | None) -> SharedPrefixSpec:
    """The spec of "shared-prefix" (arg None: the defaults) or "shared-prefix:N,LEN" (arg "N,LEN")."""
    if arg is None:
        return SharedPrefixSpec()
    parts = arg.split(",")
    if len(parts) == 2 and all(p.strip().isdecimal() and int(p) >= 1 for p in parts):
        return SharedPrefixSpec(int(parts[0]), int(parts[1]))
    raise ConfigError(
        f"dataset '{SHARED_PREFIX}:{arg}' is invalid: write {SHARED_PREFIX}:NUM_PREFIXES,PREFIX_LEN with "
        f"whole numbers of at least 1, e.g. {SHARED_PREFIX}:{DEFAULT_NUM_PREFIXES},{DEFAULT_PREFIX_LEN}"
    )


class SharedPrefixDataset(Dataset):
    """Requests that each open with one of `spec.num_prefixes` long system prompts (see the module docstring).

    The prefixes are drawn first from the rng given to `requests`, so the same seed gives the same
    prefixes, order and questions. `prompt_len` (with a tokenizer) counts the prefix and question
    tokens, plus the separator for completions; a chat template's own tokens are not counted."""

    def __init__(
        self,
        spec: SharedPrefixSpec,
        question_len: LengthDistribution,
        output_len: LengthDistribution,
        tokenizer: Tokenizer | None,
        chat: bool,
    ) -> None:
        self.spec, self.question_len, self.output_len = spec, question_len, output_len
        self.tokenizer, self.chat = tokenizer, chat

    def requests(self, rng: random.Random) -> Iterator[BenchRequest]:
        prefixes = [
            random_text(self.spec.prefix_len, rng, self.tokenizer) for _ in range(self.spec.num_prefixes)
        ]
        order = list(range(len(prefixes)))
        while True:
            rng.shuffle(order)
            for i in order:
                yield self._request(prefixes[i], rng)

    def _request(self, prefix: tuple[str, int], rng: random.Random) -> BenchRequest:
        (system, system_len), output_len = prefix, self.output_len.sample(rng)
        question, question_len = random_text(self.question_len.sample(rng), rng, self.tokenizer)
        if self.chat:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
            exact = system_len + question_len if self.tokenizer is not None else None
            return BenchRequest(messages, output_len, prompt_len=exact)
        text = system + PREFIX_SEPARATOR + question
        exact = count_tokens(self.tokenizer, text) if self.tokenizer is not None else None
        return BenchRequest(text, output_len, prompt_len=exact)

    @classmethod
    def from_config(cls, config: BenchConfig, path: Path | None) -> SharedPrefixDataset:
        _, sep, arg = config.dataset.partition(":")
        tokenizer = load_tokenizer(config.tokenizer) if config.tokenizer else None
        return cls(
            parse_shared_prefix(arg if sep else None),
            parse_length(config.input_len, "input_len"),
            output_len_of(config),
            tokenizer,
            chat=config.endpoint == "chat",
        )
