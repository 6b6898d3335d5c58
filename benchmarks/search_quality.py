"""Grounded-answer quality: questions whose answers are only in a local folder of pages, asked of
`seekserve serve` without search, with search on the last message as written, and with search on
queries the served model writes (--search-queries model).

    python benchmarks/search_quality.py [--model DIR|FILE.gguf] [--max-tokens 48] [--out FILE]

Scored per question: `retrieved` (the first search result is the page with the fact: what the
queries found, whatever the model then writes), `fact` (the answer contains the fact), `cited`
(an annotation of the answer points at that page). Half the set are follow-ups whose subject is
only in an earlier turn ("Who runs it?"): the last message alone cannot find their page. The
pages and facts are made up, so no model knows them beforehand. Greedy decoding; the server
runs the default model unless --model is given. Writes JSON (default results/search_quality.json).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import machine, print_table, write_json
from seekserve.bench.servers import ManagedServer, ServerSpec

PAGES = {
    "kestrel-bridge.md": "# The Kestrel Bridge\n\nThe Kestrel Bridge over the river Lune reopened on 14 "
    "March 2026 after repairs. Engineers replaced 412 rivets of the main span. The bridge was designed by "
    "Margaret Holloway and first opened in 1887.\n",
    "glasson-ferry.md": "# The Glasson ferry\n\nThe Glasson ferry leaves Sunderland Point every morning at "
    "07:15. A single ticket costs 3 pounds 40. The ferry boat is called the Marsh Wren.\n",
    "brackenfield-orchard.md": "# Brackenfield orchard\n\nBrackenfield orchard grows 37 varieties of apple. "
    "Its oldest tree, a Keswick Codlin, was planted in 1911. The orchard's cider is sold under the name "
    "Old Hollow.\n",
    "pendle-rise-observatory.md": "# Pendle Rise observatory\n\nThe Pendle Rise observatory has a "
    "61-centimetre reflecting telescope. It opens to visitors on Thursday evenings. Its director is "
    "Dr Ayesha Kader.\n",
    "wyre-valley-choir.md": "# The Wyre Valley choir\n\nThe Wyre Valley choir has 48 singers. It was "
    "founded in 1973 by the organist Thomas Gale. Its winter concert is held in St Michael's church.\n",
}


@dataclass(frozen=True)
class Question:
    messages: tuple[tuple[str, str], ...]
    """(role, content) turns, the question last."""
    facts: tuple[str, ...]
    """Any of these in the answer (case-insensitive) counts."""
    page: str

    @property
    def follow_up(self) -> bool:
        return len(self.messages) > 1


def ask(question: str, facts: tuple[str, ...], page: str) -> Question:
    return Question((("user", question),), facts, page)


def follow_up(topic: str, reply: str, question: str, facts: tuple[str, ...], page: str) -> Question:
    return Question((("user", topic), ("assistant", reply), ("user", question)), facts, page)


QUESTIONS = (
    ask("How many rivets were replaced on the Kestrel Bridge?", ("412",), "kestrel-bridge.md"),
    ask("Who designed the Kestrel Bridge?", ("Holloway",), "kestrel-bridge.md"),
    ask("What time does the Glasson ferry leave?", ("07:15", "7:15"), "glasson-ferry.md"),
    ask("How many apple varieties does Brackenfield orchard grow?", ("37",), "brackenfield-orchard.md"),
    ask("How many singers does the Wyre Valley choir have?", ("48",), "wyre-valley-choir.md"),
    follow_up("Tell me about the Glasson ferry.", "It crosses the bay.", "And what do they call the vessel?",
              ("Marsh Wren",), "glasson-ferry.md"),
    follow_up("I want to visit Pendle Rise observatory.", "It is a small observatory on a hill.",
              "Who runs it?", ("Kader",), "pendle-rise-observatory.md"),
    follow_up("I heard the Wyre Valley choir sing last week.", "They are a local choir.",
              "When did it start?", ("1973",), "wyre-valley-choir.md"),
    follow_up("Tell me about Brackenfield orchard.", "It is an orchard near the river.",
              "What do they call their drink?", ("Old Hollow",), "brackenfield-orchard.md"),
    follow_up("Tell me about the Kestrel Bridge.", "It crosses the Lune.", "How old is it?",
              ("1887",), "kestrel-bridge.md"),
)  # fmt: skip
MODES = ("no search", "search: last message", "search: model-written queries")


def post(base_url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        base_url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return dict(json.load(response))


def score(q: Question, answer: dict[str, Any], searched: bool) -> dict[str, Any]:
    message = answer["choices"][0]["message"]
    text = message.get("content") or ""
    results = answer.get("search_results") or []
    cited = [a["url_citation"]["url"] for a in message.get("annotations") or []]
    return {
        "question": q.messages[-1][1],
        "follow_up": q.follow_up,
        "answer": text,
        "retrieved": bool(results) and results[0]["url"].endswith("/" + q.page) if searched else None,
        "fact": any(f.casefold() in text.casefold() for f in q.facts),
        "cited": any(u.endswith("/" + q.page) for u in cited) if searched else None,
        "search_error": answer.get("search_error"),
    }


def run_mode(server: ManagedServer, mode: str, max_tokens: int) -> list[dict[str, Any]]:
    searched = mode != "no search"
    rows = []
    for q in QUESTIONS:
        body = {
            "messages": [{"role": r, "content": c} for r, c in q.messages],
            "temperature": 0,
            "max_tokens": max_tokens,
            "web_search": searched,
        }
        rows.append(score(q, post(server.base_url, body), searched))
    return rows


def phase_means(base_url: str) -> dict[str, float]:
    """Mean seconds of each search phase so far, and the written/fallback counts of model-written
    queries, from the server's /metrics."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    writes: dict[str, float] = {}
    for line in text.splitlines():
        value = line.rsplit(" ", 1)[-1]
        for kind, into in (("_sum", sums), ("_count", counts)):
            if line.startswith(f"seekserve:search_latency_seconds{kind}{{"):
                into[line.split('phase="', 1)[1].split('"', 1)[0]] = float(value)
        if line.startswith("seekserve:search_query_writes_total{"):
            writes[line.split('outcome="', 1)[1].split('"', 1)[0]] = float(value)
    means = {phase: sums[phase] / counts[phase] for phase in sums if counts.get(phase)}
    return {**means, **{f"queries {k}": n for k, n in writes.items()}}


def summary(rows: list[dict[str, Any]]) -> dict[str, str]:
    def count(key: str, subset: list[dict[str, Any]]) -> str:
        if subset and subset[0][key] is None:
            return "-"
        return f"{sum(bool(r[key]) for r in subset)}/{len(subset)}"

    direct = [r for r in rows if not r["follow_up"]]
    follow = [r for r in rows if r["follow_up"]]
    return {
        f"{key} ({name})": count(key, subset)
        for key in ("retrieved", "fact", "cited")
        for name, subset in (("direct", direct), ("follow-up", follow))
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="`seekserve serve --model` (default: its own)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--budget-s", type=float, default=3.0, help="--search-budget-s of the server")
    parser.add_argument(
        "--queries", default="last,model", help="servers to run: last (no search + last message), model"
    )
    parser.add_argument("--out", type=Path, default=Path("results/search_quality.json"))
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {}
    phases: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        for name, text in PAGES.items():
            (docs / name).write_text(text)
        model = f"--model {args.model} " if args.model else ""
        for queries in args.queries.split(","):
            command = (
                f"{{python}} -m seekserve serve {model}--port {{port}} --web-search auto --search-dir {docs} "
                f"--search-queries {queries} --search-budget-s {args.budget_s}"
            )
            with ManagedServer(ServerSpec(f"serve-{queries}", command), Path(tmp) / "logs") as server:
                if queries == "last":
                    results[MODES[0]] = run_mode(server, MODES[0], args.max_tokens)
                    results[MODES[1]] = run_mode(server, MODES[1], args.max_tokens)
                else:
                    results[MODES[2]] = run_mode(server, MODES[2], args.max_tokens)
                phases[queries] = phase_means(server.base_url)
    summaries = {mode: summary(rows) for mode, rows in results.items()}
    header = ["mode", *next(iter(summaries.values()))]
    print_table(
        f"Grounded answers: {len(QUESTIONS)} questions ({args.model or 'default model'}, greedy, "
        f"{args.max_tokens} tokens)",
        header,
        [[mode, *s.values()] for mode, s in summaries.items()],
    )
    print_table(
        f"Mean seconds per search phase (budget {args.budget_s:g} s), and model-written queries used",
        ["queries", *(columns := sorted({k for t in phases.values() for k in t}))],
        [[q, *(f"{t.get(k, 0.0):.3f}" for k in columns)] for q, t in phases.items()],
    )
    for mode, rows in results.items():
        print(f"\n{mode}:")
        for r in rows:
            print(f"  {r['question']!r:60} -> {r['answer'][:70]!r}")
    write_json(
        args.out,
        {"machine": machine(), "model": args.model or "default", "max_tokens": args.max_tokens,
         "budget_s": args.budget_s, "summary": summaries, "phase_mean_s": phases, "rows": results},
    )  # fmt: skip


if __name__ == "__main__":
    main()
