"""Scheduler: decides which tokens of which requests each engine step computes.

Each step spends a token budget (`max_num_batched_tokens`) in this order:

1. every running request that is decoding (one token each), so streams never stall;
2. running requests still prefilling, a chunk each as far as the budget reaches (while decodes
   run, the pacer (engine/pacer.py) also caps the prefill tokens, so streams do not stall);
3. waiting requests, admitted in arrival order while the budget, `max_num_seqs` and the free
   KV blocks allow (prefix-cache hits skip computing their cached tokens).

When a running request needs a block and none is free, the most recently admitted running
request is preempted: its blocks are freed, its K/V will be recomputed, and it goes back to the
front of the waiting queue. In "static" scheduling a batch is admitted only when nothing is
running, so new requests wait until the whole batch has finished.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

from seekserve.engine.block_manager import BlockManager
from seekserve.engine.config import SchedulerConfig
from seekserve.engine.pacer import PrefillPacer
from seekserve.engine.request import Request, RequestStatus

__all__ = ["ScheduledRequest", "Scheduler", "SchedulerOutput"]


@dataclass(frozen=True)
class ScheduledRequest:
    """`num_new_tokens` tokens of `request`, starting at its `num_computed_tokens`, run this step."""

    request: Request
    num_new_tokens: int

    @property
    def samples(self) -> bool:
        """True when this step computes the request's last token, so a new token is sampled."""
        return self.request.num_computed_tokens + self.num_new_tokens == self.request.num_tokens


@dataclass
class SchedulerOutput:
    """One step's batch: decodes first, then prefill chunks (the model runner relies on this order)."""

    decodes: list[ScheduledRequest] = field(default_factory=list)
    prefills: list[ScheduledRequest] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)

    @property
    def scheduled(self) -> list[ScheduledRequest]:
        return self.decodes + self.prefills

    @property
    def num_batched_tokens(self) -> int:
        return len(self.decodes) + sum(s.num_new_tokens for s in self.prefills)

    @property
    def is_empty(self) -> bool:
        return not self.decodes and not self.prefills


class Scheduler:
    """Owns the waiting queue and the running list. Not thread-safe: the engine thread owns it."""

    def __init__(
        self,
        config: SchedulerConfig,
        block_manager: BlockManager,
        max_num_batched_tokens: int,
        pacer: PrefillPacer | None = None,
    ):
        self.config = config
        self.block_manager = block_manager
        self.max_num_batched_tokens = max_num_batched_tokens
        self.pacer = pacer
        """Caps prefill chunks while decodes run (None: the token budget alone decides)."""
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.num_preemptions = 0
        self._static_batch: set[str] = set()
        """Static scheduling: ids of the batch in flight (members leave as they finish)."""

    @property
    def num_unfinished(self) -> int:
        return len(self.waiting) + len(self.running)

    def add(self, request: Request) -> None:
        self.waiting.append(request)

    def remove(self, request: Request) -> None:
        """Take a request out of the queues and free its blocks (it finished or was aborted)."""
        if request.status is RequestStatus.RUNNING:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        self.block_manager.free(request)
        self._static_batch.discard(request.request_id)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        for request in [r for r in self.running if not r.is_prefilling]:
            if request.status is RequestStatus.RUNNING and self._reserve(request, 1, out):
                out.decodes.append(ScheduledRequest(request, 1))
        prefilling = [r for r in self.running if r.is_prefilling]
        num_pending = len(prefilling) + len(self.waiting)
        backlog = sum(r.num_tokens - r.num_computed_tokens for r in (*prefilling, *self.waiting))
        for request in prefilling:
            budget = self._budget(out, num_pending, backlog)
            if request.status is not RequestStatus.RUNNING or budget == 0:
                continue
            num_new = self._chunk(request.num_tokens - request.num_computed_tokens, budget)
            if num_new and self._reserve(request, num_new, out):
                out.prefills.append(ScheduledRequest(request, num_new))
        self._admit(out, num_pending, backlog)
        return out

    def _admit(self, out: SchedulerOutput, num_pending: int, backlog: int) -> None:
        static = self.config.scheduling == "static"
        if static and not self._static_batch:
            # The previous batch is done: the next one is the head of the queue, up to max_num_seqs.
            self._static_batch = {
                r.request_id for r in itertools.islice(self.waiting, self.config.max_num_seqs)
            }
        while self.waiting and len(self.running) < self.config.max_num_seqs:
            request = self.waiting[0]
            if static and request.request_id not in self._static_batch:
                break  # a static batch is in flight: nothing new until all of it has finished
            budget = self._budget(out, num_pending, backlog)
            hit = self.block_manager.lookup_prefix(request)
            num_new = self._chunk(request.num_tokens - hit.num_tokens, budget)
            if num_new == 0 or not self.block_manager.allocate(request, num_new, hit):
                break
            self.waiting.popleft()
            request.status = RequestStatus.RUNNING
            self.running.append(request)
            out.prefills.append(ScheduledRequest(request, num_new))

    def _budget(self, out: SchedulerOutput, num_pending: int, backlog: int) -> int:
        """Prefill tokens this step may still take: what is left of the token budget, capped by the
        pacer while decodes are running (`num_pending` requests wait for prompt work, `backlog`
        prompt tokens in all, counted when the step began)."""
        left = self.max_num_batched_tokens - out.num_batched_tokens
        if self.pacer is not None:
            prefill_tokens = out.num_batched_tokens - len(out.decodes)
            budget = self.pacer.prefill_budget(len(out.decodes), num_pending, backlog)
            left = min(left, budget - prefill_tokens)
        return max(left, 0)

    def _chunk(self, num_left: int, budget: int) -> int:
        """Tokens of a prefill to run now: as many as the budget allows, or all or none unchunked.

        Unchunked, the engine raises the budget to at least `max_model_len`, so any prompt fits
        a step that has no other prefill.
        """
        if self.config.enable_chunked_prefill:
            return min(num_left, budget)
        return num_left if num_left <= budget else 0

    def _reserve(self, request: Request, num_new: int, out: SchedulerOutput) -> bool:
        """Find blocks for a running request, preempting the newest running requests if needed."""
        while not self.block_manager.allocate(request, num_new):
            victim = self.running[-1]
            self._preempt(victim, out)
            if victim is request:
                return False
        return True

    def _preempt(self, request: Request, out: SchedulerOutput) -> None:
        self.running.remove(request)
        out.decodes = [s for s in out.decodes if s.request is not request]
        out.prefills = [s for s in out.prefills if s.request is not request]
        self.block_manager.free(request)
        request.status = RequestStatus.WAITING
        request.num_computed_tokens = 0
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(request)
        out.preempted.append(request)
