from __future__ import annotations

from factories import make_request
from seekserve.engine.block_manager import BlockManager
from seekserve.engine.config import SchedulerConfig
from seekserve.engine.request import Request, RequestStatus
from seekserve.engine.scheduler import Scheduler, SchedulerOutput


def make_scheduler(num_blocks: int = 64, block_size: int = 4, budget: int = 16, **kw: object) -> Scheduler:
    config = SchedulerConfig(max_num_batched_tokens=budget, **kw)  # type: ignore[arg-type]
    return Scheduler(config, BlockManager(num_blocks, block_size, enable_prefix_caching=False), budget)


def run(s: Scheduler, out: SchedulerOutput, sampled_token: int = 7) -> None:
    """Pretend the step ran: advance computed tokens and append a token where one was sampled."""
    for sched in out.scheduled:
        samples = sched.samples
        sched.request.num_computed_tokens += sched.num_new_tokens
        if samples:
            sched.request.token_ids.append(sampled_token)


def shape(out: SchedulerOutput) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    return (
        [(d.request.request_id, d.num_new_tokens) for d in out.decodes],
        [(p.request.request_id, p.num_new_tokens) for p in out.prefills],
    )


def test_long_prompt_is_chunked_and_decodes_go_first() -> None:
    s = make_scheduler(budget=8, max_num_seqs=4)
    a = make_request("a", prompt=[1, 2, 3])
    s.add(a)
    out = s.schedule()
    assert shape(out) == ([], [("a", 3)])
    run(s, out)
    s.add(make_request("b", prompt=list(range(20))))
    out = s.schedule()
    assert shape(out) == ([("a", 1)], [("b", 7)])  # a's decode first, b gets the rest of the budget
    run(s, out)
    out = s.schedule()
    assert shape(out) == ([("a", 1)], [("b", 7)])
    run(s, out)
    out = s.schedule()
    assert shape(out) == ([("a", 1)], [("b", 6)])
    assert out.prefills[0].samples


def test_max_num_seqs_limits_admission() -> None:
    s = make_scheduler(max_num_seqs=2, budget=64)
    for i in range(3):
        s.add(make_request(f"r{i}", prompt=[1, 2]))
    out = s.schedule()
    assert [p.request.request_id for p in out.prefills] == ["r0", "r1"]
    assert [r.request_id for r in s.waiting] == ["r2"]


def test_preemption_takes_the_most_recently_admitted() -> None:
    # 4 blocks of 2 tokens; three 2-token prompts fill 3 blocks; decodes then need more blocks.
    s = make_scheduler(num_blocks=4, block_size=2, budget=16, max_num_seqs=4)
    reqs = [make_request(f"r{i}", prompt=[1, 2]) for i in range(3)]
    for r in reqs:
        s.add(r)
    run(s, s.schedule())  # all three prefilled, each holds one full block and has a sampled token
    out = s.schedule()  # each decode needs a second block; one is free, r2's is taken back for r1
    assert [r.request_id for r in out.preempted] == ["r2"]
    assert shape(out) == ([("r0", 1), ("r1", 1)], [])
    assert [r.request_id for r in s.waiting] == ["r2"]
    assert reqs[2].num_computed_tokens == 0 and reqs[2].status is RequestStatus.WAITING
    assert s.num_preemptions == 1


def test_static_scheduling_admits_nothing_until_the_batch_finishes() -> None:
    s = make_scheduler(budget=64, max_num_seqs=8, scheduling="static")
    a = make_request("a", prompt=[1, 2, 3])
    s.add(a)
    run(s, s.schedule())
    s.add(make_request("b", prompt=[4, 5]))
    out = s.schedule()
    assert shape(out) == ([("a", 1)], [])
    run(s, out)
    finish(s, a)
    out = s.schedule()
    assert shape(out) == ([], [("b", 2)])


def test_continuous_scheduling_admits_while_others_run() -> None:
    s = make_scheduler(budget=64, max_num_seqs=8)
    a = make_request("a", prompt=[1, 2, 3])
    s.add(a)
    run(s, s.schedule())
    s.add(make_request("b", prompt=[4, 5]))
    assert shape(s.schedule()) == ([("a", 1)], [("b", 2)])


def finish(s: Scheduler, r: Request) -> None:
    s.remove(r)
    r.status = RequestStatus.FINISHED


def test_static_batch_is_formed_from_the_queue_even_when_admitted_over_several_steps() -> None:
    s = make_scheduler(budget=4, max_num_seqs=2, scheduling="static")
    reqs = [make_request(f"r{i}", prompt=[1, 2, 3, 4]) for i in range(3)]
    for r in reqs:
        s.add(r)
    out = s.schedule()
    assert shape(out) == ([], [("r0", 4)])  # the budget admits one prompt per step
    run(s, out)
    out = s.schedule()
    assert shape(out) == ([("r0", 1)], [("r1", 3)])  # r1 belongs to the batch: admitted later
    run(s, out)
    out = s.schedule()
    assert shape(out) == ([("r0", 1), ("r1", 1)], [])  # r2 waits for the next batch
    run(s, out)
    finish(s, reqs[0])
    finish(s, reqs[1])
    assert shape(s.schedule()) == ([], [("r2", 4)])
