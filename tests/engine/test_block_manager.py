from __future__ import annotations

from factories import make_request
from seekserve.engine.block_manager import BlockManager


def test_allocate_takes_blocks_in_order_and_free_returns_them() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    r = make_request(prompt=list(range(10)))
    assert bm.allocate(r, 10)
    assert r.block_ids == [0, 1, 2]
    assert bm.num_free_blocks == 5
    r.num_computed_tokens = 10
    assert bm.allocate(r, 2)  # tokens 10, 11 fit in block 2
    assert r.block_ids == [0, 1, 2]
    assert bm.allocate(r, 3)  # token 12 needs a fourth block
    assert r.block_ids == [0, 1, 2, 3]
    bm.free(r)
    assert r.block_ids == []
    assert bm.num_free_blocks == 8


def test_allocate_refuses_without_changing_anything() -> None:
    bm = BlockManager(num_blocks=2, block_size=4)
    r = make_request(prompt=list(range(12)))
    assert not bm.allocate(r, 12)
    assert r.block_ids == [] and bm.num_free_blocks == 2


def test_prefix_hit_reuses_full_blocks_and_counts_tokens() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    a = make_request("a", prompt=list(range(10)))
    assert bm.allocate(a, 10, bm.lookup_prefix(a))
    a.num_computed_tokens = 10
    bm.cache_full_blocks(a)  # blocks 0 and 1 are full; block 2 holds 2 tokens
    b = make_request("b", prompt=[*range(8), 99, 98, 97])
    hit = bm.lookup_prefix(b)
    assert hit.block_ids == (0, 1) and hit.num_tokens == 8
    assert bm.allocate(b, 3, hit)
    assert b.block_ids == [0, 1, 3] and b.num_computed_tokens == 8
    assert (bm.prefix_cache_queries, bm.prefix_cache_hits) == (10 + 11, 8)
    bm.free(a)
    bm.free(b)
    assert bm.num_free_blocks == 8


def test_whole_prompt_hit_leaves_last_token_to_compute() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    a = make_request("a", prompt=list(range(8)))
    assert bm.allocate(a, 8, bm.lookup_prefix(a))
    a.num_computed_tokens = 8
    bm.cache_full_blocks(a)
    bm.free(a)
    b = make_request("b", prompt=list(range(8)))
    hit = bm.lookup_prefix(b)
    assert hit.num_tokens == 4  # the second block holds the last token, which must be recomputed


def test_lru_eviction_takes_least_recently_freed_tail_first() -> None:
    bm = BlockManager(num_blocks=4, block_size=2)
    a = make_request("a", prompt=[1, 2, 3, 4])
    assert bm.allocate(a, 4, bm.lookup_prefix(a))
    a.num_computed_tokens = 4
    bm.cache_full_blocks(a)
    bm.free(a)  # queue: 2, 3 (never used), then 1 (tail of a), then 0
    c = make_request("c", prompt=[7, 8, 9, 10, 11, 12])
    assert bm.allocate(c, 6, bm.lookup_prefix(c))
    assert c.block_ids == [2, 3, 1]  # block 1 (a's tail) evicted before block 0 (a's head)
    d = make_request("d", prompt=[1, 2, 5])
    assert bm.lookup_prefix(d).block_ids == (0,)


def test_no_prefix_caching_means_no_hits() -> None:
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    a = make_request("a", prompt=list(range(10)))
    assert bm.allocate(a, 10, bm.lookup_prefix(a))
    a.num_computed_tokens = 10
    bm.cache_full_blocks(a)
    assert bm.lookup_prefix(make_request("b", prompt=list(range(10)))).num_tokens == 0


def test_audit_balances_shared_prefix_references_and_names_what_leaked() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    a = make_request("a", prompt=list(range(10)))
    assert bm.allocate(a, 10, bm.lookup_prefix(a))
    a.num_computed_tokens = 10
    bm.cache_full_blocks(a)
    b = make_request("b", prompt=[*range(8), 99])
    assert bm.allocate(b, 1, bm.lookup_prefix(b))
    assert b.block_ids == [0, 1, 3]
    assert (bm.num_refs, bm.num_used_blocks, bm.num_cached_blocks) == (6, 4, 2)
    assert bm.audit([a, b]) == []
    assert bm.audit([a]) == [
        "block 0 has 2 references but 1 holders",
        "block 1 has 2 references but 1 holders",
        "block 3 has 1 references but 0 holders",
    ]
    bm.free(b)
    assert bm.audit([a]) == []
    bm.free(a)
    assert (bm.num_refs, bm.num_used_blocks, bm.num_cached_blocks) == (0, 0, 2)
    assert bm.audit([]) == []


def test_audit_finds_a_block_both_free_and_held() -> None:
    bm = BlockManager(num_blocks=4, block_size=4)
    r = make_request(prompt=list(range(6)))
    assert bm.allocate(r, 6)
    bm._free[1] = None  # a bug that returned a held block to the free queue
    assert bm.audit([r]) == ["block 1 is free but referenced", "2 blocks are unreferenced but 3 are free"]
