"""Top-k, top-p and min-p filtering without sorting the vocabulary: the kept tokens of each row.

The definition (what `Sampler` with `full_sort=True` computes over the whole row): scale the
logits by the temperature, order the row by scaled logit descending, ties by token id ascending
(the canonical order); keep the first top_k; on that top-k-renormalized distribution keep the
smallest prefix whose mass reaches top_p (a token is dropped once the mass before it reaches
top_p); softmax over what is left and drop the tokens below min_p times the top token's
probability. What survives is always a prefix of the canonical order.

Here each row takes its `width` largest logits (`torch.topk`, in the logits' dtype) and one
full-row log-sum-exp (the exact probabilities of those candidates). Every token outside the
candidates has a scaled logit at most the smallest candidate's, `m`, so the candidates above
`m` ("certain") are exactly the first `num_certain` tokens of the canonical order. A row is
settled when its kept prefix ends inside the certain ones: the mass before each position is then
known exactly, and every later token is dropped too (top-p and top-k keep prefixes; min-p drops
everything at or below a dropped value). Rows that are not settled go on with more candidates
(512, then 4096), then with the whole row sorted; that last step is the definition itself.

Every softmax of the definition is computed in float64 and rounded to float32 (`softmax_f64`):
the exact probabilities to float32, which the fused CPU kernel (`_kernel_stages`) computes to
within 1e-6 without a float32 copy of the row; torch's float32 softmax is off by about 1e-5 on
262,144 tokens, too far for a top-p cut to be decided the same way on both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seekserve.layers.cpu_kernels import CpuKernels

__all__ = ["Kept", "RowFilters", "kept_tokens", "softmax_f64"]

WIDTHS = (64, 512, 4096)
"""Candidates per row tried before the whole row is sorted."""


@dataclass(frozen=True)
class RowFilters:
    """Per-row filter settings as tensors ([rows] each); disabled filters hold neutral values."""

    temperature: torch.Tensor
    """float32, > 0."""
    top_k: torch.Tensor
    """int64; the vocabulary size where top-k is off."""
    top_p: torch.Tensor
    """float32; +inf where top-p is off (top_p = 1 keeps everything)."""
    min_p: torch.Tensor
    """float32; 0 where min-p is off."""


@dataclass(frozen=True)
class Kept:
    """The kept tokens of some rows: the first `num_kept[j]` entries of row j, in canonical order."""

    rows: torch.Tensor
    """[n] int64: which rows of the batch these are."""
    token_ids: torch.Tensor
    """[n, width] int64 token ids in canonical order."""
    weights: torch.Tensor
    """[n, width] float32: the kept tokens' probabilities (not renormalized after min-p), else 0."""
    num_kept: torch.Tensor
    """[n] int64."""
    in_token_order: bool = False
    """The entries are in token-id order (rows with no filter, which keep every token)."""


def kept_tokens(logits: torch.Tensor, filters: RowFilters, kernels: CpuKernels | None = None) -> list[Kept]:
    """The kept tokens of every row of `logits` ([rows, vocab], any float dtype), in groups by the
    number of candidates each needed. Every row appears in exactly one group. With `kernels`, CPU
    rows in float32 or bfloat16 take their candidates from the fused kernel (see `_kernel_stages`)."""
    vocab = logits.shape[-1]
    top_k = filters.top_k
    whole = (top_k >= vocab) & torch.isinf(filters.top_p) & (filters.min_p == 0)
    groups = [_whole_rows(logits, filters.temperature, whole.nonzero()[:, 0])] if bool(whole.any()) else []
    pending = (~whole).nonzero()[:, 0]
    if not len(pending):
        return groups
    need = int(top_k[top_k < vocab].max()) + 1 if bool((top_k < vocab).any()) else 0
    first = max(WIDTHS[0], min(need, WIDTHS[-1]))
    widths = [w for w in sorted({first, *(w for w in WIDTHS if w > first)}) if w < vocab]
    if kernels is not None and logits.device.type == "cpu" and kernels.supports(logits.dtype):
        pending, exhausted = _kernel_stages(logits, filters, pending, widths, kernels, groups)
        if len(exhausted):  # past the widest candidates: the full sort
            _torch_stages(logits, filters, exhausted, [], groups)
    if len(pending):
        _torch_stages(logits, filters, pending, widths, groups)
    return groups


def _kernel_stages(
    logits: torch.Tensor,
    filters: RowFilters,
    pending: torch.Tensor,
    widths: list[int],
    kernels: CpuKernels,
    groups: list[Kept],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidate stages with the fused kernel: each row's `width` largest scaled logits, exactly
    the first `width` of the canonical order, and their whole-row probabilities from the kernel's
    softmax (two passes over the row, no float32 copy, no sort). Appends the settled rows to
    `groups`; returns (rows for the torch stages, rows not settled within the widest candidates).

    The kernel's probabilities are within 1e-6 (relative, in the worst case; see sampling.cpp) of
    `softmax_f64`'s, not bit for bit equal to them. A row is therefore taken here only where no
    decision that uses them is within `MARGIN` (relative) of its threshold: no candidate's mass
    before it within MARGIN * top_p of top_p (top-k off), and no candidate's probability within
    MARGIN of min_p times the top one's (no top-k, no top-p). Such a row's kept set is the full
    sort's; the other rows, and rows the kernel reports as having a NaN or no finite maximum, go
    to the torch stages."""
    vocab = logits.shape[-1]
    to_torch = []
    for width in widths:
        if not len(pending):
            break
        cand = kernels.sampling_candidates(_rows(logits, pending), filters.temperature[pending], width)
        f = _select(filters, pending)
        num_certain = torch.full((len(pending),), width - 1)  # the candidates are a canonical prefix
        kept, settled = _filter(cand.scaled, cand.probs, f, num_certain, vocab)
        bad = (cand.num_candidates != width) | _near_threshold(cand.probs, f, vocab)
        to_torch.append(pending[bad])
        settled &= ~bad
        if bool(settled.any()):
            groups.append(Kept(pending[settled], cand.token_ids[settled], kept[0][settled], kept[1][settled]))
        pending = pending[~settled & ~bad]
    return torch.cat([pending[:0], *to_torch]).sort().values, pending  # in row order, as `_rows` needs


MARGIN = 3e-6
"""Relative distance from a top-p or min-p threshold within which the kernel's probabilities do not
decide: three times the worst case of their error, float32 roundings of the cumulative mass included."""


def _near_threshold(probs: torch.Tensor, filters: RowFilters, vocab: int) -> torch.Tensor:
    """[n] bool: rows whose top-p or min-p decision on these whole-row probabilities ([n, width],
    canonical order) is within MARGIN of its threshold (only rows where top-k keeps the whole row
    use them)."""
    whole_top_k = filters.top_k >= vocab
    top_p = filters.top_p[:, None]
    before = probs.cumsum(dim=-1) - probs
    near_p = torch.isfinite(filters.top_p) & ((before - top_p).abs() <= MARGIN * top_p).any(dim=-1)
    cut = filters.min_p[:, None] * probs[:, :1]
    near_min_p = torch.isinf(filters.top_p) & ((probs - cut).abs() <= MARGIN * cut).any(dim=-1)
    return whole_top_k & (near_p | (near_min_p & (filters.min_p > 0)))


def _torch_stages(
    logits: torch.Tensor, filters: RowFilters, pending: torch.Tensor, widths: list[int], groups: list[Kept]
) -> None:
    """The candidate stages with `torch.topk` and torch's whole-row softmax, then the full sort, for
    the rows `pending`; appends their groups to `groups`."""
    vocab = logits.shape[-1]
    top_k = filters.top_k
    # The whole-row softmax of the rows whose top-k keeps the whole row: their candidates'
    # probabilities, bit for bit those the full sort computes. slot: row -> index in `full`.
    whole_top_k = pending[top_k[pending] >= vocab]
    full = _softmax(_rows(logits, whole_top_k), filters.temperature[whole_top_k])  # [len(whole_top_k), vocab]
    slot = torch.full((logits.shape[0],), -1, device=logits.device)
    slot[whole_top_k] = torch.arange(len(whole_top_k), device=logits.device)
    for width in widths:
        if not len(pending):
            break
        values, ids = _rows(logits, pending).topk(width, dim=-1)
        scaled, ids = _canonical(values.float() / filters.temperature[pending, None], ids)
        num_certain = (scaled > scaled[:, -1:]).sum(dim=-1)
        at = _probs_at(full, slot[pending], ids)
        kept, settled = _filter(scaled, at, _select(filters, pending), num_certain, vocab)
        if bool(settled.any()):
            groups.append(Kept(pending[settled], ids[settled], kept[0][settled], kept[1][settled]))
        pending = pending[~settled]
    if len(pending):
        scaled = logits[pending].float() / filters.temperature[pending, None]
        scaled, ids = scaled.sort(dim=-1, descending=True, stable=True)
        everything = torch.full((len(pending),), vocab, device=logits.device)
        at = _probs_at(full, slot[pending], ids)
        (weights, num_kept), _ = _filter(scaled, at, _select(filters, pending), everything, vocab)
        groups.append(Kept(pending, ids, weights, num_kept))


def _whole_rows(logits: torch.Tensor, temperature: torch.Tensor, rows: torch.Tensor) -> Kept:
    """Rows with no filter: every token kept, in token-id order (no sort needed)."""
    vocab = logits.shape[-1]
    weights = (logits[rows] / temperature[rows, None]).softmax(dim=-1)
    ids = torch.arange(vocab, device=logits.device).expand(len(rows), vocab)
    num_kept = torch.full((len(rows),), vocab, device=logits.device)
    return Kept(rows, ids, weights, num_kept, in_token_order=True)


def _rows(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """logits[rows], without a copy when that is every row in order."""
    return logits if len(rows) == len(logits) else logits[rows]


def softmax_f64(scaled: torch.Tensor) -> torch.Tensor:
    """The softmax of float32 scaled logits over the last dimension, computed in float64 and
    rounded to float32: the probabilities of the definition (the full sort's too), to the last bit
    but for a rounding within about 1e-13 of a float32 midpoint."""
    return scaled.double().softmax(dim=-1).float()


def _softmax(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Each row's probabilities over the whole vocabulary (float32, see `softmax_f64`)."""
    return softmax_f64(logits / temperature[:, None].to(torch.float32))


def _probs_at(full: torch.Tensor, slot: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """[n, width]: the whole-row probabilities of the candidates `ids`, 0 where a row has none."""
    has = slot >= 0
    flat = slot.clamp(min=0)[:, None] * full.shape[-1] + ids  # no copy of `full`'s rows
    at = full.view(-1)[flat] if len(full) else torch.zeros(ids.shape, device=ids.device)
    return at.masked_fill(~has[:, None], 0.0)


def _canonical(scaled: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates reordered by scaled logit descending, ties by token id ascending."""
    by_id = ids.argsort(dim=-1)
    scaled, ids = scaled.gather(-1, by_id), ids.gather(-1, by_id)
    scaled, order = scaled.sort(dim=-1, descending=True, stable=True)
    return scaled, ids.gather(-1, order)


def _select(filters: RowFilters, rows: torch.Tensor) -> RowFilters:
    f = filters
    return RowFilters(f.temperature[rows], f.top_k[rows], f.top_p[rows], f.min_p[rows])


def _filter(
    scaled: torch.Tensor,
    full_probs: torch.Tensor,
    filters: RowFilters,
    num_certain: torch.Tensor,
    vocab: int,
) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The kept prefix of each candidate row ([n, width] in canonical order, with `full_probs`
    their whole-row probabilities where top-k is off) as (weights, num_kept), and whether it is
    settled (ends within the first `num_certain` candidates, or the row is the whole vocabulary).
    The same float32 operations as the full sort, on a prefix of its sorted row."""
    width = scaled.shape[-1]
    position = torch.arange(width, device=scaled.device)[None, :]
    whole_top_k = (filters.top_k >= vocab)[:, None]  # top-k keeps the whole row: `full_probs`
    in_k = position < filters.top_k[:, None]
    probs = torch.where(whole_top_k, full_probs, softmax_f64(scaled.masked_fill(~in_k, float("-inf"))))
    # Keep the smallest prefix whose mass reaches top_p: drop a token once the mass before it does.
    keep = in_k & ((probs.cumsum(dim=-1) - probs) < filters.top_p[:, None])
    unfiltered = whole_top_k & torch.isinf(filters.top_p)[:, None]  # before min-p, the whole row
    probs = torch.where(unfiltered, full_probs, softmax_f64(scaled.masked_fill(~keep, float("-inf"))))
    probs = probs.masked_fill(~keep, 0.0)
    num_before_min_p = keep.sum(dim=-1)
    keep &= ~(probs < filters.min_p[:, None] * probs[:, :1])  # canonical order: the top token first
    num_kept = keep.sum(dim=-1)
    settled = (
        (whole_top_k[:, 0] | (filters.top_k <= num_certain))
        & (unfiltered[:, 0] | (num_before_min_p <= num_certain))
        & (num_kept <= num_certain)
    ) | (num_certain >= vocab)
    return (probs.masked_fill(~keep, 0.0), num_kept), settled
