"""Load a model, its tokenizer and its limits from a Hugging Face directory or a GGUF file.

`source.resolve` first turns the `model` option into files (the default model, a hub download,
a local directory or GGUF file). Weights are then streamed one tensor at a time (memory-mapped
safetensors shards, or GGUF tensors dequantized one by one) and copied into parameters that were
allocated empty, so peak memory stays near the model plus one tensor.
With quantization, the model is built on the meta device and its layers are swapped for quantized
ones before anything is allocated; each tensor is quantized as it streams in (seekserve.quant.apply).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seekserve.engine.config import ModelConfig
from seekserve.env import Environment
from seekserve.errors import ConfigError, ModelLoadError
from seekserve.layers.fp8_checkpoint import (
    FP8_DTYPES,
    Fp8BlockTensor,
    fp8_block_format,
    iter_dequantized,
    open_safetensors,
)
from seekserve.layers.modules import deferred_weights
from seekserve.models import CausalLM, model_class
from seekserve.models.chat_template import check_chat_template, ensure_chat_template
from seekserve.models.gguf import GGUFCheckpoint
from seekserve.models.source import ModelSource, SourceKind, resolve
from seekserve.quant.apply import Quantizer, QuantReport, param_bytes

__all__ = [
    "LoadedModel",
    "checkpoint_weights",
    "iter_safetensors",
    "load_hf_config",
    "load_model",
    "resolve_dtype",
]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: CausalLM
    hf_config: Any
    tokenizer: Any
    """A transformers tokenizer (encode, decode, chat template)."""
    max_model_len: int
    eos_token_ids: frozenset[int]
    weight_bytes: int
    source: ModelSource
    """Where the model came from; `source.name` is the name to serve it under."""
    uses_default_chat_template: bool
    """The model has no chat template of its own; chats use `chat_template.DEFAULT_CHAT_TEMPLATE`."""
    quantization: QuantReport | None = None
    """What quantization did (None when the model runs unquantized); `weight_bytes` is after it."""


def load_hf_config(path: Path) -> Any:
    """The transformers config of a model directory, read without any network access."""
    if not path.is_dir():
        raise ModelLoadError(f"model directory {path} does not exist: pass a directory with config.json")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json: it is not a Hugging Face model directory")
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (ValueError, KeyError, OSError, StrictDataclassError) as e:  # the last: its values disagree
        raise ModelLoadError(f"cannot read {path / 'config.json'}: {e}") from e


def resolve_dtype(requested: str, config: Any, device: torch.device) -> torch.dtype:
    """The dtype to run in: the requested one, else the checkpoint's (bfloat16 for float16 on CPU)."""
    if requested != "auto":
        return _DTYPES[requested]
    stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(stored, str):
        stored = _DTYPES.get(stored)
    if not isinstance(stored, torch.dtype) or stored not in _DTYPES.values():
        stored = torch.bfloat16
    if stored == torch.float16 and device.type == "cpu":
        return torch.bfloat16
    return stored


def safetensors_shards(path: Path) -> list[Path]:
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise ModelLoadError(
            f"{path} has no *.safetensors weights; convert the checkpoint with "
            f"transformers' save_pretrained(..., safe_serialization=True)"
        )
    return shards


def iter_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every tensor in the directory's safetensors shards, one shard at a time."""
    for shard in safetensors_shards(path):
        with open_safetensors(shard) as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                tensor = f.get_tensor(name)
                if tensor.dtype in FP8_DTYPES:
                    raise ModelLoadError(
                        f"checkpoint tensor {name} is {tensor.dtype} but {path / 'config.json'} declares "
                        f"no quantization_config (quant_method fp8, weight_block_size) to dequantize it with"
                    )
                yield name, tensor


def checkpoint_weights(
    path: Path, hf_config: Any, dtype: torch.dtype, keep_fp8: bool = False
) -> Iterator[tuple[str, torch.Tensor | Fp8BlockTensor]]:
    """The directory's weights, FP8 block-quantized ones dequantized to `dtype` as they stream
    (or, with `keep_fp8`, passed on with their scales for quantized layers to take as they are)."""
    fmt = fp8_block_format(hf_config)
    if fmt is None:
        return iter_safetensors(path)
    return iter_dequantized(safetensors_shards(path), fmt, dtype, keep_fp8)


def context_length(config: Any) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def resolve_max_model_len(requested: int | None, config: Any) -> int:
    limit = context_length(config)
    if requested is None:
        return limit
    if requested > limit:
        raise ConfigError(
            f"max_model_len={requested} is longer than the model's context of {limit} tokens "
            f"(max_position_embeddings): use at most {limit}"
        )
    return requested


def eos_token_ids(path: Path, config: Any, tokenizer: Any) -> frozenset[int]:
    """End-of-sequence ids: generation_config.json's, else config.json's, else the tokenizer's."""
    value: Any = None
    gen = path / "generation_config.json"
    if gen.is_file():
        value = json.loads(gen.read_text()).get("eos_token_id")
    if value is None:
        value = getattr(config, "eos_token_id", None)
    if value is None and tokenizer is not None:
        value = tokenizer.eos_token_id
    if value is None:
        return frozenset()
    return frozenset(value if isinstance(value, list) else [value])


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"cannot load a tokenizer from {path} ({e}); the directory needs tokenizer.json or "
            f"the tokenizer files of its model, or pass tokenizer=DIR"
        ) from e


def load_model(config: ModelConfig, device: torch.device) -> LoadedModel:
    """Build the model of `config.model` on `device` and fill its weights, then read the tokenizer and
    check its chat template (a model whose template is refused never serves).

    The tokenizer is read after the weights so that nothing it allocates and frees is reused by them:
    tests/quant/test_memory.py measures the weights' own peak.
    """
    source = resolve(config.model)
    tokenizer_dir = Path(config.tokenizer).expanduser() if config.tokenizer else None
    if source.kind is SourceKind.GGUF_FILE:
        checkpoint = GGUFCheckpoint(source.path)
        hf_config = checkpoint.config
        model, max_model_len, report = _build(
            config, source, hf_config, lambda dtype: checkpoint.weights(dtype, device), device
        )
        if tokenizer_dir is None:
            tokenizer = checkpoint.tokenizer(Environment.read().tokenizers_dir)
        else:
            tokenizer = load_tokenizer(tokenizer_dir)
        uses_default_template = _chat_template(tokenizer, source.path)
        eos = checkpoint.eos_token_ids or frozenset([tokenizer.eos_token_id]) - {None}
    else:
        hf_config = load_hf_config(source.path)
        keep_fp8 = config.quant_config().enabled
        model, max_model_len, report = _build(
            config,
            source,
            hf_config,
            lambda dtype: checkpoint_weights(source.path, hf_config, dtype, keep_fp8),
            device,
        )
        tokenizer = load_tokenizer(tokenizer_dir or source.path)
        uses_default_template = _chat_template(tokenizer, source.path)
        eos = eos_token_ids(source.path, hf_config, tokenizer)
    weight_bytes = param_bytes(model)
    log.info("loaded %s (%s, %.1f MB of weights)", source.path, model.dtype, weight_bytes / 1e6)
    return LoadedModel(
        model=model,
        hf_config=hf_config,
        tokenizer=tokenizer,
        max_model_len=max_model_len,
        eos_token_ids=eos,
        weight_bytes=weight_bytes,
        source=source,
        uses_default_chat_template=uses_default_template,
        quantization=report,
    )


def _chat_template(tokenizer: Any, source: Path) -> bool:
    """Give the tokenizer the default template if it has none, and check it; True for the default."""
    uses_default = ensure_chat_template(tokenizer)
    check_chat_template(tokenizer, source)
    return uses_default


def _build(
    config: ModelConfig,
    source: ModelSource,
    hf_config: Any,
    weights: Callable[[torch.dtype], Iterator[tuple[str, torch.Tensor | Fp8BlockTensor]]],
    device: torch.device,
) -> tuple[CausalLM, int, QuantReport | None]:
    """The model for `hf_config` filled from `weights(dtype)`, its max_model_len and what quantization
    did. A quantized model takes its weights in float32 (quantized from there, not from the compute
    dtype) and may keep FP8 checkpoint tensors as they are."""
    architectures = getattr(hf_config, "architectures", None) or []
    if not architectures:
        raise ModelLoadError(
            f"the config of {source.path} names no architectures; cannot tell which model it is"
        )
    cls = model_class(architectures[0])
    dtype = resolve_dtype(config.dtype, hf_config, device)
    max_model_len = resolve_max_model_len(config.max_model_len, hf_config)
    quant = config.quant_config()
    quantizer = Quantizer(quant, device) if quant.enabled else None
    with torch.device(device), deferred_weights(quantizer is not None):
        model = cls(hf_config, dtype, max_model_len)
    try:
        if quantizer is None:
            model.load_weights(weights(dtype))
            report = None
        else:
            quantizer.prepare(model)
            model.load_weights(weights(torch.float32))
            report = quantizer.finish(model)
    except ModelLoadError as e:
        if str(source.path) in str(e):
            raise
        raise type(e)(f"{source.path}: {e}") from e  # which model, when several are loaded
    model.eval()
    return model, max_model_len, report
