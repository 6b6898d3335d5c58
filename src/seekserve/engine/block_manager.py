"""KV block manager: fixed-size blocks, reference counts, a free list, and prefix caching.

Ownership: a request owns one reference to each block in its `block_ids`; `free(request)` drops
them. A block whose count falls to zero goes to the tail of the free queue but keeps its
contents and hash, so a later request with the same prefix can take it back (a prefix-cache
hit). Allocation takes blocks from the head of the queue, evicting the least recently freed
cached block first; the tail blocks of a request are queued first, so they are evicted first.

A full block's hash chains its parent's hash with its own token ids (BLAKE2b, 128 bits), so
equal hashes mean equal prefixes up to and including the block.

`audit(holders)` recounts every block's references from the block tables of the requests that
hold blocks and checks them, the free queue and the prefix-cache map against each other: the
engine runs it each time it falls idle, and the soak (benchmarks/soak.py) reads its verdict.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from seekserve.engine.request import Request

__all__ = ["BlockManager", "PrefixHit"]

_ROOT_HASH = b"seekserve-kv-root"


def hash_block(parent: bytes, token_ids: list[int]) -> bytes:
    """The chained hash of one full block."""
    return hashlib.blake2b(
        np.asarray(token_ids, dtype=np.int64).tobytes(), digest_size=16, key=parent[:64]
    ).digest()


@dataclass(frozen=True)
class PrefixHit:
    """The longest run of cached full blocks at the start of a request's tokens."""

    block_ids: tuple[int, ...]
    num_tokens: int


class BlockManager:
    """Hands out KV blocks to requests. Not thread-safe: the engine thread owns it."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        assert num_blocks > 0 and block_size > 0, "block manager needs blocks"
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._ref_cnt = [0] * num_blocks
        self._hash: list[bytes | None] = [None] * num_blocks
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self._cached: dict[bytes, int] = {}
        self._num_registered: dict[str, int] = {}
        self.num_refs = 0
        """References held by requests in all (the sum of the blocks' reference counts)."""
        self.prefix_cache_queries = 0
        """Prompt tokens looked up in the prefix cache (cumulative)."""
        self.prefix_cache_hits = 0
        """Prompt tokens found in the prefix cache (cumulative)."""

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def num_used_blocks(self) -> int:
        """Blocks referenced by at least one request."""
        return self.num_blocks - len(self._free)

    @property
    def num_cached_blocks(self) -> int:
        """Blocks whose contents the prefix cache can hand out again (in use or free)."""
        return len(self._cached)

    @property
    def usage(self) -> float:
        """Share of blocks referenced by some request, in [0, 1]."""
        return 1.0 - len(self._free) / self.num_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def lookup_prefix(self, request: Request) -> PrefixHit:
        """Cached full blocks that start the request; at least one token is always left to compute."""
        if not self.enable_prefix_caching:
            return PrefixHit((), 0)
        max_blocks = (request.num_tokens - 1) // self.block_size
        self._extend_hashes(request, max_blocks)
        hit: list[int] = []
        for block_hash in request.block_hashes[:max_blocks]:
            block_id = self._cached.get(block_hash)
            if block_id is None:
                break
            hit.append(block_id)
        return PrefixHit(tuple(hit), len(hit) * self.block_size)

    def allocate(self, request: Request, num_new_tokens: int, hit: PrefixHit | None = None) -> bool:
        """Give the request blocks for `num_new_tokens` more tokens; False (and no change) if short.

        With `hit` (a waiting request being admitted), the hit blocks become the start of its
        block table and its `num_computed_tokens` moves past them.
        """
        hit_blocks = hit.block_ids if hit else ()
        num_computed = request.num_computed_tokens + (hit.num_tokens if hit else 0)
        needed = self.blocks_needed(num_computed + num_new_tokens) - len(request.block_ids) - len(hit_blocks)
        reclaimed = sum(1 for b in hit_blocks if self._ref_cnt[b] == 0)
        if needed > len(self._free) - reclaimed:
            return False
        for block_id in hit_blocks:
            if self._ref_cnt[block_id] == 0:
                del self._free[block_id]
            self._ref_cnt[block_id] += 1
            self.num_refs += 1
        if hit is not None:
            request.block_ids.extend(hit_blocks)
            request.num_computed_tokens = num_computed
            request.num_cached_tokens = hit.num_tokens
            self._num_registered[request.request_id] = len(hit_blocks)
            self.prefix_cache_queries += request.num_tokens
            self.prefix_cache_hits += hit.num_tokens
        for _ in range(max(needed, 0)):
            request.block_ids.append(self._pop_free())
        return True

    def cache_full_blocks(self, request: Request) -> None:
        """Register the request's blocks that are now full of computed tokens in the prefix cache."""
        if not self.enable_prefix_caching:
            return
        num_full = request.num_computed_tokens // self.block_size
        start = self._num_registered.get(request.request_id, 0)
        if num_full <= start:
            return
        self._extend_hashes(request, num_full)
        for index in range(start, num_full):
            block_hash = request.block_hashes[index]
            block_id = request.block_ids[index]
            if block_hash not in self._cached and self._hash[block_id] is None:
                self._cached[block_hash] = block_id
                self._hash[block_id] = block_hash
        self._num_registered[request.request_id] = num_full

    def free(self, request: Request) -> None:
        """Drop the request's references; its blocks stay cached until evicted."""
        for block_id in reversed(request.block_ids):
            self._ref_cnt[block_id] -= 1
            self.num_refs -= 1
            assert self._ref_cnt[block_id] >= 0, f"block {block_id} freed more often than taken"
            if self._ref_cnt[block_id] == 0:
                self._free[block_id] = None
        request.block_ids = []
        self._num_registered.pop(request.request_id, None)

    def reset_prefix_cache(self) -> None:
        """Forget every cached hash (blocks in use keep their contents)."""
        for block_hash, block_id in self._cached.items():
            assert self._hash[block_id] == block_hash, "prefix cache map out of sync"
            self._hash[block_id] = None
        self._cached.clear()

    def _pop_free(self) -> int:
        block_id, _ = self._free.popitem(last=False)
        block_hash = self._hash[block_id]
        if block_hash is not None:
            del self._cached[block_hash]
            self._hash[block_id] = None
        self._ref_cnt[block_id] = 1
        self.num_refs += 1
        return block_id

    def audit(self, holders: Iterable[Request]) -> list[str]:
        """What is out of balance, given every request that holds blocks; [] when all is consistent.

        Each block's reference count must equal the number of `holders` whose block table names it,
        a block must be in the free queue exactly when its count is zero, `num_refs` must be the sum
        of the counts, and the prefix-cache map and the blocks' hashes must name each other.
        Reads only; O(blocks + held references).
        """
        held = Counter(b for request in holders for b in request.block_ids)
        problems = [
            f"block {b} has {count} references but {held.get(b, 0)} holders"
            for b, count in enumerate(self._ref_cnt)
            if count != held.get(b, 0)
        ]
        problems += [f"block {b} is free but referenced" for b in self._free if self._ref_cnt[b] != 0]
        num_unreferenced = sum(1 for count in self._ref_cnt if count == 0)
        if num_unreferenced != len(self._free):
            problems.append(f"{num_unreferenced} blocks are unreferenced but {len(self._free)} are free")
        if self.num_refs != sum(self._ref_cnt):
            problems.append(f"num_refs is {self.num_refs}, the counts sum to {sum(self._ref_cnt)}")
        problems += [
            f"the prefix cache maps a hash to block {b}, which holds another"
            for block_hash, b in self._cached.items()
            if self._hash[b] != block_hash
        ]
        num_hashed = sum(1 for h in self._hash if h is not None)
        if num_hashed != len(self._cached):
            problems.append(f"{num_hashed} blocks carry a hash but the prefix cache maps {len(self._cached)}")
        return problems

    def _extend_hashes(self, request: Request, num_blocks: int) -> None:
        hashes = request.block_hashes
        size = self.block_size
        while len(hashes) < num_blocks:
            index = len(hashes)
            parent = hashes[-1] if hashes else _ROOT_HASH
            hashes.append(hash_block(parent, request.token_ids[index * size : (index + 1) * size]))
