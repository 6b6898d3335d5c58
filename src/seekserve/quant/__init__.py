"""Weight quantization applied while a model loads: fp8, int8 and int4 (docs/quantization.md).

`config.py` says what to quantize; `int8.py`, `int4.py` (with `int4_layout.py`) and `fp8.py` are the
weight formats with their CPU kernels, `cuda.py` their GPU matmuls; `linear.py` and `experts.py` are
the quantized layers; `apply.py` swaps them into a model and finishes them after loading.
"""

from seekserve.quant.config import QuantConfig, QuantMode

__all__ = ["QuantConfig", "QuantMode"]
