"""Per-request sampling parameters, with vLLM's names and meanings."""

from __future__ import annotations

from dataclasses import dataclass, field

from seekserve.errors import InvalidRequestError

__all__ = ["MAX_LOGPROBS", "SamplingParams"]

MAX_LOGPROBS = 20
"""Most alternatives per position that `logprobs` may ask for (OpenAI's limit)."""


@dataclass
class SamplingParams:
    """How to pick each next token and when to stop.

    Greedy decoding is `temperature=0`. Invalid values raise `InvalidRequestError` naming the
    field, its value and the allowed range.
    """

    n: int = 1
    """Completions to generate for the prompt."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p; in (0, 1]."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 or -1 disables."""
    min_p: float = 0.0
    """Drop tokens whose probability is below min_p times the top token's; in [0, 1]."""
    seed: int | None = None
    """Per-request seed: the same seed, prompt and parameters give the same output."""
    presence_penalty: float = 0.0
    """Subtracted once from the logit of every token already generated; in [-2, 2]."""
    frequency_penalty: float = 0.0
    """Subtracted from a token's logit per time it was generated; in [-2, 2]."""
    repetition_penalty: float = 1.0
    """Divides positive (multiplies negative) logits of tokens in the prompt or output; > 0."""
    stop: list[str] = field(default_factory=list)
    """Strings that end the completion; the text is cut before them."""
    stop_token_ids: list[int] = field(default_factory=list)
    """Token ids that end the completion besides the model's end-of-sequence tokens."""
    include_stop_str_in_output: bool = False
    """Keep the matched stop string at the end of the text."""
    max_tokens: int | None = 16
    """Most tokens to generate; None means up to the context length."""
    min_tokens: int = 0
    """Tokens to generate before end-of-sequence and stop token ids may end the completion."""
    ignore_eos: bool = False
    """Keep generating past end-of-sequence tokens."""
    logprobs: int | None = None
    """Return the sampled token's log-probability and this many most likely alternatives."""
    skip_special_tokens: bool = True
    """Leave special tokens out of the text."""

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop)
        self.stop_token_ids = list(self.stop_token_ids)
        self._validate()

    def _validate(self) -> None:
        checks: list[tuple[bool, str, str]] = [
            (self.n >= 1, "n", "must be at least 1"),
            (self.temperature >= 0.0, "temperature", "must be >= 0 (0 means greedy)"),
            (0.0 < self.top_p <= 1.0, "top_p", "must be in (0, 1]"),
            (self.top_k >= -1, "top_k", "must be -1 or 0 (disabled) or a positive count"),
            (0.0 <= self.min_p <= 1.0, "min_p", "must be in [0, 1]"),
            (-2.0 <= self.presence_penalty <= 2.0, "presence_penalty", "must be in [-2, 2]"),
            (-2.0 <= self.frequency_penalty <= 2.0, "frequency_penalty", "must be in [-2, 2]"),
            (0.0 < self.repetition_penalty <= 2.0, "repetition_penalty", "must be in (0, 2]"),
            (self.max_tokens is None or self.max_tokens >= 1, "max_tokens", "must be at least 1"),
            (self.min_tokens >= 0, "min_tokens", "must be >= 0"),
            (
                self.max_tokens is None or self.min_tokens <= self.max_tokens,
                "min_tokens",
                f"must not exceed max_tokens={self.max_tokens}",
            ),
            (
                self.logprobs is None or 0 <= self.logprobs <= MAX_LOGPROBS,
                "logprobs",
                f"must be between 0 and {MAX_LOGPROBS}",
            ),
            (all(isinstance(s, str) and s for s in self.stop), "stop", "must be non-empty strings"),
            (all(t >= 0 for t in self.stop_token_ids), "stop_token_ids", "must be token ids >= 0"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise InvalidRequestError(f"{name}={getattr(self, name)!r} is invalid: it {rule}", param=name)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def has_penalties(self) -> bool:
        return self.presence_penalty != 0.0 or self.frequency_penalty != 0.0 or self.repetition_penalty != 1.0

    @property
    def max_stop_len(self) -> int:
        return max((len(s) for s in self.stop), default=0)
