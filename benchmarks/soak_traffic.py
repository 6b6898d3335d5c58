"""The soak's requests (benchmarks/soak.py): what is sent, and what each answer counts as.

Every request is a `Case` (a kind, a path, a body, a key, and where its client leaves, if it does)
and ends as exactly one `Result`:

    complete      200 and a whole answer: every choice (n of them) finished with stop or length,
                  a stream ended with [DONE], usage and log-probabilities where asked for
    error         an OpenAI error (a JSON {"error": {"message", "type", ...}} with a non-200 status);
                  `expected` when the case may get it: 400 for a prompt past max_model_len, 429 or 503
                  for overload, a full queue or a key's rate limit
    disconnected  the client left on purpose (before the first token, mid-stream, or while queued)
    lost          anything else: no answer within CLIENT_TIMEOUT_S, a cut connection, a stream that
                  stops without [DONE], a malformed or incomplete body, an error event in a stream
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from soak_stack import LIMITED_KEY, MAIN_KEY, MODEL

CLIENT_TIMEOUT_S = 300.0
WORDS = (
    "river", "stone", "light", "market", "garden", "winter", "paper", "window", "silver", "forest",
    "letter", "engine", "harbor", "signal", "candle", "mountain", "orange", "village", "thunder",
    "bridge", "pocket", "island", "shadow", "castle", "mirror", "planet", "basket", "ladder", "meadow",
    "rocket", "violin", "marble", "feather", "compass", "lantern", "anchor", "blanket", "cactus",
    "dragon", "falcon", "glacier", "helmet", "jungle", "kettle", "lemon", "magnet", "needle", "ocean",
    "pepper", "quartz", "saddle", "tunnel", "umbrella", "wagon",
)  # fmt: skip
SYSTEM_PROMPTS = 6
"""Long prompts start with one of these, so the engines' prefix caches share blocks across requests."""


@dataclass(frozen=True)
class Case:
    index: int
    kind: str
    """normal, limited, too_long, near_limit, burst, leave_first, leave_mid, leave_queued, probe."""
    path: str
    body: dict[str, Any]
    key: str = MAIN_KEY
    leave_after_s: float | None = None
    """The client goes away this long after sending, whatever it has received by then."""
    leave_after_events: int | None = None
    """The client goes away after this many stream events."""

    @property
    def request_id(self) -> str:
        return f"soak-{self.index}"

    @property
    def leaves(self) -> bool:
        return self.leave_after_s is not None or self.leave_after_events is not None


@dataclass
class Result:
    index: int
    kind: str
    start_s: float
    end_s: float = 0.0
    status: int = 0
    outcome: str = "lost"
    detail: str = ""
    expected: bool = False
    backend: str = ""
    cache_hit: bool = False
    ttft_s: float | None = None
    tpot_s: float | None = None
    events: int = 0
    retry_after_s: float | None = None
    """An error's Retry-After: the client waits that long before its next request, as SDKs do."""


@dataclass
class Prompts:
    """Text and token-id prompts sized for the served model (`tokens_per_word` measured at start)."""

    rng: random.Random
    max_model_len: int
    tokens_per_word: float
    systems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        words = int(0.3 * self.max_model_len / self.tokens_per_word)
        self.systems = [self.words(words, seed=i) for i in range(SYSTEM_PROMPTS)]

    def words(self, count: int, seed: int | None = None) -> str:
        rng = self.rng if seed is None else random.Random(seed)
        return " ".join(rng.choice(WORDS) for _ in range(max(count, 1)))

    def text(self, long: bool) -> str:
        if not long:
            return self.words(self.rng.randint(5, 30))
        question = self.words(int(self.rng.uniform(0.05, 0.2) * self.max_model_len / self.tokens_per_word))
        return f"{self.rng.choice(self.systems)}\n\nQuestion: {question}"

    def ids(self, count: int) -> list[int]:
        """Token ids valid in any vocabulary of 384 or more."""
        return [self.rng.randint(10, 300) for _ in range(count)]


def sampling(rng: random.Random, body: dict[str, Any], chat: bool) -> None:
    """n, temperature and seed, stop strings and log-probabilities, drawn for a normal request."""
    body["max_tokens"] = rng.randint(8, 64)
    body["n"] = rng.choices([1, 2, 3], [80, 15, 5])[0]
    draw = rng.random()
    if draw < 0.5:
        body["temperature"] = 0  # cacheable: repeats hit the gateway's cache
    else:
        body["temperature"] = 0.8
        if draw < 0.75:
            body["seed"] = rng.randint(0, 1 << 30)
    if rng.random() < 0.2:
        body["stop"] = [". ", "\n"]
    if rng.random() < 0.15:
        body.update({"logprobs": True, "top_logprobs": 2} if chat else {"logprobs": 2})


def make_case(index: int, kind: str, prompts: Prompts) -> Case:
    rng = prompts.rng
    chat = kind not in ("too_long", "near_limit") and rng.random() < 0.5
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body: dict[str, Any] = {"model": MODEL}
    long = kind == "normal" and rng.random() < 0.3
    if kind == "too_long":
        body["prompt"] = prompts.ids(prompts.max_model_len + rng.randint(1, 50))
    elif kind == "near_limit":  # no max_tokens: the default fills the context, which ends it (length)
        body["prompt"] = prompts.ids(prompts.max_model_len - rng.randint(2, 12))
    elif chat:
        body["messages"] = [{"role": "user", "content": prompts.text(long)}]
    else:
        body["prompt"] = prompts.text(long)
    if kind in ("normal", "limited"):
        sampling(rng, body, chat)
    elif kind in ("burst", "leave_queued"):
        body["max_tokens"] = 4
    body["stream"] = kind in ("leave_first", "leave_mid") or (kind != "burst" and rng.random() < 0.5)
    if body["stream"] and rng.random() < 0.5:
        body["stream_options"] = {"include_usage": True}
    if kind in ("leave_first", "leave_mid", "leave_queued"):
        body.setdefault("max_tokens", 48)
        body["cache"] = False
    leave_s = {"leave_first": rng.uniform(0.01, 0.3), "leave_queued": rng.uniform(0.05, 1.0)}.get(kind)
    leave_events = rng.randint(1, 10) if kind == "leave_mid" else None
    key = LIMITED_KEY if kind == "limited" else MAIN_KEY
    return Case(index, kind, path, body, key, leave_s, leave_events)


def probe_case(index: int) -> Case:
    """The same greedy stream every time, never cached: its latency is comparable across the run."""
    body = {
        "model": MODEL, "prompt": "Describe the river, the stone and the light in a few words.",
        "max_tokens": 16, "temperature": 0, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True}, "cache": False,
    }  # fmt: skip
    return Case(index, "probe", "/v1/completions", body)


async def send(session: aiohttp.ClientSession, url: str, case: Case, t0: float) -> Result:
    """Send the case and classify what came back; never raises."""
    result = Result(case.index, case.kind, time.monotonic() - t0)
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            if case.leave_after_s is None:
                await _exchange(session, url, case, result)
            else:
                try:
                    async with asyncio.timeout(case.leave_after_s):
                        await _exchange(session, url, case, result)
                except TimeoutError:
                    result.outcome, result.detail = "disconnected", f"left after {result.events} events"
    except TimeoutError:
        result.outcome, result.detail = "lost", f"no answer within {CLIENT_TIMEOUT_S:g} s"
    except (aiohttp.ClientError, ValueError) as e:
        result.outcome, result.detail = "lost", f"{type(e).__name__}: {e}"[:300]
    result.end_s = time.monotonic() - t0
    result.expected = expected(case, result)
    return result


def expected(case: Case, result: Result) -> bool:
    """Whether the outcome is one this case may have: a prompt past max_model_len must get 400,
    anything may be shed (429, 503) under load or by its key's limit, and a client may leave."""
    if result.outcome == "disconnected":
        return True
    if result.outcome == "error" and result.status in (429, 503):
        return True
    if case.kind == "too_long":
        return result.outcome == "error" and result.status == 400
    return result.outcome == "complete"


async def _exchange(session: aiohttp.ClientSession, url: str, case: Case, result: Result) -> None:
    headers = {"Authorization": f"Bearer {case.key}", "x-request-id": case.request_id}
    sent = time.monotonic()
    async with session.post(url + case.path, json=case.body, headers=headers) as response:
        result.status = response.status
        result.backend = response.headers.get("x-seekserve-backend", "")
        result.cache_hit = response.headers.get("x-seekserve-cache") == "hit"
        retry_after = response.headers.get("Retry-After", "")
        result.retry_after_s = float(retry_after) if retry_after.isdigit() else None
        if response.status != 200:
            _classify_error(await response.read(), result)
        elif not case.body["stream"]:
            problem = check_answer(case, json.loads(await response.read()))
            result.outcome, result.detail = ("lost", problem) if problem else ("complete", "")
        else:
            await _read_stream(response, case, result, sent)


def _classify_error(data: bytes, result: Result) -> None:
    try:
        error = json.loads(data)["error"]
        assert isinstance(error["message"], str) and isinstance(error["type"], str), "error fields"
    except (ValueError, KeyError, TypeError, AssertionError):
        result.outcome, result.detail = "lost", f"{result.status} without an OpenAI error: {data[:200]!r}"
        return
    result.outcome, result.detail = "error", f"{result.status} {error.get('code') or error['type']}"


async def _read_stream(response: aiohttp.ClientResponse, case: Case, result: Result, sent: float) -> None:
    chunks: list[dict[str, Any]] = []
    done, first, last = False, None, None
    async for line in response.content:
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            continue
        chunk = json.loads(payload)
        chunks.append(chunk)
        result.events += 1
        if _has_text(chunk):
            last = time.monotonic()
            first = first or last
        if case.leave_after_events is not None and result.events >= case.leave_after_events:
            response.close()
            result.outcome, result.detail = "disconnected", f"left after {result.events} events"
            return
    if first is not None and last is not None:
        result.ttft_s = first - sent
        tokens = next((c["usage"]["completion_tokens"] for c in chunks if c.get("usage")), 0)
        if tokens > 1:
            result.tpot_s = (last - first) / (tokens - 1)
    problem = check_stream(case, chunks, done)
    result.outcome, result.detail = ("lost", problem) if problem else ("complete", "")


def _has_text(chunk: dict[str, Any]) -> bool:
    return any(c.get("text") or (c.get("delta") or {}).get("content") for c in chunk.get("choices") or ())


def check_answer(case: Case, answer: dict[str, Any]) -> str | None:
    """What is wrong with a whole (non-streamed) answer, or None."""
    choices = answer.get("choices") or []
    n = case.body.get("n", 1)
    if sorted(c.get("index") for c in choices) != list(range(n)):
        return f"{len(choices)} choices for n={n}"
    if any(c.get("finish_reason") not in ("stop", "length") for c in choices):
        return f"finish reasons {[c.get('finish_reason') for c in choices]}"
    if "usage" not in answer:
        return "no usage"
    if case.body.get("logprobs") and any(c.get("logprobs") is None for c in choices):
        return "log-probabilities asked for and missing"
    return None


def check_stream(case: Case, chunks: list[dict[str, Any]], done: bool) -> str | None:
    """What is wrong with a finished stream, or None."""
    errors = [c["error"] for c in chunks if "error" in c]
    if errors:
        return f"error event: {str(errors[0])[:200]}"
    if not done:
        return f"ended without [DONE] after {len(chunks)} events"
    finished = {c.get("index") for ch in chunks for c in ch.get("choices") or () if c.get("finish_reason")}
    n = case.body.get("n", 1)
    if finished != set(range(n)):
        return f"finish reasons for choices {sorted(finished)} of n={n}"
    if (case.body.get("stream_options") or {}).get("include_usage") and not any(
        c.get("usage") for c in chunks
    ):
        return "include_usage asked for and no usage chunk"
    if case.body.get("logprobs") and not any(
        c.get("logprobs") for ch in chunks for c in ch.get("choices") or ()
    ):
        return "log-probabilities asked for and missing"
    return None
