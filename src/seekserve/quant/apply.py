"""Quantizing a model while it loads: which layers, in which format, and the steps around loading.

    with torch.device(device), deferred_weights():
        model = cls(config, dtype, max_len)    # parameters on the meta device: nothing allocated yet
    quantizer.prepare(model)                   # Linear -> QuantizedLinear, FusedExperts -> QuantizedExperts,
                                               # then the remaining (float) parameters are allocated
    model.load_weights(weights)                # each checkpoint tensor quantized as it arrives
    report = quantizer.finish(model)           # tied LM head, memory report

So the float weights of a layer never all exist at once: peak memory is the quantized model plus
one checkpoint tensor (and its float32 temporaries). Embeddings, norms and routers stay as they are;
the LM head follows `QuantConfig.quantize_lm_head` (int8 in int4 mode, see docs/quantization.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from seekserve.layers.modules import Linear
from seekserve.memory import available_memory_bytes
from seekserve.models.base import CausalLM
from seekserve.models.moe import FusedExperts
from seekserve.quant import cuda
from seekserve.quant.base import QuantizedWeight, StackShape
from seekserve.quant.config import QuantConfig, QuantMode
from seekserve.quant.experts import QuantizedExperts
from seekserve.quant.fp8 import Fp8Weight
from seekserve.quant.int4 import Int4Weight
from seekserve.quant.int8 import Int8Weight
from seekserve.quant.linear import QuantizedEmbedding, QuantizedLinear

__all__ = ["QuantReport", "Quantizer", "param_bytes"]

log = logging.getLogger(__name__)

_FP8_DEQUANTIZED_MAX_SHARE = 0.5
"""fp8_storage "auto" keeps dequantized weights when the float model takes at most this share of
the memory available when loading starts."""


@dataclass(frozen=True)
class QuantReport:
    """What quantization did to a loaded model."""

    mode: QuantMode
    lm_head: QuantMode
    """Format of the LM head ("none": left in the compute dtype)."""
    num_layers: int
    """Linear layers and expert stacks quantized."""
    fp8_kept: bool
    """FP8 weights are held as FP8 bytes (else dequantized at load); False outside fp8 mode."""
    dense_weight_bytes: int
    """Weight bytes the model would hold unquantized, in its compute dtype."""
    weight_bytes: int

    @property
    def saved_bytes(self) -> int:
        return self.dense_weight_bytes - self.weight_bytes


def param_bytes(model: nn.Module) -> int:
    """Bytes of all parameters, shared ones counted once (meta parameters by their shape)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


class Quantizer:
    """Swaps a freshly built (meta) model's layers for quantized ones and finishes them after loading."""

    def __init__(self, config: QuantConfig, device: torch.device):
        assert config.enabled, "a Quantizer is made only for a quantization mode"
        self.config = config
        self.device = device
        self.head_mode: QuantMode = "none"
        if config.quantize_lm_head:
            self.head_mode = "int8" if config.mode == "int4" else config.mode
        self.keep_fp8 = False
        self.dense_bytes = 0
        self.num_layers = 0

    def prepare(self, model: CausalLM) -> None:
        """Replace every linear layer and expert stack with its quantized form, then allocate the rest."""
        self.dense_bytes = param_bytes(model)
        self.keep_fp8 = self.config.mode == "fp8" and self._keeps_fp8()
        tied_head = _tied_head(model)
        with torch.device(self.device):
            if tied_head is not None and self.head_mode != "none":
                self._tie_quantized_head(model, *tied_head)
            for name, module in list(model.named_modules()):
                replacement = self._replacement(name, module, model.dtype, tied_head)
                if replacement is not None:
                    _set_submodule(model, name, replacement)
                    self.num_layers += 1
        _materialize(model, self.device)

    def finish(self, model: CausalLM) -> QuantReport:
        """Quantize a tied LM head that could not serve the embedding from the loaded embedding (a copy);
        report the weights' memory."""
        tied = _tied_head(model)
        if tied is not None and self.head_mode != "none" and not isinstance(model.lm_head, QuantizedLinear):
            self._quantize_tied_head(model, *tied)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # return the float temporaries, so the KV cache can have the memory
        report = QuantReport(
            mode=self.config.mode,
            lm_head=self.head_mode,
            num_layers=self.num_layers,
            fp8_kept=self.keep_fp8,
            dense_weight_bytes=self.dense_bytes,
            weight_bytes=param_bytes(model),
        )
        log.info(
            "quantized %d layers to %s (LM head: %s): %.1f MB of weights, %.1f MB unquantized",
            report.num_layers,
            report.mode,
            report.lm_head,
            report.weight_bytes / 1e6,
            report.dense_weight_bytes / 1e6,
        )
        return report

    def weight(self, mode: QuantMode, dtype: torch.dtype, shape: StackShape) -> QuantizedWeight:
        """An empty quantized weight of `mode` and `shape`."""
        cfg = self.config
        rows = cfg.kernel_rows
        if mode == "int8":
            return Int8Weight(shape, dtype, rows, cfg.dynamic_activations)
        if mode == "int4":
            return Int4Weight(shape, dtype, rows, cfg.int4_group)
        assert mode == "fp8", f"no weight format for mode {mode!r}"
        return Fp8Weight(shape, dtype, rows, cfg.fp8_block, self.keep_fp8)

    def _replacement(
        self, name: str, module: nn.Module, dtype: torch.dtype, tied_head: tuple[str, str] | None
    ) -> nn.Module | None:
        if isinstance(module, FusedExperts):
            return QuantizedExperts(module, partial(self.weight, self.config.mode, dtype))
        if not isinstance(module, Linear):
            return None
        mode = self.config.mode
        if name == "lm_head":
            if self.head_mode == "none" or (tied_head is not None and tied_head[0] == name):
                return None  # a tied head is quantized from the embedding once that is loaded
            mode = self.head_mode
        out, inp = module.out_features, module.in_features
        qweight = self.weight(mode, dtype, StackShape((), out, inp, module.output_sizes))
        return QuantizedLinear(qweight, module.output_sizes, module.bias is not None, dtype)

    def _tied_head(self, model: CausalLM, embedding_name: str) -> QuantizedLinear:
        vocab, hidden = _embedding_table(model, embedding_name).shape
        qweight = self.weight(self.head_mode, model.dtype, StackShape((), vocab, hidden, (vocab,)))
        return QuantizedLinear(qweight, (vocab,), False, model.dtype)

    def _tie_quantized_head(self, model: CausalLM, head_name: str, embedding_name: str) -> None:
        """Before loading: one quantized table for head and embedding, filled from the checkpoint's
        embedding tensor, so the float table is never allocated. Formats that cannot read single rows
        cheaply (int4) are left to `_quantize_tied_head`."""
        head = self._tied_head(model, embedding_name)
        if head.qweight.supports_gather:
            _set_submodule(model, head_name, head)
            _set_submodule(model, embedding_name, QuantizedEmbedding(head.qweight))
            self.num_layers += 1

    def _quantize_tied_head(self, model: CausalLM, head_name: str, embedding_name: str) -> None:
        """After loading: a quantized copy of the embedding as the head; the embedding stays as it is."""
        head = self._tied_head(model, embedding_name)
        head.load_dense(_embedding_table(model, embedding_name))
        _set_submodule(model, head_name, head)
        self.num_layers += 1

    def _keeps_fp8(self) -> bool:
        """Hold FP8 bytes (not the dequantized weights): where FP8 matmuls run, or where asked, or
        ("auto") where the dequantized model would not fit comfortably."""
        if cuda.has_fp8_matmul(self.device) or self.config.fp8_storage == "fp8":
            return True
        if self.config.fp8_storage == "dequantized":
            return False
        available = _available_bytes(self.device)
        keep = self.dense_bytes > _FP8_DEQUANTIZED_MAX_SHARE * available
        log.info(
            "fp8 on %s without FP8 matmuls: weights %s (%.1f GB unquantized, %.1f GB available)",
            self.device,
            "kept as FP8, dequantized per layer as it runs" if keep else "dequantized at load",
            self.dense_bytes / 1e9,
            available / 1e9,
        )
        return keep


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return available_memory_bytes()


def _tied_head(model: CausalLM) -> tuple[str, str] | None:
    """(LM head module, embedding module) when the head's weight is the embedding's."""
    tied = model.tied_params()
    head = tied.get("lm_head.weight")
    if head is None:
        return None
    return "lm_head", head.rpartition(".")[0]


def _embedding_table(model: nn.Module, name: str) -> torch.Tensor:
    weight = model.get_submodule(name).weight
    assert isinstance(weight, torch.Tensor), f"{name} has no weight tensor"
    return weight


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _materialize(model: nn.Module, device: torch.device) -> None:
    """Allocate (empty) every parameter still on the meta device, keeping tied ones shared."""
    made: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None and p.is_meta:
                if id(p) not in made:
                    made[id(p)] = nn.Parameter(torch.empty_like(p, device=device), requires_grad=False)
                module._parameters[name] = made[id(p)]
