"""What to quantize and how: one frozen config, built from the engine's `ModelConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seekserve.errors import ConfigError

__all__ = [
    "DEFAULT_FP8_BLOCK",
    "DEFAULT_INT4_GROUP",
    "DEFAULT_MAX_KERNEL_ROWS",
    "DYNAMIC_MAX_KERNEL_ROWS",
    "INT4_GROUP_SIZES",
    "Fp8Storage",
    "QuantConfig",
    "QuantMode",
]

QuantMode = Literal["none", "fp8", "int8", "int4"]
Fp8Storage = Literal["auto", "fp8", "dequantized"]

INT4_GROUP_SIZES = (32, 64, 128)
"""Group sizes the int4 kernels take (weights per scale and zero along the input dimension)."""

DEFAULT_INT4_GROUP = 32
"""Default int4 group size: the most accurate of 32, 64 and 128 on Gemma 3 270M at the same speed
(docs/quantization.md), for 3 % more memory than 64."""

DEFAULT_FP8_BLOCK = 128
"""Default FP8 block edge: 128×128 tiles, DeepSeek-V3's `weight_block_size`."""

DEFAULT_MAX_KERNEL_ROWS = {"int8": 24, "int4": 128, "fp8": 0}
"""Largest step (token rows) that runs the packed low-bit kernel on CPU, measured with
benchmarks/quant_kernels.py at Gemma-3-270M shapes: above it, dequantizing the layer and running a
float matmul is faster (or, for int8 with `dynamic_activations`, an int8×int8 matmul; its own
threshold is DYNAMIC_MAX_KERNEL_ROWS). See docs/quantization.md."""

DYNAMIC_MAX_KERNEL_ROWS = 4
"""int8 with dynamic activations: the int8×int8 matmul beats the packed kernel from 8 rows up."""


@dataclass(frozen=True)
class QuantConfig:
    """Weight quantization applied while a model loads."""

    mode: QuantMode = "none"
    """none, fp8 (float8_e4m3fn with block or per-channel scales), int8 (per-output-channel
    symmetric) or int4 (group-wise asymmetric)."""

    group_size: int | None = None
    """int4: weights per group along the input dimension (32, 64 or 128; default 64).
    fp8: edge of the square blocks that share a scale (default 128); 0 scales per output channel.
    int8 always scales per output channel and takes no group size."""

    quantize_lm_head: bool = True
    """Quantize the LM head too (in int4 mode the head is int8, see docs/quantization.md); a head
    tied to the embedding then also serves the embedding rows, so the float copy is dropped."""

    max_kernel_rows: int | None = None
    """Steps with at most this many token rows use the packed low-bit kernel, larger ones the
    large-batch path; None takes the measured default of the mode (DEFAULT_MAX_KERNEL_ROWS)."""

    dynamic_activations: bool = False
    """int8 only: steps above max_kernel_rows quantize activations per token and run int8×int8
    matmuls, faster than bf16 at large batch on CPU but less accurate (docs/quantization.md)."""

    fp8_storage: Fp8Storage = "auto"
    """Where no FP8 matmul is available (CPU, GPUs before sm_89): "dequantized" keeps the FP8-rounded
    weights in the compute dtype (no memory saved, float speed), "fp8" keeps FP8 bytes and dequantizes
    each layer when it runs (memory saved, much slower on CPU); "auto" dequantizes when that fits."""

    def __post_init__(self) -> None:
        if self.mode not in ("none", "fp8", "int8", "int4"):
            raise ConfigError(f"quantization={self.mode!r} is not supported: choose none, fp8, int8 or int4")
        if self.fp8_storage not in ("auto", "fp8", "dequantized"):
            raise ConfigError(f"fp8_storage={self.fp8_storage!r} is invalid: choose auto, fp8 or dequantized")
        if self.max_kernel_rows is not None and self.max_kernel_rows < 0:
            raise ConfigError(
                f"max_quantized_kernel_rows={self.max_kernel_rows} is invalid: it must be at least 0 "
                f"(0 always takes the large-batch path), or unset for the measured default"
            )
        self._check_group_size()
        if self.dynamic_activations and self.mode != "int8":
            raise ConfigError(
                f"quantize_activations is for quantization=int8, not {self.mode!r}: drop the flag or use int8"
            )

    def _check_group_size(self) -> None:
        g = self.group_size
        if g is None:
            return
        if self.mode in ("none", "int8"):
            raise ConfigError(
                f"quantization_group_size={g} was given but quantization={self.mode!r} takes none "
                f"(int8 scales per output channel): leave it unset"
            )
        if self.mode == "int4" and g not in INT4_GROUP_SIZES:
            raise ConfigError(
                f"quantization_group_size={g} is not supported for int4: use 32, 64 or 128 "
                f"(default {DEFAULT_INT4_GROUP})"
            )
        if self.mode == "fp8" and g < 0:
            raise ConfigError(
                f"quantization_group_size={g} is invalid for fp8: use a block edge such as 128, "
                f"or 0 for one scale per output channel"
            )

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def int4_group(self) -> int:
        return self.group_size or DEFAULT_INT4_GROUP

    @property
    def fp8_block(self) -> int:
        """Block edge of FP8 scales; 0 for one scale per output channel."""
        return DEFAULT_FP8_BLOCK if self.group_size is None else self.group_size

    @property
    def kernel_rows(self) -> int:
        if self.max_kernel_rows is not None:
            return self.max_kernel_rows
        if self.dynamic_activations:
            return DYNAMIC_MAX_KERNEL_ROWS
        return DEFAULT_MAX_KERNEL_ROWS.get(self.mode, 0)
