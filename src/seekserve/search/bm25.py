"""BM25 (Okapi, Lucene's variant) over token lists, through `bm25s`: the local provider's document
index and the ranking of passages against a query share it and its tokenizer.

Tokens: lowercased runs of letters and digits (English stop words and single letters dropped, a
plural `s` cut from words of five letters or more), and for Chinese, Japanese and Korean text, which
has no spaces, overlapping character pairs (`大桥重开` -> 大桥 桥重 重开; a lone character stays a token).
"""

from __future__ import annotations

import re
from pathlib import Path

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

__all__ = ["Bm25Index", "tokenize"]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_CJK_RUN = re.compile(rf"[{_CJK}]")
_STOPWORDS = frozenset(STOPWORDS_EN)


def _stem(word: str) -> str:
    return word[:-1] if len(word) >= 5 and word.endswith("s") and not word.endswith("ss") else word


def tokenize(text: str) -> list[str]:
    """BM25 tokens of `text` (see the module's docstring)."""
    tokens: list[str] = []
    for run in _TOKEN.findall(text.lower()):
        if _CJK_RUN.match(run):
            tokens += [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
        elif run not in _STOPWORDS and (len(run) > 1 or run.isdigit()):
            tokens.append(_stem(run))
    return tokens


class Bm25Index:
    """A BM25 index over documents given as token lists; scores a query against every document.

    Built once (`build`), read-only after: concurrent `scores` calls are safe. CPU cost: building is
    linear in the tokens; scoring is linear in the documents that share a token with the query."""

    def __init__(self, retriever: bm25s.BM25 | None, num_docs: int) -> None:
        self._retriever = retriever
        self.num_docs = num_docs

    @classmethod
    def build(cls, docs: list[list[str]]) -> Bm25Index:
        if not docs:
            return cls(None, 0)
        retriever = bm25s.BM25()
        retriever.index(docs, show_progress=False)
        return cls(retriever, len(docs))

    def scores(self, query: list[str]) -> np.ndarray:
        """[num_docs] float32 BM25 scores of the query tokens; zeros where nothing matches."""
        if self._retriever is None or not query:
            return np.zeros(self.num_docs, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(query), dtype=np.float32)

    def top(self, query: list[str], k: int) -> list[tuple[int, float]]:
        """(document index, score) of the k best documents with a score above zero, best first
        (ties: the lower index first)."""
        scores = self.scores(query)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(i), float(scores[i])) for i in order if scores[i] > 0]

    def save(self, folder: Path) -> None:
        """Write the index's files into `folder` (created); an empty index writes nothing."""
        folder.mkdir(parents=True, exist_ok=True)
        if self._retriever is not None:
            self._retriever.save(str(folder))

    @classmethod
    def load(cls, folder: Path, num_docs: int) -> Bm25Index:
        if num_docs == 0:
            return cls(None, 0)
        return cls(bm25s.BM25.load(str(folder)), num_docs)
