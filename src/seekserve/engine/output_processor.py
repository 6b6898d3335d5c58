"""From sampled tokens to what callers see: detokenization, stop checks and `RequestOutput`s.

A request with `n > 1` runs as n sequences (`<id>#0`, `<id>#1`, ...) that share the prompt (and,
with prefix caching, its KV blocks); `RequestGroup` gathers their outputs into one `RequestOutput`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from seekserve.engine.detokenizer import IncrementalDetokenizer
from seekserve.engine.outputs import CompletionOutput, RequestMetrics, RequestOutput
from seekserve.engine.request import FinishReason, Logprob, Request, RequestStatus

__all__ = ["OutputProcessor", "RequestGroup"]


class RequestGroup:
    """The sequences of one user request (n of them) and their accumulated outputs."""

    def __init__(self, request_id: str, prompt: str | None, prompt_token_ids: list[int], seqs: list[Request]):
        self.request_id = request_id
        self.prompt = prompt
        self.prompt_token_ids = prompt_token_ids
        self.seqs = seqs
        self.outputs = [CompletionOutput(index=i, text="", token_ids=[]) for i in range(len(seqs))]

    @property
    def finished(self) -> bool:
        return all(s.is_finished for s in self.seqs)

    def snapshot(self) -> RequestOutput:
        """The group's state with this step's deltas; deltas are cleared for the next step."""
        outputs = [replace(o, token_ids=list(o.token_ids)) for o in self.outputs]
        for o in self.outputs:
            o.delta_text, o.delta_token_ids, o.delta_logprobs = "", [], []
        return RequestOutput(
            self.request_id, self.prompt, self.prompt_token_ids, outputs, self.finished, self._metrics()
        )

    def _metrics(self) -> RequestMetrics:
        times = [s.times for s in self.seqs]
        return RequestMetrics(
            arrival_time=times[0].arrival,
            first_scheduled_time=min((t.first_scheduled for t in times if t.first_scheduled), default=None),
            first_token_time=min((t.first_token for t in times if t.first_token), default=None),
            last_token_time=max((t.last_token for t in times if t.last_token), default=None),
            finished_time=max((t.finished or 0.0 for t in times), default=None) if self.finished else None,
            num_cached_tokens=self.seqs[0].num_cached_tokens,
            num_preemptions=sum(s.num_preemptions for s in self.seqs),
        )


class OutputProcessor:
    """Owns the groups of the requests in flight and a detokenizer per sequence.

    `free(seq)` is called once when a sequence finishes (the engine takes it out of the scheduler
    and frees its blocks there); the group stays until `retire` hands out its final output.
    """

    def __init__(self, tokenizer: Any, max_model_len: int, free: Callable[[Request], None]) -> None:
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.free = free
        self.groups: dict[str, RequestGroup] = {}
        self._detokenizers: dict[Request, IncrementalDetokenizer] = {}
        self._group_of: dict[Request, tuple[RequestGroup, int]] = {}

    def add(self, group: RequestGroup) -> None:
        self.groups[group.request_id] = group
        for index, seq in enumerate(group.seqs):
            self._group_of[seq] = (group, index)
            self._detokenizers[seq] = IncrementalDetokenizer(self.tokenizer, seq)

    def group_of(self, seq: Request) -> RequestGroup:
        return self._group_of[seq][0]

    def append_token(self, seq: Request, token_id: int, logprob: Logprob | None, now: float) -> None:
        """Add a sampled token to its sequence and output, finishing it on a stop or a limit."""
        seq.token_ids.append(token_id)
        if seq.times.first_token is None:
            seq.times.first_token = now
        seq.times.last_token = now
        if logprob is not None:
            seq.logprobs.append(logprob)
        detok = self._detokenizers[seq]
        group, index = self._group_of[seq]
        output = group.outputs[index]
        finish = self._check_stop(seq, token_id, detok)
        output.token_ids.append(token_id)
        output.delta_token_ids.append(token_id)
        if logprob is not None:
            output.delta_logprobs.append(logprob)
            output.logprobs = seq.logprobs
        if finish is not None:
            self.finish(seq, finish)
        output.delta_text += detok.take_delta(finished=seq.is_finished)
        output.text = detok.sent_text

    def _check_stop(self, seq: Request, token_id: int, detok: IncrementalDetokenizer) -> FinishReason | None:
        params = seq.params
        if token_id in seq.stop_token_ids and seq.num_output_tokens > params.min_tokens - 1:
            seq.stop_reason = token_id if token_id in params.stop_token_ids else None
            return FinishReason.STOP
        detok.add_tokens([token_id])
        if detok.stop_string is not None:
            seq.stop_reason = detok.stop_string
            return FinishReason.STOP
        if (params.max_tokens is not None and seq.num_output_tokens >= params.max_tokens) or (
            seq.num_tokens >= self.max_model_len
        ):
            return FinishReason.LENGTH
        return None

    def finish(self, seq: Request, reason: FinishReason) -> None:
        self.free(seq)
        seq.status = RequestStatus.FINISHED
        seq.finish_reason = reason
        seq.times.finished = time.monotonic()
        group, index = self._group_of[seq]
        output = group.outputs[index]
        output.finish_reason = reason.value
        output.stop_reason = seq.stop_reason

    def abort(self, request_id: str) -> RequestOutput | None:
        """Finish every unfinished sequence of a request; its final output, or None if unknown."""
        group = self.groups.get(request_id)
        if group is None:
            return None
        for seq in group.seqs:
            if not seq.is_finished:
                self.finish(seq, FinishReason.ABORT)
        return self.retire(group)

    def output(self, group: RequestGroup) -> RequestOutput:
        """This step's output of a group that produced tokens; a finished group is retired."""
        return self.retire(group) if group.finished else group.snapshot()

    def retire(self, group: RequestGroup) -> RequestOutput:
        out = group.snapshot()
        del self.groups[group.request_id]
        for seq in group.seqs:
            self._group_of.pop(seq, None)
            self._detokenizers.pop(seq, None)
        return out
