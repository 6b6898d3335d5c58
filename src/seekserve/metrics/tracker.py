"""`RequestTracker`: follows the sequences of one API request as its outputs arrive.

The server hands it every output it reads from the engine (`Generation.outputs`), so latencies
are recorded as the stream advances: the first token's TTFT at once, each later token's gap, and
the per-request histograms when a sequence finishes. Timestamps are the engine's (the step that
produced the tokens, `RequestMetrics.last_token_time`), so a consumer that falls behind, and
receives several steps merged into one output, spreads the gap since its previous token evenly
over the tokens it receives. State is a few numbers per sequence; nothing is kept per token.
"""

from __future__ import annotations

from seekserve.engine.outputs import CompletionOutput, RequestMetrics, RequestOutput
from seekserve.metrics.prometheus import FINISHED_REASONS, FinishedSequence, ServerMetrics

__all__ = ["RequestTracker"]


class _Sequence:
    __slots__ = ("done", "first_token", "last_token")

    def __init__(self) -> None:
        self.first_token: float | None = None
        self.last_token = 0.0
        self.done = False


class RequestTracker:
    """Feeds `metrics` from the outputs of one API request (all its prompts and choices)."""

    def __init__(self, metrics: ServerMetrics, arrival_time: float) -> None:
        self._metrics = metrics
        self._arrival = arrival_time
        self._prompts: dict[int, list[_Sequence]] = {}

    def observe(self, prompt_index: int, out: RequestOutput) -> None:
        """Record what `out` (the latest output of prompt `prompt_index`) adds."""
        times = out.metrics
        if times is None or times.last_token_time is None:
            return  # nothing generated yet (an abort before the first token)
        seqs = self._prompts.get(prompt_index)
        if seqs is None:
            seqs = self._prompts[prompt_index] = [_Sequence() for _ in out.outputs]
        for choice in out.outputs:
            seq = seqs[choice.index]
            if choice.delta_token_ids:
                self._tokens(seq, len(choice.delta_token_ids), times, len(out.prompt_token_ids))
            if choice.finish_reason in FINISHED_REASONS and not seq.done:
                seq.done = True
                self._finished(seq, choice, times, len(out.prompt_token_ids), out.finished)

    def _tokens(self, seq: _Sequence, num_new: int, times: RequestMetrics, num_prompt_tokens: int) -> None:
        now = times.last_token_time
        assert now is not None, "an output with tokens has a last token time"
        if seq.first_token is None:
            # One new token was made at `now`; several merged ones began at the request's first token.
            first = now if num_new == 1 else (times.first_token_time or now)
            seq.first_token = previous = first
            self._metrics.first_token(first - self._arrival, num_prompt_tokens)
            num_new -= 1
        else:
            previous = seq.last_token
        if num_new:
            self._metrics.next_tokens((now - previous) / num_new, num_new)
        seq.last_token = now

    def _finished(
        self,
        seq: _Sequence,
        choice: CompletionOutput,
        times: RequestMetrics,
        num_prompt_tokens: int,
        request_finished: bool,
    ) -> None:
        if seq.first_token is None or times.first_scheduled_time is None:
            return  # finished without a token: cannot happen for "stop" or "length"
        end = times.finished_time if request_finished and times.finished_time is not None else seq.last_token
        self._metrics.finished(
            FinishedSequence(
                finished_reason=str(choice.finish_reason),
                arrival_time=self._arrival,
                first_scheduled_time=times.first_scheduled_time,
                first_token_time=seq.first_token,
                last_token_time=seq.last_token,
                finished_time=end,
                num_prompt_tokens=num_prompt_tokens,
                num_generation_tokens=len(choice.token_ids),
            )
        )
