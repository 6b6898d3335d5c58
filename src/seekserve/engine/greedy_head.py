"""Greedy tokens without the full LM head matmul, for CPUs.

A decode step of a small model on a CPU reads its weights once per token, and the LM head is most
of them (Gemma 3 270M: 336 MB of 536 MB in bfloat16). When every request of a step takes the
argmax of the raw logits (temperature 0, no penalties, no log-probabilities), the head need not
produce logits at all: an int8 copy of it screens the vocabulary with a bound on its error, and
the exact weight decides among the few rows the bound cannot rule out (kernels/greedy_head.cpp).
The step reads about half the head's bytes.

What the token is: torch.argmax of the head's logits for that hidden row computed alone, the head's
own arithmetic (`compute_logits`), first maximum on ties, NaN counting as the maximum. The kernel's
rescore sums in its own float32 order, so the rows whose rounded logit could tie or pass the
maximum in another order (near ties, usually none) are rescored here with torch, the arithmetic of
`compute_logits`: `F.linear` of the bfloat16 weight's rows, `torch._weight_int8pack_mm` of an int8
head's. A hidden row that is not finite takes the whole head. Where `compute_logits` of a batch
computes each row as it would alone, the token is its argmax exactly, whatever else is in the batch:

- bfloat16 plain head: torch's CPU matmul gives each logit the same value for any batch and any
  subset of vocabulary rows (tests/engine/test_greedy_head.py checks it), so the tokens are exact.
  A tied head that the engine prepacks for oneDNN computes its logits with the packed copy, which
  can differ from the plain weight's in the last bit of a rare logit (and between batch sizes).
- int8 head: `compute_logits` takes `_weight_int8pack_mm` up to the layer's `max_kernel_rows` (24)
  rows, whose rows are batch-independent; larger batches dequantize the head to bfloat16 first,
  other roundings. The screen keeps the per-row arithmetic at every batch size.
- float32 plain head: torch's float32 matmul sums in an order that depends on the batch and the
  vocabulary's size, so no per-row reference exists; near ties are decided in float64 (the argmax
  of the correctly rounded logits), which differs from torch's only where its own top logits are
  within a few float32 rounding errors of each other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seekserve.layers.cpu_kernels import MAX_TIES, CpuKernels
from seekserve.models.base import CausalLM
from seekserve.quant.int8 import Int8Weight
from seekserve.quant.linear import QuantizedLinear

__all__ = ["GreedyHead"]


class GreedyHead:
    """The screened argmax of one model's LM head; built by `GreedyHead.build`.

    A plain head (float32 or bfloat16) gets an int8 copy, in the VNNI layout where the CPU has
    integer dot products; a head already quantized to int8 per row is screened in place (its own
    values, no copy) and its rescore reproduces the int8 matmul, so int8 and int4 models (whose
    head is int8) read their head at the screen's speed rather than torch's int8 kernel's.
    """

    def __init__(
        self,
        kernels: CpuKernels,
        max_rows: int,
        dtype: torch.dtype,
        weight: torch.Tensor | None,
        int8: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.kernels = kernels
        self.max_rows = max_rows
        """Most hidden rows per call; a step with more takes the full matmul."""
        self.dtype = dtype
        self.weight = weight
        """The plain head, or None when the head is int8 (q and scale are then the head itself)."""
        q, scale = int8 if int8 is not None else kernels.quantize_rows(weight)  # type: ignore[arg-type]
        self.vocab = q.shape[0]
        self.int8 = (q, scale.to(dtype)) if int8 is not None else None
        """An int8 head (values, scales in `dtype`) as its matmul takes it, for near ties; else None."""
        self.vnni = weight is not None and kernels.has_vnni
        """Screen with integer dot products (the int8 copy in the VNNI layout), else float ones."""
        if self.vnni:
            self.q, self.l1 = kernels.pack_vnni(q)
            self.scale = torch.zeros_like(self.l1)
            self.scale[: scale.shape[0]] = scale
            self.row_sums = None
        else:
            self.q, self.scale, self.l1 = q, scale.float(), torch.empty(0)
            self.row_sums = kernels.row_sums(q) if kernels.has_vnni else None
            """Per-row sums of q for the one-row integer screen (VNNI CPUs), else None."""
        extra = sum(t.nbytes for t in self.row_sums) if self.row_sums is not None else 0
        self.nbytes = self.scale.nbytes + self.l1.nbytes + extra + (self.q.nbytes if int8 is None else 0)
        """Bytes held in addition to the model's weights (the int8 copy and its scales)."""
        self.rows_rescored = 0
        """Vocabulary rows the last call rescored with the exact weight, over all its hidden rows."""

    @classmethod
    def build(cls, model: CausalLM, kernels: CpuKernels | None, max_rows: int) -> GreedyHead | None:
        """The screened head of `model`, or None when its logits are not a plain matmul the
        kernels can screen (biased, soft-capped or non-int8 quantized heads; other dtypes; odd
        sizes)."""
        if kernels is None or max_rows < 1 or not kernels.supports(model.dtype):
            return None
        weight = model.plain_lm_head()
        if weight is not None:
            if weight.device.type != "cpu" or weight.shape[1] % 16 or not weight.is_contiguous():
                return None
            return cls(kernels, max_rows, weight.dtype, weight)
        head = model.logits_head()
        if (
            not (isinstance(head, QuantizedLinear) and isinstance(head.qweight, Int8Weight))
            or head.bias is not None
        ):
            return None
        values, scales = head.qweight.values, head.qweight.scales
        if values.dim() != 2 or values.device.type != "cpu" or values.shape[1] % 16:
            return None
        return cls(kernels, max_rows, model.dtype, None, (values.detach(), scales.detach()))

    def accepts(self, num_rows: int) -> bool:
        return num_rows <= self.max_rows

    def tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """argmax(compute_logits(row)) of each hidden row alone, int64 [rows]; see the module docstring."""
        hidden = hidden.to(self.dtype).contiguous()
        # Rows the screen's float32 bounds cannot take (NaN, infinities, sums of |h| near overflow)
        # are screened as zeros and decided over the whole head.
        whole = ~(hidden.float().abs().sum(dim=-1) < _MAX_HIDDEN_L1)
        screened = torch.where(whole[:, None], 0.0, hidden) if bool(whole.any()) else hidden
        if self.vnni:
            assert self.weight is not None
            found = self.kernels.greedy_head_vnni(screened, self.weight, self.q, self.scale, self.l1)
        else:
            found = self.kernels.greedy_head(screened, self.weight, self.q, self.scale, self.row_sums)
        tokens = found.tokens
        whole |= found.num_ties > MAX_TIES
        near = (found.num_ties > 1) & ~whole
        if bool(near.any()):
            rows = near.nonzero().flatten()
            ties = found.ties[rows]  # [near rows, MAX_TIES], ascending, padded past num_ties
            listed = torch.arange(MAX_TIES) < found.num_ties[rows][:, None]
            vocab_rows = ties[listed].unique()  # sorted
            logits = self._logits(hidden.index_select(0, rows), vocab_rows)  # [near rows, len(vocab_rows)]
            mine = torch.zeros(logits.shape, dtype=torch.bool)  # which columns are the row's own ties
            mine.scatter_(1, torch.searchsorted(vocab_rows, ties.where(listed, ties[:, :1])), True)
            best = logits.masked_fill(~mine, float("-inf")).argmax(dim=-1)  # the first maximum
            tokens[rows] = vocab_rows[best]
        rescored = int(found.rows_rescored.sum())
        for r in whole.nonzero().flatten().tolist():
            tokens[r] = self._logits(hidden[r : r + 1], None).argmax(dim=-1)[0]
            rescored += self.vocab
        self.rows_rescored = rescored
        return tokens

    def _logits(self, hidden: torch.Tensor, vocab_rows: torch.Tensor | None) -> torch.Tensor:
        """The head's logits for `hidden` [rows, dim] at `vocab_rows` (all when None), computed as
        `compute_logits` computes them for one row (float32 heads: in float64)."""
        if self.int8 is not None:
            q, scale = self.int8
            if vocab_rows is not None:
                q, scale = q.index_select(0, vocab_rows), scale.index_select(0, vocab_rows)
            return torch._weight_int8pack_mm(hidden, q, scale)
        assert self.weight is not None
        if vocab_rows is None:
            weight = self.weight
        else:
            # torch's bfloat16 matmul sums in another order for fewer than about 24 weight rows;
            # from there on each logit has the value it has in the full head's matmul.
            padded = vocab_rows[
                torch.arange(max(len(vocab_rows), _MIN_MATMUL_ROWS)).clamp(max=len(vocab_rows) - 1)
            ]
            weight = self.weight.index_select(0, padded)
        if self.dtype == torch.float32:
            return F.linear(hidden.double(), weight.double())[
                :, : weight.shape[0] if vocab_rows is None else len(vocab_rows)
            ]
        return F.linear(hidden, weight)[:, : self.vocab if vocab_rows is None else len(vocab_rows)]


_MIN_MATMUL_ROWS = 64
"""Weight rows a near-tie rescore pads its matmul to, so that it sums as the full head's does."""
_MAX_HIDDEN_L1 = 1e30
"""Largest sum of |h| a hidden row may have to be screened: the screen's bounds stay finite."""
