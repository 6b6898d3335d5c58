"""Penalties and `min_tokens` masking over a batch of logits rows, in place, in a few tensor calls.

The same arithmetic as applying them row by row (`Sampler._penalize`, kept as the reference), in
the same order and float32 operations, so the logits come out bit for bit the same: repetition
(prompt and output tokens: positive logits divided by the penalty, negative ones multiplied),
then frequency and presence (output tokens: `logit -= frequency * count + presence`), then stop
tokens set to -inf while `min_tokens` hides them. Only the touched entries are read and written
(gathered through padded id lists), so the cost follows the number of tokens, not the vocabulary.
"""

from __future__ import annotations

import torch

from seekserve.engine.request import Request

__all__ = ["apply_penalties"]


def apply_penalties(logits: torch.Tensor, requests: list[Request]) -> None:
    """Penalize `logits` ([num_requests, vocab], float32, one row per request) in place."""
    device = logits.device
    rows = [i for i, r in enumerate(requests) if r.params.repetition_penalty != 1.0]
    if rows:
        ids = _padded([requests[i].token_ids for i in rows], device)  # [rows, max_tokens]
        index = torch.tensor(rows, device=device)[:, None]
        penalty = torch.tensor([requests[i].params.repetition_penalty for i in rows], device=device)[:, None]
        values = logits[index, ids]
        logits[index, ids] = torch.where(values > 0, values / penalty, values * penalty)
    rows = [i for i, r in enumerate(requests) if r.params.presence_penalty or r.params.frequency_penalty]
    rows = [i for i in rows if requests[i].num_output_tokens]  # no output: nothing to count
    if rows:
        ids = _padded([requests[i].output_token_ids for i in rows], device)
        index = torch.tensor(rows, device=device)[:, None]
        lengths = torch.tensor([requests[i].num_output_tokens for i in rows], device=device)
        real = torch.arange(ids.shape[1], device=device)[None, :] < lengths[:, None]  # not padding
        counts = torch.zeros(len(rows), logits.shape[1], dtype=logits.dtype, device=device)
        counts.scatter_add_(1, ids, real.to(logits.dtype))  # [rows, vocab]: output counts
        count = counts.gather(1, ids)
        frequency = torch.tensor([requests[i].params.frequency_penalty for i in rows], device=device)
        presence = torch.tensor([requests[i].params.presence_penalty for i in rows], device=device)
        delta = frequency[:, None] * count + presence[:, None] * (count > 0).to(logits.dtype)
        logits[index, ids] = logits[index, ids] - delta
    rows = [
        i for i, r in enumerate(requests) if r.stop_token_ids and r.num_output_tokens < r.params.min_tokens
    ]
    if rows:
        ids = _padded([sorted(requests[i].stop_token_ids) for i in rows], device)
        logits[torch.tensor(rows, device=device)[:, None], ids] = float("-inf")


def _padded(sequences: list[list[int]], device: torch.device) -> torch.Tensor:
    """[len(sequences), longest] int64, each row padded with its own first id (a repeat, which
    writes the same value again), so no padding column is needed."""
    width = max(len(s) for s in sequences)
    return torch.tensor([s + [s[0]] * (width - len(s)) for s in sequences], dtype=torch.int64, device=device)
