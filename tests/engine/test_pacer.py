from __future__ import annotations

from factories import make_request
from seekserve.engine.block_manager import BlockManager
from seekserve.engine.config import SchedulerConfig
from seekserve.engine.pacer import PrefillPacer
from seekserve.engine.scheduler import Scheduler


def test_without_decodes_prompts_get_the_whole_budget() -> None:
    pacer = PrefillPacer(stall_factor=2.5, min_chunk=8, max_tokens=512)
    assert pacer.prefill_budget(num_decodes=0) == 512


def test_until_costs_are_known_chunks_stay_small() -> None:
    pacer = PrefillPacer(stall_factor=2.5, min_chunk=8, max_tokens=512)
    pacer.observe(num_decodes=0, num_prefill_tokens=512, seconds=0.100)
    assert pacer.prefill_budget(num_decodes=4, num_pending=10) == 0  # one decode-only step first
    pacer.observe(num_decodes=4, num_prefill_tokens=0, seconds=0.010)
    assert pacer.prefill_budget(num_decodes=4, num_pending=10) > 8  # now both costs are known
    fresh = PrefillPacer(stall_factor=2.5, min_chunk=8, max_tokens=512)
    fresh.observe(num_decodes=4, num_prefill_tokens=0, seconds=0.010)
    assert fresh.prefill_budget(num_decodes=4) == 8  # the prefill cost is still unknown


def test_budget_keeps_a_mixed_step_within_the_stall_factor() -> None:
    pacer = PrefillPacer(stall_factor=2.5, min_chunk=8, max_tokens=512)
    pacer.observe(num_decodes=4, num_prefill_tokens=0, seconds=0.010)  # decode-only step: 10 ms
    pacer.observe(num_decodes=4, num_prefill_tokens=100, seconds=0.060)  # 100 tokens add 50 ms
    # (2.5 - 1) * 10 ms / 0.5 ms per token = 30 tokens: a step of 10 + 15 ms = 2.5x the decode step.
    assert pacer.prefill_budget(num_decodes=4) == 30
    pacer.observe(num_decodes=0, num_prefill_tokens=200, seconds=0.100)  # a prompt alone: same cost
    assert pacer.prefill_budget(num_decodes=4) == 30
    assert pacer.prefill_budget(num_decodes=0) == 512


def test_each_waiting_request_widens_the_budget_by_one_stall() -> None:
    pacer = PrefillPacer(stall_factor=2.5, min_chunk=8, max_tokens=512)
    pacer.observe(num_decodes=4, num_prefill_tokens=0, seconds=0.010)
    pacer.observe(num_decodes=4, num_prefill_tokens=100, seconds=0.060)
    assert pacer.prefill_budget(num_decodes=4, num_pending=1) == 30  # one long prompt: the stall factor
    assert pacer.prefill_budget(num_decodes=4, num_pending=3) == 90
    assert pacer.prefill_budget(num_decodes=4, num_pending=60) == 512  # within the token budget


def test_budget_is_clamped() -> None:
    pacer = PrefillPacer(stall_factor=3.0, min_chunk=16, max_tokens=64)
    pacer.observe(num_decodes=2, num_prefill_tokens=0, seconds=0.010)
    pacer.observe(num_decodes=2, num_prefill_tokens=10, seconds=0.010 + 10 * 1e-6)  # nearly free
    assert pacer.prefill_budget(num_decodes=2) == 64
    pacer.observe(num_decodes=2, num_prefill_tokens=10, seconds=10.0)  # suddenly very slow
    assert pacer.prefill_budget(num_decodes=2) == 16


def one_stream_decoding() -> Scheduler:
    """A scheduler whose pacer allows 10 prompt tokens a stall, with request "a" prefilled in its
    first step (nothing decoding: the whole budget) and now decoding."""
    pacer = PrefillPacer(stall_factor=2.0, min_chunk=4, max_tokens=64)
    pacer.observe(num_decodes=1, num_prefill_tokens=0, seconds=0.010)
    pacer.observe(num_decodes=1, num_prefill_tokens=10, seconds=0.020)  # 1 ms a token -> 10 tokens
    config = SchedulerConfig(max_num_batched_tokens=64, max_num_seqs=8)
    s = Scheduler(config, BlockManager(64, 4, enable_prefix_caching=False), 64, pacer)
    a = make_request("a", prompt=[1, 2, 3])
    s.add(a)
    assert [p.num_new_tokens for p in s.schedule().prefills] == [3]
    a.num_computed_tokens = 3
    a.token_ids.append(9)
    return s


def test_scheduler_caps_prefill_while_decodes_run() -> None:
    s = one_stream_decoding()
    s.add(make_request("b", prompt=list(range(40))))
    out = s.schedule()
    assert [d.request.request_id for d in out.decodes] == ["a"]
    assert [(p.request.request_id, p.num_new_tokens) for p in out.prefills] == [("b", 10)]


def test_scheduler_weighs_a_queue_of_waiting_requests_against_the_running_streams() -> None:
    s = one_stream_decoding()
    for name in "bcd":  # three requests wait behind one stream: three times the prompt tokens
        s.add(make_request(name, prompt=list(range(20))))
    out = s.schedule()
    assert [d.request.request_id for d in out.decodes] == ["a"]
    assert [(p.request.request_id, p.num_new_tokens) for p in out.prefills] == [("b", 20), ("c", 10)]


def test_a_rising_prompt_cost_is_taken_at_once_and_a_falling_one_averaged() -> None:
    # A long prompt's later chunks attend to more context: sizing them from a stale average stalls.
    pacer = PrefillPacer(stall_factor=2.5, min_chunk=8, max_tokens=512)
    pacer.observe(num_decodes=4, num_prefill_tokens=0, seconds=0.010)
    pacer.observe(num_decodes=4, num_prefill_tokens=100, seconds=0.060)  # 0.5 ms a token
    assert pacer.prefill_budget(num_decodes=4) == 30
    pacer.observe(num_decodes=4, num_prefill_tokens=30, seconds=0.010 + 30 * 0.001)  # now 1 ms a token
    assert pacer.prefill_budget(num_decodes=4) == 15  # (2.5 - 1) * 10 ms / 1 ms
    pacer.observe(num_decodes=4, num_prefill_tokens=15, seconds=0.010 + 15 * 0.0005)  # cheaper again
    assert pacer.prefill_budget(num_decodes=4) == int(1.5 * 0.010 / (0.8 * 0.001 + 0.2 * 0.0005))


def spread_pacer() -> PrefillPacer:
    """Stall budget 30 tokens a waiting request (as above), prompt work spread over 4 steps."""
    pacer = PrefillPacer(stall_factor=2.5, min_chunk=8, max_tokens=512, spread_steps=4)
    pacer.observe(num_decodes=4, num_prefill_tokens=0, seconds=0.010)
    pacer.observe(num_decodes=4, num_prefill_tokens=100, seconds=0.060)
    return pacer


def test_spread_divides_the_waiting_prompt_work_over_steps() -> None:
    pacer = spread_pacer()
    assert pacer.prefill_budget(num_decodes=4, num_pending=1, backlog=100) == 25  # 100 / 4
    assert pacer.prefill_budget(num_decodes=4, num_pending=1, backlog=101) == 26  # rounded up
    assert pacer.prefill_budget(num_decodes=4, num_pending=1, backlog=20) == 8  # at least min_chunk
    assert pacer.prefill_budget(num_decodes=0, num_pending=1, backlog=100) == 512  # nothing decodes


def test_spread_stays_within_the_stall_budget() -> None:
    pacer = spread_pacer()
    assert pacer.prefill_budget(num_decodes=4, num_pending=1, backlog=4000) == 30  # one long prompt
    assert pacer.prefill_budget(num_decodes=4, num_pending=3, backlog=1000) == 90
    assert pacer.prefill_budget(num_decodes=4, num_pending=60, backlog=20000) == 512  # a burst


def test_scheduler_spreads_arrivals_over_steps() -> None:
    pacer = PrefillPacer(stall_factor=4.0, min_chunk=4, max_tokens=64, spread_steps=4)
    pacer.observe(num_decodes=1, num_prefill_tokens=0, seconds=0.010)
    pacer.observe(num_decodes=1, num_prefill_tokens=10, seconds=0.020)  # stall budget: 30 a request
    config = SchedulerConfig(max_num_batched_tokens=64, max_num_seqs=8)
    s = Scheduler(config, BlockManager(64, 4, enable_prefix_caching=False), 64, pacer)
    a = make_request("a", prompt=[1, 2, 3])
    s.add(a)
    s.schedule()
    a.num_computed_tokens = 3
    a.token_ids.append(9)
    b = make_request("b", prompt=list(range(40)))
    s.add(b)
    chunks = []
    while b.num_computed_tokens < b.num_tokens:
        out = s.schedule()
        assert [d.request.request_id for d in out.decodes] == ["a"]  # the stream decodes every step
        (prefill,) = out.prefills
        chunks.append(prefill.num_new_tokens)
        b.num_computed_tokens += prefill.num_new_tokens
        a.num_computed_tokens += 1
        a.token_ids.append(9)
    assert chunks == [10, 8, 6, 4, 4, 4, 4]  # ceil(left / 4), at least min_chunk (4)
