"""The gateway under random faults: every request ends with the exact answer or a clear error, none hangs.

Four fake engines serve model "fake", one serves its fallback "lite" (another seed: other text).
While ~300 concurrent requests run (streaming or not, chat or completions, greedy), each engine's
faults are redrawn from a seeded RNG every 20-80 ms: crashes mid-stream, 500/429/503 bursts (with
Retry-After), connection resets before any header, slow starts and stalls. Each request must
either complete (200, `[DONE]` for streams) with exactly the text an uninterrupted greedy run of
the model that answered gives, or end with an OpenAI error (a non-200 JSON error, or a stream's
final error event after a strict prefix of that text, without `[DONE]`). Afterwards no backend
holds a request and the admission queue is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.fake_upstream import FakeEngine, Faults, chat_prompt, detok, generate, running, tokenize
from gateway.harness import config_for, read_sse, running_gateway, stream_text

SEED = 20261128
NUM_REQUESTS = 300
NUM_FAKE_ENGINES = 4
CLIENT_TIMEOUT_S = 30.0
SPREAD_S = 1.5
"""Requests start at random times in [0, SPREAD_S), so faults switch while they run."""
LITE_SEED = 7
FAULT_KINDS = ("none", "cut", "500", "429", "503", "reset", "slow", "stall")
FAULT_WEIGHTS = (8, 1.5, 0.3, 0.5, 0.5, 1, 1, 1.5)
"""An engine is healthy 56 % of the time; the rest, one fault kind."""
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "mu", "pi")


@dataclass(frozen=True)
class Case:
    index: int
    chat: bool
    stream: bool
    usage: bool
    leaves: bool
    """A streaming client that goes away after the first event."""
    prompt: str
    max_tokens: int
    start_s: float

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.chat else "/v1/completions"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": "fake", "max_tokens": self.max_tokens, "temperature": 0}
        if self.chat:
            body["messages"] = self.messages()
        else:
            body["prompt"] = self.prompt
        if self.stream:
            body["stream"] = True
            if self.usage:
                body["stream_options"] = {"include_usage": True}
        return body

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}]

    def prompt_ids(self) -> list[int]:
        return chat_prompt(self.messages()) if self.chat else tokenize(self.prompt)

    def expected(self, model: str) -> str:
        return detok(generate(self.prompt_ids(), self.max_tokens, LITE_SEED if model == "lite" else 0))


def make_cases(rng: random.Random) -> list[Case]:
    return [
        Case(
            index=i,
            chat=rng.random() < 0.5,
            stream=rng.random() < 0.7,
            usage=rng.random() < 0.5,
            leaves=rng.random() < 0.08,
            prompt=" ".join(rng.choices(WORDS, k=rng.randint(1, 12))),
            max_tokens=rng.randint(1, 20),
            start_s=rng.uniform(0, SPREAD_S),
        )
        for i in range(NUM_REQUESTS)
    ]


def random_faults(rng: random.Random) -> Faults:
    faults = one_fault(rng)
    faults.itl_s = rng.choice([0.0, 0.01])
    return faults


def one_fault(rng: random.Random) -> Faults:
    kind = rng.choices(FAULT_KINDS, FAULT_WEIGHTS)[0]
    if kind == "cut":
        return Faults(cut_after=rng.randint(0, 6))
    if kind in ("500", "429", "503"):
        retry_after = rng.choice(["0", "1", None, None]) if kind != "500" else None
        return Faults(statuses=[int(kind)] * rng.randint(1, 6), retry_after=retry_after)
    if kind == "reset":
        return Faults(reset=True)
    if kind == "slow":
        # past timeouts.first_byte_s (1 s) now and then: no headers in time
        return Faults(first_delay_s=rng.uniform(0.05, 1.3), cut_after=rng.choice([None, 3]))
    if kind == "stall":
        return Faults(stall_after=rng.randint(0, 5))
    return Faults()


async def switch_faults(engines: list[FakeEngine], rng: random.Random, stop: asyncio.Event) -> None:
    """Redraw each engine's faults every 20-80 ms until `stop`, then leave every engine healthy."""
    while not stop.is_set():
        for engine in engines:
            engine.faults = random_faults(rng)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(0.02, 0.08))
    for engine in engines:
        engine.faults = Faults()


def check_json(case: Case, status: int, headers: dict[str, str], data: bytes) -> str:
    """The outcome of a non-streaming request; raises AssertionError when it is neither right nor clear."""
    body = json.loads(data)
    if status != 200:
        assert isinstance(body["error"]["message"], str), body
        return f"json http {status}"
    model = headers.get("x-seekserve-fallback", "fake")
    choice = body["choices"][0]
    text = choice["message"]["content"] if case.chat else choice["text"]
    assert text == case.expected(model), (text, case.expected(model))
    assert body["model"] == model and body["usage"]["completion_tokens"] == case.max_tokens, body
    return f"json ok ({model})"


def check_stream(case: Case, status: int, headers: dict[str, str], data: bytes) -> str:
    """The outcome of a streaming request; raises AssertionError when it is neither right nor clear."""
    if status != 200:
        assert isinstance(json.loads(data)["error"]["message"], str), data
        return f"stream http {status}"
    model = headers.get("x-seekserve-fallback", "fake")
    events, done = read_sse(data)
    expected = case.expected(model)
    if not done:
        assert isinstance(events[-1]["error"]["message"], str), events[-1:]
        text = stream_text(events[:-1])
        assert expected.startswith(text) and len(text) < len(expected), (text, expected)
        return "stream error event"
    assert stream_text(events) == expected, (stream_text(events), expected)
    assert len({e["id"] for e in events}) == 1, [e["id"] for e in events]
    kind = "chat.completion.chunk" if case.chat else "text_completion"
    assert all(e["object"] == kind for e in events), [e["object"] for e in events]
    finishes = [c["finish_reason"] for e in events for c in e["choices"] if c.get("finish_reason")]
    assert finishes == ["length"], finishes
    if case.usage:
        usage = events[-1]["usage"]
        assert usage["completion_tokens"] == case.max_tokens, usage
        assert usage["prompt_tokens"] == len(case.prompt_ids()), usage
    return f"stream ok ({model})"


async def run_case(client: aiohttp.ClientSession, url: str, case: Case) -> str:
    await asyncio.sleep(case.start_s)
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            async with client.post(url + case.path, json=case.body()) as response:
                if case.leaves and response.status == 200:
                    await response.content.readline()
                    return "stream left by the client"
                status, headers, data = response.status, dict(response.headers), await response.read()
    except TimeoutError:
        return "HUNG"
    check = check_stream if case.stream else check_json
    try:
        return check(case, status, headers, data)
    except (AssertionError, KeyError, IndexError, ValueError) as exc:
        return f"WRONG #{case.index} {case}: {type(exc).__name__} {exc} | {status} {data[-600:]!r}"


def counter_total(metrics_text: str, name: str, label: str) -> float:
    """The sum of a counter's samples whose labels contain `label`, from Prometheus text."""
    prefix = f"seekserve:gateway_{name}_total{{"
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith(prefix) and label in line
    )


def test_every_request_ends_exact_or_with_a_clear_error_under_random_faults() -> None:
    async def main() -> Counter[str]:
        rng = random.Random(SEED)
        fakes = [FakeEngine(f"f{i}") for i in range(NUM_FAKE_ENGINES)]
        lite = FakeEngine("lite", model="lite", seed=LITE_SEED)
        engines = [*fakes, lite]
        backends = [{"name": e.name, "url": e.url, "max_concurrency": 12} for e in engines]
        config = config_for(
            [],
            backends=backends,
            models={"fake": {"fallback": ["lite"]}},
            retry={"attempts": 3, "base_s": 0.005, "max_s": 0.05},
            breaker={"consecutive_failures": 3, "cooldown_s": 0.2, "max_cooldown_s": 0.8},
            timeouts={"inter_token_s": 0.3, "first_byte_s": 1.0},
            queue={"max_waiting": 64, "max_wait_s": 3.0},
            access_log=False,
        )
        cases = make_cases(rng)
        stop = asyncio.Event()
        client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async with running(*engines), running_gateway(config) as gw, client:
            chaos = asyncio.ensure_future(switch_faults(engines, random.Random(SEED + 1), stop))
            outcomes = await asyncio.gather(*(run_case(client, gw.url, case) for case in cases))
            stop.set()
            await chaos
            state = gw.app.state
            for _ in range(500):  # a request that lost its client may still be waiting or backing off
                if all(b.in_flight == 0 for b in state.pool) and state.admission.num_waiting == 0:
                    break
                await asyncio.sleep(0.01)
            assert {b.name: b.in_flight for b in state.pool} == {e.name: 0 for e in engines}
            assert state.admission.num_waiting == 0
            metrics = gw.app.metrics.render().decode()
        wrong = [o for o in outcomes if o.startswith(("WRONG", "HUNG"))]
        assert wrong == [], "\n".join(wrong[:10])
        mix = Counter(outcomes)
        mix["(continued streams)"] = int(counter_total(metrics, "continued_streams", 'outcome="continued"'))
        mix["(streams not continued)"] = int(counter_total(metrics, "continued_streams", 'outcome="failed"'))
        mix["(fallbacks)"] = int(counter_total(metrics, "fallbacks", 'fallback="lite"'))
        mix["(retries)"] = int(counter_total(metrics, "retries", ""))
        return mix

    mix = asyncio.run(main())
    print("\nchaos outcome mix:", dict(sorted(mix.items())))
    assert sum(n for o, n in mix.items() if not o.startswith("(")) == NUM_REQUESTS
    # The faults really were met: streams broke mid-way, requests were retried and fell back.
    assert mix["(continued streams)"] + mix["(streams not continued)"] > 0, mix
    assert mix["(fallbacks)"] > 0 and mix["(retries)"] > 0, mix
    assert mix["stream ok (fake)"] > 0 and mix["json ok (fake)"] > 0, mix


# Regressions of what the chaos test found, each on its own.


def test_stream_cut_between_its_last_token_and_usage_still_gets_its_usage() -> None:
    async def main() -> None:
        a = FakeEngine("a", faults=Faults(cut_after=5))  # chunks 0-4 carry the 5 tokens, 5 is the usage
        body = {"model": "fake", "prompt": "one two three", "max_tokens": 5, "stream": True}
        body["stream_options"] = {"include_usage": True}
        async with running(a), running_gateway(config_for([a.url])) as gw:
            status, _, data = await gw.post("/v1/completions", body)
            events, done = read_sse(data)
            assert status == 200 and done
            assert stream_text(events) == detok(generate(tokenize("one two three"), 5))
            assert events[-1] == {
                "id": "a-1",
                "object": "text_completion",
                "created": 1,
                "model": "fake",
                "choices": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
            }

    asyncio.run(main())


def test_exhausted_fallback_chain_names_every_model_that_failed() -> None:
    async def main() -> None:
        big = FakeEngine("big", model="big", faults=Faults(statuses=[503] * 3))
        small = FakeEngine("small", model="small", faults=Faults(statuses=[503] * 3))
        config = config_for([big.url, small.url], models={"big": {"fallback": ["small"]}})
        async with running(big, small), running_gateway(config) as gw:
            status, _, data = await gw.post("/v1/completions", {"model": "big", "prompt": "x"})
            injected = '{"error": {"message": "injected 503"}}'
            assert status == 503
            assert json.loads(data)["error"]["message"] == (
                f"model 'big' could not be served: last error backend b0: HTTP 503: {injected}; "
                f"then model 'small' could not be served: last error backend b1: HTTP 503: {injected}"
            )

    asyncio.run(main())


def test_stream_silent_before_its_first_event_names_its_backend_once() -> None:
    async def main() -> None:
        a = FakeEngine("a", faults=Faults(stall_after=0))
        config = config_for([a.url], retry={"attempts": 1}, timeouts={"first_byte_s": 0.2})
        async with running(a), running_gateway(config) as gw:
            body = {"model": "fake", "prompt": "x", "stream": True}
            status, _, data = await gw.post("/v1/completions", body)
            assert status == 502
            assert json.loads(data)["error"]["message"] == (
                "model 'fake' could not be served: last error backend b0: no event for 0.2 s (stalled)"
            )

    asyncio.run(main())
