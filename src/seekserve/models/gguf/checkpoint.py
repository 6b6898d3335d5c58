"""A GGUF file as a checkpoint: transformers config, (name, tensor) stream, tokenizer, end tokens."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from seekserve.models.gguf.config import config_from_gguf, eos_token_ids
from seekserve.models.gguf.dequant import dequantize
from seekserve.models.gguf.reader import GGUFFile, TensorInfo
from seekserve.models.gguf.tensors import TENSOR_MAPS, LazyTensor
from seekserve.models.gguf.tokenizer import load_gguf_tokenizer

__all__ = ["GGUFCheckpoint"]


class GGUFCheckpoint:
    """Reads the header on construction; tensors are dequantized one at a time by `weights`."""

    def __init__(self, path: Path):
        self.file = GGUFFile(path)
        self.config = config_from_gguf(self.file)
        names = {t.name for t in self.file.tensors}
        self.tensor_map = TENSOR_MAPS[self.file.architecture](self.config, names)

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return eos_token_ids(self.file)

    def weights(self, dtype: torch.dtype, device: torch.device) -> Iterator[tuple[str, torch.Tensor]]:
        """(checkpoint name, tensor in `dtype` on `device`) for every weight, in file order."""
        for info in self.file.tensors:
            lazy = LazyTensor(info.shape, functools.partial(self._read, info, device))
            for name, tensor in self.tensor_map.convert(info.name, lazy):
                yield name, tensor.to(dtype)
        self.tensor_map.finish()

    def tokenizer(self, cache_root: Path) -> Any:
        return load_gguf_tokenizer(self.file, self.config.model_type, cache_root)

    def _read(self, info: TensorInfo, device: torch.device, index: int | None) -> torch.Tensor:
        """The tensor (or its `index`-th slice along dim 0) dequantized to float32."""
        raw, shape = self.file.data(info), info.shape
        if index is not None:
            row_bytes = info.nbytes // shape[0]  # rows of dim 0 hold whole blocks in every layout
            raw, shape = raw[index * row_bytes : (index + 1) * row_bytes], shape[1:]
        return dequantize(raw, info.ggml_type, shape, torch.float32, device)
