"""Latency that web-search grounding adds to a chat request, phase by phase.

    python benchmarks/search_latency.py                   # both providers, prefill on the default model
    python benchmarks/search_latency.py --requests 100 --no-prefill

Offline: the local BM25 provider over a folder of 300 generated documents plus the test article
(index built before timing). SearXNG: the tests' SearXNG fake and local web of pages on loopback
(5 results, each page fetched under the SSRF rules and extracted). Each grounding runs alone, one
after the other, so the figures are per request, not under load. Prefill: the default model
(Gemma 3 270M) fed the plain chat prompt and the grounded one, 1 token generated; the difference
is the longer prefill. Prints a table and writes results/search_latency.json (with the load average,
since the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, machine, percentile, print_table, write_json

sys.path.insert(0, str(REPO / "tests"))

from search.web import ARTICLE_HTML, FakeSearx, local_web, serving
from seekserve.env import Environment
from seekserve.search.config import ProviderKind, SearchConfig
from seekserve.search.extract import extractor_name
from seekserve.search.fetch import Fetcher
from seekserve.search.grounding import Grounder, Grounding
from seekserve.search.prompt import PromptStyle, grounded_messages
from seekserve.search.providers import LocalProvider, make_provider

QUESTIONS = [
    "How many rivets were replaced on the Kestrel Bridge?",
    "Who designed the Kestrel Bridge?",
    "When does the ferry leave?",
    "How many vehicles cross the bridge each day?",
    "What is the council planning for next spring?",
]
WORDS = (
    "river",
    "harbour",
    "bridge",
    "council",
    "festival",
    "engineer",
    "railway",
    "market",
    "lighthouse",
    "ferry",
    "school",
    "museum",
    "library",
    "mill",
    "canal",
    "station",
    "tower",
    "garden",
    "chapel",
    "castle",
    "bakery",
    "orchard",
    "quarry",
    "meadow",
)
PHASES = ("search", "fetch", "extract", "total")


def write_folder(folder: Path, num_docs: int) -> None:
    rng = random.Random(0)
    (folder / "kestrel.html").write_text(ARTICLE_HTML)
    for i in range(num_docs):
        sentences = [" ".join(rng.choices(WORDS, k=12)).capitalize() + "." for _ in range(40)]
        (folder / f"doc{i:03d}.txt").write_text(f"Document {i}\n" + " ".join(sentences))


def phase_times(groundings: list[Grounding]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {p: [] for p in PHASES}
    for g in groundings:
        assert g.error is None, g.error
        t = g.timings
        for phase, value in zip(PHASES, (t.search_s, t.fetch_s, t.extract_s, t.total_s), strict=True):
            out[phase].append(value)
    return out


async def offline(num_requests: int) -> tuple[dict[str, list[float]], Grounding]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        write_folder(folder, 300)
        config = SearchConfig(search_dir=folder)
        env = Environment.read({**os.environ, "SEEKSERVE_HOME": str(Path(tmp) / "home")})
        async with make_provider(config, env) as provider, Fetcher(config) as fetcher:
            assert isinstance(provider, LocalProvider)
            await provider.load_index()
            grounder = Grounder(config, provider, fetcher)
            runs = [await grounder.ground(QUESTIONS[i % len(QUESTIONS)]) for i in range(num_requests)]
    return phase_times(runs), runs[0]


async def searxng(num_requests: int) -> dict[str, list[float]]:
    async with serving(local_web()) as web_port:
        base = f"http://127.0.0.1:{web_port}"
        paths = ["/article", "/plain", "/notes.md", "/hops/1", "/relative"]
        results = [{"url": base + p, "title": p, "content": "snippet"} for p in paths]
        async with serving(FakeSearx(results=results).app()) as searx_port:
            config = SearchConfig(
                provider=ProviderKind.SEARXNG,
                searxng_url=f"http://127.0.0.1:{searx_port}",
                allow_hosts=("127.0.0.1",),
            )
            async with make_provider(config, Environment.read()) as provider, Fetcher(config) as fetcher:
                grounder = Grounder(config, provider, fetcher)
                runs = [await grounder.ground(QUESTIONS[i % len(QUESTIONS)]) for i in range(num_requests)]
    return phase_times(runs)


def prefill(grounding: Grounding, rounds: int) -> dict[str, Any]:
    """Seconds to the first token of the plain and the grounded prompt on the default model."""
    from seekserve import LLM, SamplingParams

    llm = LLM(enable_prefix_caching=False)  # every round prefills the whole prompt
    tokenizer = llm.get_tokenizer()
    messages = [{"role": "user", "content": grounding.query}]
    grounded = grounded_messages(messages, grounding, PromptStyle.NUMBERED, today=datetime.date.today())
    out: dict[str, Any] = {}
    for name, conversation in (("plain", messages), ("grounded", grounded)):
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        ids = tokenizer.encode(text, add_special_tokens=False)
        params = SamplingParams(temperature=0, max_tokens=1)
        llm.generate(ids, params)  # warm-up
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            llm.generate(ids, params)
            times.append(time.perf_counter() - start)
        out[name] = {
            "prompt_tokens": len(ids),
            "p50_s": percentile(times, 50),
            "p95_s": percentile(times, 95),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=50, help="groundings per provider")
    parser.add_argument("--prefill-rounds", type=int, default=5)
    parser.add_argument("--no-prefill", action="store_true", help="skip the model (no prefill figures)")
    args = parser.parse_args()
    extractor = extractor_name()
    local_times, sample = asyncio.run(offline(args.requests))
    searx_times = asyncio.run(searxng(args.requests))
    rows, phases = [], {}
    for provider, times in (("local", local_times), ("searxng-fake", searx_times)):
        for phase in PHASES:
            p50, p95 = percentile(times[phase], 50) * 1e3, percentile(times[phase], 95) * 1e3
            rows.append([provider, phase, p50, p95])
            phases[f"{provider}/{phase}"] = {"p50_ms": p50, "p95_ms": p95}
    payload: dict[str, Any] = {
        "machine": {**machine(), "loadavg": os.getloadavg()},
        "extractor": extractor,
        "requests": args.requests,
        "phases": phases,
    }
    if not args.no_prefill:
        pre = prefill(sample, args.prefill_rounds)
        payload["prefill"] = pre
        for name in ("plain", "grounded"):
            p = pre[name]
            rows.append(
                [f"prefill {name} ({p['prompt_tokens']} tok)", "ttft", p["p50_s"] * 1e3, p["p95_s"] * 1e3]
            )
        added = (pre["grounded"]["p50_s"] - pre["plain"]["p50_s"]) * 1e3
        rows.append(["prefill added", "ttft", added, float("nan")])
    print_table(
        f"search grounding latency, ms ({extractor} extractor)", ["provider", "phase", "p50", "p95"], rows
    )
    write_json(REPO / "results" / "search_latency.json", payload)


if __name__ == "__main__":
    main()
