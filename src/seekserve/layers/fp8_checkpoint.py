"""Checkpoints with FP8 block-quantized weights (DeepSeek-V3/R1 as released), dequantized while loading.

Such a checkpoint stores each linear weight W [out, in] as float8_e4m3fn plus a float32
`<name>_scale_inv` with one scale per block of `quantization_config.weight_block_size` (128×128):

    W[i, j] = W_fp8[i, j] * scale_inv[i // block_out, j // block_in]
    scale_inv: [ceil(out / block_out), ceil(in / block_in)]     (edge blocks may be partial)

Embeddings, norms, routers and the LM head stay in bfloat16. Weights are dequantized one tensor at a
time as they stream from the memory-mapped shards into the model, so peak memory stays near the final
model plus one tensor. With `keep_fp8` (the engine's quantization="fp8" and the other quantized modes)
the stream hands them over as `Fp8BlockTensor`s instead, and the quantized layers take the FP8 bytes
and scales as they are (seekserve.quant).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from seekserve.errors import ModelLoadError, UnsupportedModelError

__all__ = [
    "FP8_DTYPES",
    "Fp8BlockFormat",
    "Fp8BlockTensor",
    "as_dense",
    "dequantize_fp8",
    "fp8_block_format",
    "iter_dequantized",
    "open_safetensors",
]

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
_SCALE_SUFFIX = "_scale_inv"
_ACTIVATION_SCALE_SUFFIX = ".input_scale"


@dataclass(frozen=True)
class Fp8BlockFormat:
    """How a checkpoint's FP8 weights are scaled."""

    block_size: tuple[int, int] | None
    """(rows, columns) of weight covered by one scale; None for one scale per tensor."""

    def __post_init__(self) -> None:
        if self.block_size is not None and (len(self.block_size) != 2 or min(self.block_size) < 1):
            raise ModelLoadError(
                f"quantization_config.weight_block_size={list(self.block_size)} is invalid: "
                f"it must be two positive sizes such as [128, 128]"
            )


class Fp8BlockTensor(NamedTuple):
    """An FP8 checkpoint weight as stored: float8 values [out, in] and their float32 `scale_inv`."""

    weight: torch.Tensor
    scale_inv: torch.Tensor
    fmt: Fp8BlockFormat

    @property
    def shape(self) -> torch.Size:
        return self.weight.shape

    def dequantize(self, dtype: torch.dtype) -> torch.Tensor:
        return dequantize_fp8(self.weight, self.scale_inv, self.fmt, dtype)


def as_dense(tensor: torch.Tensor | Fp8BlockTensor, dtype: torch.dtype) -> torch.Tensor:
    """A checkpoint tensor as a plain tensor: FP8 ones dequantized to `dtype`, others unchanged."""
    return tensor.dequantize(dtype) if isinstance(tensor, Fp8BlockTensor) else tensor


def fp8_block_format(hf_config: Any) -> Fp8BlockFormat | None:
    """The FP8 format a config.json declares, or None when its weights are not quantized."""
    qc = getattr(hf_config, "quantization_config", None)
    if qc is None:
        return None
    if not isinstance(qc, dict):
        qc = qc.to_dict()
    method = qc.get("quant_method")
    if method != "fp8":
        raise UnsupportedModelError(
            f"the checkpoint is quantized with quant_method={method!r}; seekserve loads fp8 "
            f"(block-quantized float8_e4m3fn with weight_scale_inv) checkpoints, or unquantized ones"
        )
    block = qc.get("weight_block_size")
    return Fp8BlockFormat(None if block is None else (int(block[0]), int(block[1])))


def dequantize_fp8(
    weight: torch.Tensor, scale_inv: torch.Tensor, fmt: Fp8BlockFormat, dtype: torch.dtype
) -> torch.Tensor:
    """W_fp8 [out, in] times its block scales -> W [out, in] in `dtype`; vectorised, no loop."""
    check_scale_shape(weight, scale_inv, fmt)
    if fmt.block_size is None or weight.dim() != 2:
        return (weight.float() * scale_inv.float().reshape(())).to(dtype)
    rows, cols = weight.shape
    block_rows, block_cols = fmt.block_size
    num_rows, num_cols = -(-rows // block_rows), -(-cols // block_cols)
    w = weight.float()
    if rows % block_rows or cols % block_cols:
        w = F.pad(w, (0, num_cols * block_cols - cols, 0, num_rows * block_rows - rows))
    w = w.view(num_rows, block_rows, num_cols, block_cols) * scale_inv.float()[:, None, :, None]
    return w.view(num_rows * block_rows, num_cols * block_cols)[:rows, :cols].to(dtype).contiguous()


def check_scale_shape(weight: torch.Tensor, scale_inv: torch.Tensor, fmt: Fp8BlockFormat) -> None:
    """ValueError unless `scale_inv` has one scale per block of `weight` (or one in all)."""
    if fmt.block_size is None or weight.dim() != 2:
        if scale_inv.numel() != 1:
            raise ValueError(f"a per-tensor scale must be a single value, got shape {tuple(scale_inv.shape)}")
        return
    (rows, cols), (block_rows, block_cols) = weight.shape, fmt.block_size
    expected = (-(-rows // block_rows), -(-cols // block_cols))
    if tuple(scale_inv.shape) != expected:
        raise ValueError(
            f"weight {tuple(weight.shape)} in blocks of {block_rows}×{block_cols} needs scales of shape "
            f"{expected}, the checkpoint has {tuple(scale_inv.shape)}"
        )


def iter_dequantized(
    shards: list[Path], fmt: Fp8BlockFormat, dtype: torch.dtype, keep_fp8: bool = False
) -> Iterator[tuple[str, torch.Tensor | Fp8BlockTensor]]:
    """(name, tensor) of every weight in the shards, FP8 ones dequantized to `dtype`, one at a time
    (or, with `keep_fp8`, handed over as `Fp8BlockTensor`s with their scales).

    A weight's scale may sit in another shard; every shard stays memory-mapped until the end, and
    scales are read only when their weight is. Activation scales (`input_scale`) are dropped: the
    model runs unquantized activations.
    """
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open_safetensors(s)) for s in shards]
        where = {name: f for f in files for name in f.keys()}  # noqa: SIM118 - safe_open is not a mapping
        for name, f in where.items():
            if name.endswith(_ACTIVATION_SCALE_SUFFIX):
                continue
            if name.endswith(_SCALE_SUFFIX):
                if name.removesuffix(_SCALE_SUFFIX) not in where:
                    raise ModelLoadError(f"the checkpoint has a scale {name} without its weight")
                continue
            tensor = f.get_tensor(name)
            if tensor.dtype not in FP8_DTYPES:
                yield name, tensor
                continue
            fp8 = _fp8_named(name, tensor, where, fmt)
            yield name, fp8 if keep_fp8 else fp8.dequantize(dtype)


@contextlib.contextmanager
def open_safetensors(shard: Path) -> Iterator[Any]:
    """`safe_open` of one shard (memory-mapped, CPU tensors); a truncated or corrupt file is a
    ModelLoadError naming it."""
    from safetensors import SafetensorError, safe_open

    try:
        opened = safe_open(str(shard), framework="pt", device="cpu")
    except SafetensorError as e:
        raise ModelLoadError(
            f"{shard} is not a readable safetensors file ({e}): it is truncated or corrupt; download it again"
        ) from None
    with opened as f:
        yield f


def _fp8_named(name: str, weight: torch.Tensor, where: dict[str, Any], fmt: Fp8BlockFormat) -> Fp8BlockTensor:
    """The FP8 weight `name` with its scales, checked against the block format."""
    scale_name = name + _SCALE_SUFFIX
    if scale_name not in where:
        raise ModelLoadError(
            f"checkpoint tensor {name} is {weight.dtype} but the checkpoint has no {scale_name} to "
            f"dequantize it with"
        )
    scale_inv = where[scale_name].get_tensor(scale_name)
    try:
        check_scale_shape(weight, scale_inv, fmt)
    except ValueError as e:
        raise ModelLoadError(f"checkpoint tensor {name}: {e}") from None
    return Fp8BlockTensor(weight, scale_inv, fmt)
