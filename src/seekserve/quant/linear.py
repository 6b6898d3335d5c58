"""Quantized drop-ins for the model layers: `QuantizedLinear` for `layers.modules.Linear` (fused
q/k/v and gate/up parts included) and `QuantizedEmbedding`, which reads a tied embedding's rows
from the quantized LM head."""

from __future__ import annotations

import torch
from torch import nn

from seekserve.layers.fp8_checkpoint import Fp8BlockTensor, as_dense
from seekserve.layers.modules import FusedParts, empty_param
from seekserve.quant.base import QuantizedWeight

__all__ = ["QuantizedEmbedding", "QuantizedLinear"]


class QuantizedLinear(FusedParts, nn.Module):
    """y = x W^T + b with W in a `QuantizedWeight`; loads, splits and reports parts as `Linear` does.

    Each part is quantized as it loads; once every part of the weight is in, the weight is finished
    (packed for its kernel) and the layer is ready. The bias stays in the compute dtype.
    """

    def __init__(
        self, qweight: QuantizedWeight, output_sizes: tuple[int, ...], bias: bool, dtype: torch.dtype
    ):
        super().__init__()
        self.qweight = qweight
        self.in_features = qweight.in_features
        self.output_sizes = output_sizes
        self.out_features = qweight.out_features
        self.bias = empty_param(self.out_features, dtype=dtype) if bias else None
        self._parts_loaded: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # the engine's [tokens, features]: no reshaping
            y = self.qweight.matmul(x.contiguous())
            return y if self.bias is None else y + self.bias
        rows = x.reshape(-1, self.in_features)
        y = self.qweight.matmul(rows if rows.is_contiguous() else rows.contiguous())
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def load_part(self, index: int, tensor: torch.Tensor | Fp8BlockTensor, is_bias: bool = False) -> None:
        if is_bias:
            self.load_bias_part(index, as_dense(tensor, torch.float32))
            return
        rows = self.part_slice(index)
        expected = (rows.stop - rows.start, self.in_features)
        if tuple(tensor.shape) != expected:
            raise ValueError(f"shape {tuple(tensor.shape)} does not fit {expected}")
        if isinstance(tensor, Fp8BlockTensor):
            self.qweight.load_fp8((), rows.start, tensor)
        else:
            self.qweight.load_rows_chunked((), rows.start, tensor)
        self._parts_loaded.add(index)
        if len(self._parts_loaded) == len(self.output_sizes):
            self.qweight.finish(())

    def load_dense(self, weight: torch.Tensor) -> None:
        """Quantize a whole float weight [out, in] (a tied head from its embedding), in row chunks."""
        assert len(self.output_sizes) == 1, "load_dense fills an unfused layer"
        self.qweight.load_rows_chunked((), 0, weight)
        self._parts_loaded.add(0)
        self.qweight.finish(())

    @property
    def is_loaded(self) -> bool:
        return len(self._parts_loaded) == len(self.output_sizes)

    def dense_weight(self) -> torch.Tensor:
        return self.qweight.dequantize()

    def extra_repr(self) -> str:
        return f"out={self.output_sizes}, bias={self.bias is not None}"


class QuantizedEmbedding(nn.Module):
    """Embedding rows read from the quantized weight of the LM head it is tied to. The checkpoint's
    embedding tensor loads straight into that weight (`load_part`), quantized as it arrives."""

    def __init__(self, qweight: QuantizedWeight):
        super().__init__()
        assert qweight.supports_gather, "a quantized embedding needs a format that reads single rows"
        self.qweight = qweight

    def load_part(self, index: int, tensor: torch.Tensor | Fp8BlockTensor, is_bias: bool = False) -> None:
        expected = (self.qweight.out_features, self.qweight.in_features)
        if index != 0 or is_bias or tuple(tensor.shape) != expected:
            raise ValueError(f"shape {tuple(tensor.shape)} does not fit the embedding's {expected}")
        self.qweight.load_rows_chunked((), 0, as_dense(tensor, torch.float32))
        self.qweight.finish(())

    def checkpoint_params(self) -> dict[str, int]:
        return {"weight": 1}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.qweight.gather_rows(ids.reshape(-1)).view(*ids.shape, self.qweight.in_features)
