"""Search results and read pages kept between requests, in any key-value store of bytes.

    r:{sha256 of provider, query, num_results, language}  -> the provider's results (JSON)
    p:{sha256 of the URL}                                 -> the page's title and main text (JSON)

The store is the gateway's response cache (memory, Redis, Memcached: its TTL applies) or, in
`seekserve serve`, a MemoryCache. Pages are kept as extracted text, not bytes: smaller, and a hit
skips extraction too. Off unless SearchConfig.cache_ttl_s > 0; results go stale for that long.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from seekserve.search.extract import Document
from seekserve.search.providers.base import SearchResult

__all__ = ["KeyValueCache", "MemoryCache", "SearchCache"]


class KeyValueCache(Protocol):
    """A store of bytes by key; get() returns None for a missing or expired key. Failures are the
    store's to absorb (a cache that cannot answer is a miss)."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes) -> None: ...


class MemoryCache:
    """A KeyValueCache in this process: entries live ttl_s, the least recently used go first."""

    def __init__(self, ttl_s: float, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def set(self, key: str, value: bytes) -> None:
        self._entries[key] = (self._clock() + self.ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


class SearchCache:
    """Results and page documents of one provider in `store`."""

    def __init__(self, store: KeyValueCache, provider: str) -> None:
        self.store = store
        self.provider = provider

    async def results(self, query: str, num_results: int, language: str | None) -> list[SearchResult] | None:
        data = await self.store.get(
            "seekserve:search:r:" + _digest(self.provider, query, num_results, language)
        )
        if data is None:
            return None
        try:
            return [SearchResult(**item) for item in json.loads(data)]
        except (ValueError, TypeError):
            return None  # another version's entry: a miss

    async def put_results(
        self, query: str, num_results: int, language: str | None, results: list[SearchResult]
    ) -> None:
        items = [r.__dict__ for r in results]
        key = "seekserve:search:r:" + _digest(self.provider, query, num_results, language)
        await self.store.set(key, json.dumps(items, ensure_ascii=False).encode())

    async def document(self, url: str) -> Document | None:
        data = await self.store.get("seekserve:search:p:" + _digest(url))
        if data is None:
            return None
        try:
            item = json.loads(data)
            return Document(url, str(item["title"]), str(item["text"]))
        except (ValueError, KeyError, TypeError):
            return None

    async def put_document(self, document: Document) -> None:
        value = json.dumps({"title": document.title, "text": document.text}, ensure_ascii=False)
        await self.store.set("seekserve:search:p:" + _digest(document.url), value.encode())
