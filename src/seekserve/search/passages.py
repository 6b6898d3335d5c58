"""Documents into the passages that go into the prompt: cut, de-duplicated, ranked, trimmed.

    documents ─► split_passages (about passage_words words each, cut at sentence ends)
              ─► dedupe (near-identical passages: the first, from the better-ranked result, stays)
              ─► rank_passages (BM25 against the query; passages sharing no token with it dropped)
              ─► fit_budget (best first while they fit max_context_tokens)

Token counts are estimates (approx_tokens), so no tokenizer is needed here: 1.3 tokens per word of
space-separated text plus 1 per CJK character. DeepSeek's and Gemma's tokenizers take about 1.2-1.4
tokens per English word and 0.6-1.1 per Chinese character, so the estimate errs long: the context fits.
CPU-bound (a few ms for 100 passages): call from a worker thread (asyncio.to_thread).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from seekserve.search.bm25 import Bm25Index, tokenize
from seekserve.search.extract import Document

__all__ = [
    "DUPLICATE_JACCARD",
    "Passage",
    "approx_tokens",
    "count_words",
    "dedupe",
    "fit_budget",
    "rank_passages",
    "select_passages",
    "split_passages",
]

DUPLICATE_JACCARD = 0.7
"""Passages whose word-trigram sets overlap this much (Jaccard) are duplicates."""
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_WORDS = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])\s*")
_NORMAL_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\W_]+")


@dataclass(frozen=True)
class Passage:
    """A piece of one document's text, with where it comes from."""

    source: int
    """Index of its document in the list given to select_passages (the search result's place)."""
    position: int
    """Its place among its document's passages."""
    url: str
    title: str
    text: str
    num_tokens: int
    """approx_tokens(text)."""
    score: float = 0.0
    """BM25 score against the query (0 before ranking)."""


def count_words(text: str) -> int:
    """Space-separated words, with each CJK character counted as one word."""
    return len(_CJK.findall(text)) + len(_WORDS.findall(_CJK.sub(" ", text)))


def approx_tokens(text: str) -> int:
    """Estimated tokens: ceil(1.3 x words of space-separated text) + CJK characters."""
    num_cjk = len(_CJK.findall(text))
    return math.ceil(1.3 * len(_WORDS.findall(_CJK.sub(" ", text)))) + num_cjk


def _windows(sentence: str, passage_words: int) -> list[str]:
    """A sentence too long for one passage in windows of passage_words words (CJK: characters)."""
    if _CJK.search(sentence):
        return [sentence[i : i + passage_words] for i in range(0, len(sentence), passage_words)]
    words = sentence.split()
    return [" ".join(words[i : i + passage_words]) for i in range(0, len(words), passage_words)]


def _pieces(text: str, passage_words: int) -> list[tuple[str, int, str]]:
    """(sentence, words, what follows it: newline, space or nothing) in order; sentences over 4/3
    passage_words cut into windows."""
    pieces = []
    for paragraph in text.splitlines():
        sentences = [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]
        for i, sentence in enumerate(sentences):
            parts = [sentence]
            if count_words(sentence) > passage_words * 4 // 3:
                parts = _windows(sentence, passage_words)
            for j, part in enumerate(parts):
                ends = i == len(sentences) - 1 and j == len(parts) - 1
                gap = "\n" if ends else "" if _CJK.match(part[-1]) or part[-1] in "。！？；" else " "
                pieces.append((part, count_words(part), gap))
    return pieces


def split_passages(text: str, passage_words: int) -> list[str]:
    """`text` cut into passages of about passage_words words: a cut falls after the sentence that
    reaches passage_words, or before one that would pass 4/3 of it; a tail under 1/3 joins the one
    before. Paragraphs inside a passage stay on their own lines."""
    passages: list[str] = []
    current: list[str] = []
    num_words = 0
    for sentence, num, gap in _pieces(text, passage_words):
        if current and num_words + num > passage_words * 4 // 3 and num_words >= passage_words * 2 // 3:
            passages.append("".join(current).strip())
            current, num_words = [], 0
        current.append(sentence + gap)
        num_words += num
        if num_words >= passage_words:
            passages.append("".join(current).strip())
            current, num_words = [], 0
    if current:
        tail = "".join(current).strip()
        if passages and num_words < passage_words // 3:
            passages[-1] = passages[-1] + "\n" + tail
        else:
            passages.append(tail)
    return passages


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = [w.lower() for w in _NORMAL_WORD.findall(text)]
    if len(words) < 3:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def dedupe(passages: Sequence[Passage], threshold: float = DUPLICATE_JACCARD) -> list[Passage]:
    """The passages without near-duplicates of an earlier one (word-trigram Jaccard >= threshold);
    order kept. Quadratic in the passages, fine for the few hundred of one request."""
    kept: list[Passage] = []
    kept_shingles: list[set[tuple[str, ...]]] = []
    for passage in passages:
        shingles = _shingles(passage.text)
        if not shingles:
            continue
        duplicate = any(len(shingles & other) >= threshold * len(shingles | other) for other in kept_shingles)
        if not duplicate:
            kept.append(passage)
            kept_shingles.append(shingles)
    return kept


def rank_passages(query: str, passages: Sequence[Passage]) -> list[Passage]:
    """The passages with their BM25 scores against `query`, best first; ties keep their order (the
    search results' order). Those sharing no token with the query are dropped, unless none does."""
    index = Bm25Index.build([tokenize(p.text) for p in passages])
    scores = index.scores(tokenize(query))
    ranked = sorted(
        (replace(p, score=float(s)) for p, s in zip(passages, scores, strict=True)), key=lambda p: -p.score
    )
    if ranked and ranked[0].score > 0:
        ranked = [p for p in ranked if p.score > 0]
    return ranked


def fit_budget(passages: Sequence[Passage], max_tokens: int) -> list[Passage]:
    """The passages, in the given order, that fit together in max_tokens; one that does not fit is
    skipped and the next ones still tried."""
    chosen: list[Passage] = []
    used = 0
    for passage in passages:
        if used + passage.num_tokens <= max_tokens:
            chosen.append(passage)
            used += passage.num_tokens
    return chosen


def select_passages(
    query: str, documents: Sequence[Document], *, passage_words: int, max_tokens: int
) -> list[Passage]:
    """The best passages of `documents` (in search-result order) for `query` within max_tokens, best
    first. `source` of each is its document's index in `documents`."""
    passages = [
        Passage(source, position, doc.url, doc.title, text, approx_tokens(text))
        for source, doc in enumerate(documents)
        for position, text in enumerate(split_passages(doc.text, passage_words))
    ]
    return fit_budget(rank_passages(query, dedupe(passages)), max_tokens)
