"""PrefillPacer: sizes prefill chunks so that running streams never stall.

A step that carries decodes and a prefill chunk takes the decode-only time plus the chunk's cost;
a big chunk there is a visible gap in every running stream. The pacer learns both costs online
from the steps the engine runs (exponential moving averages of step durations) and, while decodes
are running, caps a step's prefill tokens so that the step takes at most `stall_factor` times a
decode-only step. With no decodes running, prompts get the whole token budget: no stream waits,
so the first token comes as early as possible.

The cap weighs the streams it protects against the requests it keeps from their first token:
each request waiting for prompt work widens the allowed prompt work by one stall's worth, so a
burst or a batch submitted at once is prefilled at full budget (measured on the batch64 workload:
290 tokens/s with a fixed cap, 391 with this weighting, 401 with no pacing), while one long prompt
arriving among running streams is held to the stall factor.

    budget = (stall_factor - 1) * decode_step_s / prefill_token_s * max(1, pending),
    within [min_chunk, max_tokens]

Under a steady stream of arrivals (an HTTP server at a fixed concurrency: each finished request is
followed by a new one) that budget makes every arrival a few long steps among short ones, and
every running stream sees them: the p99 inter-token gap becomes the long step. With `spread_steps`
the budget is also held to the waiting prompt work divided over that many steps, so each step
carries a slice of it and the steps stay alike (measured with vLLM's own client at 16 and 32
clients, docs/benchmarks.md):

    budget = min(stall budget, max(min_chunk, ceil(backlog / spread_steps)))

A burst (a batch submitted at once) keeps the full budget while its backlog is above
spread_steps × the token budget; below that its chunks shrink with the backlog (the anchors'
batch16 workload, greedy: 0.93× the throughput without the spread, batch64 0.98×). One long prompt
among running streams is still held to the stall factor.
"""

from __future__ import annotations

__all__ = ["PrefillPacer"]

_SMOOTHING = 0.2
"""Weight of the newest observation in the moving averages."""


class PrefillPacer:
    """Learns step costs from observations and turns them into a prefill budget. Engine-thread only."""

    def __init__(
        self, stall_factor: float, min_chunk: int, max_tokens: int, spread_steps: int | None = None
    ) -> None:
        assert stall_factor > 1.0, "a stall factor of 1 or less would never admit a prefill token"
        assert spread_steps is None or spread_steps >= 1, "prompt work is spread over at least one step"
        self.stall_factor = stall_factor
        self.min_chunk = min_chunk
        self.max_tokens = max_tokens
        self.spread_steps = spread_steps
        self.decode_step_s: float | None = None
        """Moving average of a step with decodes only."""
        self.prefill_token_s: float | None = None
        """Moving average of what one prefill token adds to a step."""

    def observe(self, num_decodes: int, num_prefill_tokens: int, seconds: float) -> None:
        """Record how long a step with this many decodes and prefill tokens took."""
        if num_prefill_tokens == 0:
            if num_decodes:
                self.decode_step_s = _average(self.decode_step_s, seconds)
            return
        base = self.decode_step_s if num_decodes and self.decode_step_s is not None else 0.0
        per_token = max(seconds - base, 0.0) / num_prefill_tokens
        if self.prefill_token_s is None or per_token > self.prefill_token_s:
            # A prompt's later chunks attend to more context and cost more a token than its first
            # ones: a rise is taken at once (a chunk sized from a stale, lower cost is a stall),
            # a fall is averaged in.
            self.prefill_token_s = per_token
        else:
            self.prefill_token_s = _average(self.prefill_token_s, per_token)

    def prefill_budget(self, num_decodes: int, num_pending: int = 1, backlog: int | None = None) -> int:
        """Prefill tokens a step with `num_decodes` running decodes may carry, while `num_pending`
        requests wait for prompt work (partly prefilled or not yet admitted), `backlog` prompt tokens
        in all."""
        if num_decodes == 0:
            return self.max_tokens
        if self.spread_steps is not None and backlog is not None:
            spread = max(self.min_chunk, -(-backlog // self.spread_steps))
            return min(spread, self._stall_budget(num_decodes, num_pending))
        return self._stall_budget(num_decodes, num_pending)

    def _stall_budget(self, num_decodes: int, num_pending: int) -> int:
        if self.decode_step_s is None:
            return 0  # one decode-only step measures what the streams cost; prompts resume next step
        if not self.prefill_token_s:
            return self.min_chunk  # the prompt cost is unknown: stay small until it is measured
        weight = max(1, num_pending)
        tokens = int((self.stall_factor - 1.0) * self.decode_step_s / self.prefill_token_s * weight)
        return max(self.min_chunk, min(tokens, self.max_tokens))


def _average(current: float | None, value: float) -> float:
    return value if current is None else (1.0 - _SMOOTHING) * current + _SMOOTHING * value
