"""Sampler: turns one step's hidden states into the next token of each sampled request.

It decides how a step's rows are sampled: when every request takes the argmax of its raw logits
(temperature 0, no penalties, no log-probabilities) and a screened LM head (`GreedyHead`) takes
that many rows, the head gives the tokens without logits; otherwise the model's head computes the
logits and the rest below runs on them.

Order of operations per row, as vLLM applies them: penalties (repetition on prompt and output,
presence and frequency on output), `min_tokens` masking of stop tokens, then either argmax
(temperature 0) or temperature, top-k, top-p and min-p filtering followed by a draw. Draws use
the exponential-race trick (argmax of p / q with q ~ Exp(1)), whose noise comes from the
request's own generator when it has a seed, so a seeded request reproduces whatever else is in
the batch. Log-probabilities are those of the raw model output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from seekserve.engine.candidates import Kept, RowFilters, kept_tokens, softmax_f64
from seekserve.engine.greedy_head import GreedyHead
from seekserve.engine.penalties import apply_penalties
from seekserve.engine.request import Logprob, Request
from seekserve.layers.cpu_kernels import CpuKernels

__all__ = ["Sampler", "SamplerOutput"]


@dataclass(frozen=True)
class SamplerOutput:
    token_ids: list[int]
    logprobs: list[Logprob | None]


class Sampler:
    def __init__(
        self,
        seed: int = 0,
        kernels: CpuKernels | None = None,
        greedy_head: GreedyHead | None = None,
        full_sort: bool = False,
    ) -> None:
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        self.full_sort = full_sort
        """Filter and draw the reference way: penalties row by row, every row's whole vocabulary
        sorted, noise for every token. Same distribution, other draws; for tests and benchmarks."""
        self.kernels = kernels
        """CPU kernels for the greedy argmax and the sampling candidates (passes over the logits in their
        own dtype); None uses torch."""
        self.greedy_head = greedy_head
        """The screened LM head for all-greedy steps, or None (the logits are always computed)."""

    def sample(
        self,
        hidden: torch.Tensor,
        requests: list[Request],
        compute_logits: Callable[[torch.Tensor], torch.Tensor],
    ) -> SamplerOutput:
        """The next token of each request from its final hidden row ([num_requests, hidden], in
        request order); `compute_logits` is the model's head."""
        head = self.greedy_head
        if head is not None and head.accepts(len(requests)) and not self.needs_logits(requests):
            return SamplerOutput(head.tokens(hidden).tolist(), [None] * len(requests))
        return self(compute_logits(hidden), requests)

    @staticmethod
    def needs_logits(requests: list[Request]) -> bool:
        """Whether some request needs more than the argmax of its raw logits."""
        return any(
            not r.params.greedy
            or r.params.has_penalties
            or _masks_stop_tokens(r)
            or r.params.logprobs is not None
            for r in requests
        )

    def __call__(self, logits: torch.Tensor, requests: list[Request]) -> SamplerOutput:
        """logits: [num_requests, vocab], one row per request in `requests`, in float32 or the
        model's dtype (argmax needs no conversion; everything else runs in float32)."""
        raw = logits
        if any(r.params.has_penalties or _masks_stop_tokens(r) for r in requests):
            logits = logits.float()
            logits = logits.clone() if logits is raw else logits
            if self.full_sort:
                for row, request in enumerate(requests):
                    self._penalize(logits[row], request)
            else:
                apply_penalties(logits, requests)
        random = [i for i, r in enumerate(requests) if not r.params.greedy]
        if not random:  # all greedy: no copy of the [rows, vocab] logits at all
            token_ids = self.kernels.argmax(logits) if self.kernels else logits.argmax(dim=-1)
        else:
            token_ids = torch.empty(len(requests), dtype=torch.int64, device=logits.device)
            greedy = [i for i, r in enumerate(requests) if r.params.greedy]
            if greedy:
                token_ids[greedy] = logits[greedy].argmax(dim=-1)
            chosen = [requests[i] for i in random]
            draw = self._draw_full_sort if self.full_sort else self._draw
            token_ids[random] = draw(logits[random], chosen)
        ids = token_ids.tolist()
        return SamplerOutput(ids, self._logprobs(raw, requests, ids))

    @staticmethod
    def _penalize(row: torch.Tensor, request: Request) -> None:
        """Apply one request's penalties and min_tokens mask to its logits row, in place."""
        p = request.params
        if p.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(request.token_ids)), dtype=torch.int64, device=row.device)
            values = row[seen]
            row[seen] = torch.where(values > 0, values / p.repetition_penalty, values * p.repetition_penalty)
        if p.presence_penalty or p.frequency_penalty:
            output = torch.tensor(request.output_token_ids, dtype=torch.int64, device=row.device)
            counts = torch.bincount(output, minlength=row.shape[0])[: row.shape[0]].to(row.dtype)
            row -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0).to(row.dtype)
        if request.num_output_tokens < p.min_tokens and request.stop_token_ids:
            row[sorted(request.stop_token_ids)] = float("-inf")

    def _draw(self, logits: torch.Tensor, requests: list[Request]) -> torch.Tensor:
        """One token per row: the exponential race over each row's kept tokens only. Unseeded rows
        take their noise from the sampler's generator in one call; a seeded row draws one number
        per kept token from its own generator, in token-id order, so its token depends on its row
        alone."""
        device = logits.device
        token_ids = torch.empty(len(requests), dtype=torch.int64, device=device)
        filters = self.row_filters(requests, logits.shape[-1], device)
        for kept in kept_tokens(logits, filters, self.kernels):
            noise = torch.ones_like(kept.weights)  # [rows, width]
            rows = kept.rows.tolist()
            unseeded = [j for j, i in enumerate(rows) if requests[i].generator is None]
            if unseeded:
                draws = torch.empty(len(unseeded), noise.shape[1]).exponential_(generator=self.generator)
                noise[unseeded] = draws.to(device)
            for j, i in enumerate(rows):
                generator = requests[i].generator
                if generator is not None:
                    noise[j] = _seeded_noise(kept, j, generator)
            winners = (kept.weights / noise).argmax(dim=-1, keepdim=True)
            token_ids[kept.rows] = kept.token_ids.gather(-1, winners)[:, 0]
        return token_ids

    @staticmethod
    def row_filters(requests: list[Request], vocab: int, device: torch.device) -> RowFilters:
        """The requests' temperature, top-k, top-p and min-p as tensors (`kept_tokens`' input)."""
        return RowFilters(
            temperature=torch.tensor([r.params.temperature for r in requests], device=device),
            top_k=torch.tensor([r.params.top_k if 0 < r.params.top_k < vocab else vocab for r in requests]),
            top_p=torch.tensor([r.params.top_p if r.params.top_p < 1.0 else float("inf") for r in requests]),
            min_p=torch.tensor([r.params.min_p for r in requests], device=device),
        )

    def _draw_full_sort(self, logits: torch.Tensor, requests: list[Request]) -> torch.Tensor:
        """The reference draw: the whole vocabulary of every row sorted, noise for every token."""
        probs = self.full_sort_probs(logits, requests)
        noise = torch.empty(probs.shape, dtype=torch.float32)
        for row, request in enumerate(requests):
            noise[row].exponential_(generator=request.generator or self.generator)
        return (probs / noise.to(probs.device)).argmax(dim=-1)

    @staticmethod
    def full_sort_probs(logits: torch.Tensor, requests: list[Request]) -> torch.Tensor:
        """The reference filtering: [rows, vocab] float32 probabilities after temperature, top-k,
        top-p and min-p (not renormalized after min-p), every row's whole vocabulary sorted."""
        logits = logits.float()
        temps = torch.tensor([r.params.temperature for r in requests], device=logits.device)
        logits = logits / temps[:, None]
        if any(r.params.top_k > 0 or r.params.top_p < 1.0 for r in requests):
            logits = Sampler._top_k_top_p(logits, requests)
        probs = softmax_f64(logits)
        min_p = torch.tensor([r.params.min_p for r in requests], device=logits.device)
        if bool((min_p > 0).any()):
            probs = probs.masked_fill(probs < min_p[:, None] * probs.amax(dim=-1, keepdim=True), 0.0)
        return probs

    @staticmethod
    def _top_k_top_p(logits: torch.Tensor, requests: list[Request]) -> torch.Tensor:
        vocab = logits.shape[-1]
        top_k = torch.tensor(
            [r.params.top_k if r.params.top_k > 0 else vocab for r in requests], device=logits.device
        )
        # top_p = 1 keeps everything (a float32 cumulative sum may reach 1.0 before the tail).
        top_p = torch.tensor([r.params.top_p if r.params.top_p < 1.0 else float("inf") for r in requests])
        # Stable: equal logits keep token-id order, the tie rule `candidates.py` follows.
        sorted_logits, order = logits.sort(dim=-1, descending=True, stable=True)
        ranks = torch.arange(vocab, device=logits.device)
        drop = ranks[None, :] >= top_k[:, None]
        probs = softmax_f64(sorted_logits.masked_fill(drop, float("-inf")))
        # Where top-k keeps the whole row, its softmax in token order (the same distribution; the
        # whole-row probabilities `candidates.py` computes without sorting).
        whole = (top_k >= vocab)[:, None]
        probs = torch.where(whole, softmax_f64(logits).gather(-1, order), probs)
        # Keep the smallest prefix whose mass reaches top_p: drop a token once the mass before it does.
        drop |= (probs.cumsum(dim=-1) - probs) >= top_p[:, None]
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        return torch.empty_like(logits).scatter_(-1, order, sorted_logits)

    @staticmethod
    def _logprobs(raw: torch.Tensor, requests: list[Request], ids: list[int]) -> list[Logprob | None]:
        rows = [i for i, r in enumerate(requests) if r.params.logprobs is not None]
        result: list[Logprob | None] = [None] * len(requests)
        if not rows:
            return result
        logprobs = raw[rows].float().log_softmax(dim=-1)
        width = max(requests[i].params.logprobs or 0 for i in rows)
        top_values, top_ids = logprobs.topk(width, dim=-1) if width else (logprobs[:, :0], logprobs[:, :0])
        for j, i in enumerate(rows):
            n = requests[i].params.logprobs or 0
            top = tuple(zip(top_ids[j, :n].tolist(), top_values[j, :n].tolist(), strict=True))
            result[i] = Logprob(ids[i], float(logprobs[j, ids[i]]), top)
        return result


def _seeded_noise(kept: Kept, row: int, generator: torch.Generator) -> torch.Tensor:
    """Row `row` of `kept`'s noise from its request's generator: one Exp(1) number per kept token,
    assigned in token-id order (padding and dropped entries get 1, they weigh 0)."""
    num_kept = int(kept.num_kept[row])
    width = kept.weights.shape[1]
    draws = torch.empty(num_kept).exponential_(generator=generator)
    if kept.in_token_order and num_kept == width:
        return draws
    noise = torch.ones(width)
    noise[kept.token_ids[row, :num_kept].argsort()] = draws
    return noise


def _masks_stop_tokens(request: Request) -> bool:
    """Whether `min_tokens` still hides stop tokens from this request's next token."""
    return request.num_output_tokens < request.params.min_tokens and bool(request.stop_token_ids)
