"""Where prompts come from: random text of given token lengths, shared prefixes, JSONL, or ShareGPT.

    random         words drawn at random, so no two prompts share a cacheable prefix; with a
                   tokenizer the lengths are exact, without one each word is about one token
    shared-prefix[:N,LEN]
                   N random system prompts of LEN tokens, each followed by a distinct question
                   (shared_prefix.py)
    jsonl:PATH     one object per line: "prompt" (text) or "messages" (chat), optionally
                   "output_len" (or "max_tokens") and "arrival_s" (for --arrival trace)
    sharegpt:PATH  the ShareGPT JSON list: the first human turn is the prompt and the reply's
                   length the output length (filtered like common serving benchmarks: at least
                   4 tokens each, prompt at most 1024, both together at most 2048)

Every dataset yields requests without end (file datasets start over when they run out).
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seekserve.bench.lengths import Fixed, LengthDistribution, parse_length
from seekserve.errors import ConfigError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from seekserve.bench.config import BenchConfig

__all__ = [
    "DATASETS",
    "BenchRequest",
    "Dataset",
    "check_dataset_spec",
    "load_dataset",
    "output_len_of",
    "random_text",
]

DEFAULT_OUTPUT_LEN = 128
_SHAREGPT_MIN_TOKENS, _SHAREGPT_MAX_PROMPT, _SHAREGPT_MAX_TOTAL = 4, 1024, 2048
# Common English words: each (with its leading space) is one token in the usual BPE and
# SentencePiece vocabularies, so a prompt of N words is close to N tokens even without a tokenizer.
_WORD_LIST = (
    "the of and to in is was for on that with as by at from it his be an are he this or had not but "
    "have which they were one you all she her there their would been has more if will when who can also "
    "into its only other some time two first may than then new these after any most over such where "
    "many even back much year work way state people world life day part under made"
)
_WORDS = _WORD_LIST.split()


@dataclass(frozen=True, slots=True)
class BenchRequest:
    """One request to send."""

    prompt: str | list[dict[str, Any]]
    """Text (sent as `prompt`, or as one user message to the chat endpoint), or chat messages."""

    output_len: int
    """Output tokens to ask for (max_tokens)."""

    prompt_len: int | None = None
    """Prompt tokens when known exactly (random prompts with a tokenizer); the server's usage counts too."""

    arrival_s: float | None = None
    """Send offset in seconds for trace arrivals."""


class Dataset(ABC):
    """A source of requests."""

    size: int | None = None
    """Distinct records, None for generated datasets."""

    @abstractmethod
    def requests(self, rng: random.Random) -> Iterator[BenchRequest]:
        """Requests without end, drawn with `rng`."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: BenchConfig, path: Path | None) -> Dataset:
        """The dataset a config names; `path` is the part after "kind:"."""


def load_tokenizer(path: str) -> Tokenizer:
    """A `tokenizers.Tokenizer` from a tokenizer.json file or a directory that holds one."""
    from tokenizers import Tokenizer

    file = Path(path) / "tokenizer.json" if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise ConfigError(
            f"tokenizer {path!r}: {file} does not exist; give a tokenizer.json or its directory"
        )
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # the tokenizers library raises bare Exceptions on bad files
        raise ConfigError(f"tokenizer {file} cannot be read: {e}") from e


def count_tokens(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def random_text(num_tokens: int, rng: random.Random, tokenizer: Tokenizer | None = None) -> tuple[str, int]:
    """(text, its token count): exact with a tokenizer, else the word count (about one token each)."""
    words = " ".join(rng.choices(_WORDS, k=num_tokens + (8 if tokenizer else 0)))
    if tokenizer is None:
        return words, num_tokens
    text = tokenizer.decode(tokenizer.encode(words, add_special_tokens=False).ids[:num_tokens])
    return text, count_tokens(tokenizer, text)


class RandomDataset(Dataset):
    def __init__(
        self, input_len: LengthDistribution, output_len: LengthDistribution, tokenizer: Tokenizer | None
    ) -> None:
        self.input_len, self.output_len, self.tokenizer = input_len, output_len, tokenizer

    def requests(self, rng: random.Random) -> Iterator[BenchRequest]:
        while True:
            text, num_tokens = random_text(self.input_len.sample(rng), rng, self.tokenizer)
            exact = num_tokens if self.tokenizer is not None else None
            yield BenchRequest(text, self.output_len.sample(rng), prompt_len=exact)

    @classmethod
    def from_config(cls, config: BenchConfig, path: Path | None) -> RandomDataset:
        tokenizer = load_tokenizer(config.tokenizer) if config.tokenizer else None
        return cls(parse_length(config.input_len, "input_len"), output_len_of(config), tokenizer)


class JsonlDataset(Dataset):
    def __init__(self, records: list[BenchRequest]) -> None:
        self.records = records
        self.size = len(records)

    def requests(self, rng: random.Random) -> Iterator[BenchRequest]:
        while True:
            yield from self.records

    @classmethod
    def from_config(cls, config: BenchConfig, path: Path | None) -> JsonlDataset:
        assert path is not None, "jsonl datasets have a path"
        output_len, records = output_len_of(config), []
        rng = random.Random(config.seed)
        with _open(path) as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    records.append(_jsonl_record(line, f"{path}:{number}", config, output_len, rng))
        if not records:
            raise ConfigError(f"{path} holds no records: write one JSON object per line")
        return cls(records)


def _jsonl_record(
    line: str, where: str, config: BenchConfig, output_len: LengthDistribution, rng: random.Random
) -> BenchRequest:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where} is not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict) or ("prompt" in obj) == ("messages" in obj):
        raise ConfigError(f'{where}: each line must be an object with either "prompt" or "messages"')
    prompt = obj.get("prompt", obj.get("messages"))
    if "messages" in obj and (config.endpoint == "completions" or not isinstance(prompt, list)):
        raise ConfigError(f'{where}: "messages" must be a list and needs --endpoint chat')
    if not isinstance(prompt, str | list):
        raise ConfigError(f'{where}: "prompt" must be a string')
    length = obj.get("output_len", obj.get("max_tokens"))
    if length is not None and (not isinstance(length, int) or length < 1):
        raise ConfigError(f'{where}: "output_len" must be a whole number of tokens, at least 1')
    arrival = obj.get("arrival_s")
    if arrival is not None and (not isinstance(arrival, int | float) or arrival < 0):
        raise ConfigError(f'{where}: "arrival_s" must be a number of seconds, at least 0')
    return BenchRequest(prompt, length or output_len.sample(rng), arrival_s=arrival)


class ShareGPTDataset(Dataset):
    def __init__(
        self, conversations: list[Any], output_len: LengthDistribution | None, tokenizer: Tokenizer | None
    ) -> None:
        self.conversations, self.output_len, self.tokenizer = conversations, output_len, tokenizer
        self.size = len(conversations)

    def requests(self, rng: random.Random) -> Iterator[BenchRequest]:
        order = list(range(len(self.conversations)))
        while True:
            rng.shuffle(order)
            found = False
            for i in order:
                request = self._request(self.conversations[i], rng)
                if request is not None:
                    found = True
                    yield request
            if not found:
                raise ConfigError(
                    "no ShareGPT conversation passes the length filter (a human turn and a reply of at "
                    f"least {_SHAREGPT_MIN_TOKENS} tokens, prompt at most {_SHAREGPT_MAX_PROMPT}): "
                    "check the file"
                )

    def _request(self, conversation: Any, rng: random.Random) -> BenchRequest | None:
        turns = conversation.get("conversations") if isinstance(conversation, dict) else None
        if not isinstance(turns, list) or len(turns) < 2:
            return None
        prompt, reply = (t.get("value") if isinstance(t, dict) else None for t in turns[:2])
        if not isinstance(prompt, str) or not isinstance(reply, str):
            return None
        prompt_len = self._count(prompt)
        output_len = self.output_len.sample(rng) if self.output_len else self._count(reply)
        if min(prompt_len, output_len) < _SHAREGPT_MIN_TOKENS or prompt_len > _SHAREGPT_MAX_PROMPT:
            return None
        if prompt_len + output_len > _SHAREGPT_MAX_TOTAL:
            return None
        return BenchRequest(prompt, output_len, prompt_len if self.tokenizer else None)

    def _count(self, text: str) -> int:
        # Without a tokenizer: about four characters per token in English text.
        return count_tokens(self.tokenizer, text) if self.tokenizer else max(1, round(len(text) / 4))

    @classmethod
    def from_config(cls, config: BenchConfig, path: Path | None) -> ShareGPTDataset:
        assert path is not None, "sharegpt datasets have a path"
        with _open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(data, list) or not data:
            raise ConfigError(f'{path}: expected a non-empty JSON list of {{"conversations": [...]}} objects')
        output_len = parse_length(config.output_len, "output_len") if config.output_len else None
        tokenizer = load_tokenizer(config.tokenizer) if config.tokenizer else None
        return cls(data, output_len, tokenizer)


def output_len_of(config: BenchConfig) -> LengthDistribution:
    """The output lengths a config asks for: --output-len, else 128 tokens each."""
    if config.output_len is None:
        return Fixed(DEFAULT_OUTPUT_LEN)
    return parse_length(config.output_len, "output_len")


def _open(path: Path) -> Any:
    try:
        return path.open(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"dataset file {path} cannot be opened: {e.strerror}") from None


DATASETS: dict[str, type[Dataset]] = {
    "random": RandomDataset,
    "jsonl": JsonlDataset,
    "sharegpt": ShareGPTDataset,
}


def check_dataset_spec(spec: str) -> tuple[type[Dataset], Path | None]:
    """The dataset class and path a spec names ("random", "shared-prefix[:N,LEN]", "jsonl:PATH",
    "sharegpt:PATH"); the path is None for generated datasets."""
    kind, sep, path = spec.partition(":")
    if kind == "shared-prefix":  # its own module, which builds on this one
        from seekserve.bench.shared_prefix import SharedPrefixDataset, parse_shared_prefix

        parse_shared_prefix(path if sep else None)
        return SharedPrefixDataset, None
    cls = DATASETS.get(kind)
    if cls is None or (cls is RandomDataset) == bool(sep):
        raise ConfigError(
            f"dataset {spec!r} is invalid: use random, shared-prefix[:N,LEN], jsonl:PATH or sharegpt:PATH"
        )
    if not sep:
        return cls, None
    if not Path(path).is_file():
        raise ConfigError(f"dataset file {path!r} does not exist: give the path of a {kind} file")
    return cls, Path(path)


def load_dataset(config: BenchConfig) -> Dataset:
    """The dataset of a config, loaded (file datasets are read and checked now)."""
    cls, path = check_dataset_spec(config.dataset)
    return cls.from_config(config, path)
