"""The offline provider: BM25 over a folder of .txt, .md and .html files (searched recursively).

The index is built once per process, in a worker thread, on the first search (or `load_index()` at
startup), and cached on disk under SEEKSERVE_HOME/search/local/ keyed by the folder's path and its
files' names, sizes and modification times: a restart with the same files loads it instead of
reading every file again; a changed folder builds a new one (older indexes of the folder are
removed). Files changed while the process runs are seen after a restart. Results carry the
document's text, so nothing is fetched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from seekserve.env import Environment
from seekserve.errors import ConfigError
from seekserve.search.bm25 import Bm25Index, tokenize
from seekserve.search.config import ProviderKind, SearchConfig
from seekserve.search.errors import ProviderError
from seekserve.search.extract import decode_body, extract_document
from seekserve.search.providers.base import SearchProvider, SearchResult, check_language, check_time_range

__all__ = ["LocalIndex", "LocalProvider"]

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
}
"""File suffixes indexed, and the content type each is read as."""
_INDEX_VERSION = 1
_SNIPPET_CHARS = 240


@dataclass(frozen=True)
class LocalDocument:
    path: str
    """Relative to the folder, with forward slashes."""
    title: str
    text: str


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every indexable file, sorted; hidden files and folders, and
    entries that vanish or cannot be read while listing (a broken link), skipped."""
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.suffix.lower() not in CONTENT_TYPES or any(p.startswith(".") for p in rel.parts):
            continue
        try:
            if path.is_file():
                stat = path.stat()
                found.append((rel.as_posix(), stat.st_size, stat.st_mtime_ns))
        except OSError as exc:
            log.warning("search: %s is skipped: %s", path, exc)
    return sorted(found)


def _read(folder: Path, rel: str, max_bytes: int) -> LocalDocument | None:
    """The file's document; None (logged) when it is over max_bytes, unreadable or without text."""
    path = folder / rel
    try:
        body = path.read_bytes()
    except OSError as exc:
        log.warning("search: %s is not indexed: %s", path, exc)
        return None
    if len(body) > max_bytes:
        log.warning("search: %s is over %d bytes (max_page_bytes) and is not indexed", path, max_bytes)
        return None
    content_type = CONTENT_TYPES[path.suffix.lower()]
    text = decode_body(body, None, content_type)
    doc = extract_document(text, content_type=content_type, url=path.as_uri(), title=path.stem)
    return LocalDocument(rel, doc.title, doc.text) if doc.text else None


@dataclass(frozen=True)
class LocalIndex:
    """The documents of a folder and their BM25 index (read-only once built)."""

    docs: list[LocalDocument]
    bm25: Bm25Index

    @classmethod
    def open(cls, folder: Path, cache_root: Path, max_file_bytes: int) -> LocalIndex:
        """The folder's index from the cache, or built and cached. Blocking: run it in a thread."""
        folder = folder.resolve()
        files = _listing(folder)
        folder_key = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
        files_key = hashlib.sha256(json.dumps([_INDEX_VERSION, files]).encode()).hexdigest()[:16]
        where = cache_root / f"{folder_key}-{files_key}"
        if (where / "docs.json").is_file():
            try:
                return cls._load(where)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("search: the cached index %s is unreadable (%s); building it again", where, exc)
                shutil.rmtree(where, ignore_errors=True)
        docs = [d for rel, _, _ in files if (d := _read(folder, rel, max_file_bytes)) is not None]
        index = cls(docs, Bm25Index.build([tokenize(d.title + "\n" + d.text) for d in docs]))
        index._save(where, folder_key)
        return index

    @classmethod
    def _load(cls, where: Path) -> LocalIndex:
        entries = json.loads((where / "docs.json").read_text(encoding="utf-8"))
        docs = [LocalDocument(e["path"], e["title"], e["text"]) for e in entries]
        return cls(docs, Bm25Index.load(where / "bm25", len(docs)))

    def _save(self, where: Path, folder_key: str) -> None:
        """Written into a fresh folder, then renamed into place (a reader sees all of it or none);
        the folder's older indexes are removed."""
        where.parent.mkdir(parents=True, exist_ok=True)
        scratch = where.with_name(f".{where.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
        self.bm25.save(scratch / "bm25")
        entries = [{"path": d.path, "title": d.title, "text": d.text} for d in self.docs]
        (scratch / "docs.json").write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
        try:
            scratch.rename(where)
        except OSError:  # another process cached the same listing first: theirs is as good
            shutil.rmtree(scratch, ignore_errors=True)
        for old in where.parent.glob(f"{folder_key}-*"):
            if old != where:
                shutil.rmtree(old, ignore_errors=True)


def snippet(text: str, query_tokens: list[str], num_chars: int = _SNIPPET_CHARS) -> str:
    """About num_chars of `text` from a little before the first place a query token occurs (the
    start where none does), on word boundaries, whitespace collapsed."""
    lowered = text.lower()
    hits = [i for i in (lowered.find(t) for t in query_tokens) if i >= 0]
    start = max(0, min(hits, default=0) - 60)
    if start:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < start + 30 else start
    piece = text[start : start + num_chars]
    if start + num_chars < len(text):
        piece = re.sub(r"\s+\S*$", "", piece) + " …"
    return ("… " if start else "") + " ".join(piece.split())


class LocalProvider(SearchProvider):
    """BM25 search over a local folder (see the module's docstring). `language` and `time_range`
    are checked and otherwise ignored."""

    kind = ProviderKind.LOCAL

    def __init__(self, folder: Path, *, cache_dir: Path, base_url: str | None, max_file_bytes: int) -> None:
        self.folder = folder
        self.cache_dir = cache_dir
        self.base_url = base_url.rstrip("/") if base_url else None
        self.max_file_bytes = max_file_bytes
        self._index: asyncio.Future[LocalIndex] | None = None

    @classmethod
    def from_config(cls, config: SearchConfig, env: Environment) -> LocalProvider:
        folder = config.search_dir
        if folder is None or not folder.is_dir():
            got = "none given" if folder is None else f"{str(folder)!r} is not a folder"
            raise ConfigError(
                f"the local search provider needs a folder of .txt/.md/.html files ({got}): pass "
                f"--search-dir DIR, or choose another --search-provider"
            )
        return cls(
            folder,
            cache_dir=env.search_dir / "local",
            base_url=config.local_base_url,
            max_file_bytes=config.max_page_bytes,
        )

    async def load_index(self) -> LocalIndex:
        """The index, built or loaded in a worker thread on the first call; later calls share it. A
        failed build is tried again by the next call. Cancelling a caller does not stop the build."""
        task = self._index
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            build = asyncio.to_thread(LocalIndex.open, self.folder, self.cache_dir, self.max_file_bytes)
            task = self._index = asyncio.ensure_future(build)
        try:
            return await asyncio.shield(task)
        except OSError as exc:
            raise ProviderError("local", f"cannot index {self.folder}: {exc}") from None

    def url(self, path: str) -> str:
        if self.base_url is not None:
            return f"{self.base_url}/{quote(path)}"
        return (self.folder.resolve() / path).as_uri()

    async def search(
        self, query: str, *, num_results: int, language: str | None = None, time_range: str | None = None
    ) -> list[SearchResult]:
        check_language(language)
        check_time_range(time_range)
        index = await self.load_index()
        tokens = tokenize(query)
        return [
            SearchResult(self.url(doc.path), doc.title, snippet(doc.text, tokens), rank, doc.text)
            for rank, (i, _) in enumerate(index.bm25.top(tokens, num_results), start=1)
            for doc in (index.docs[i],)
        ]
