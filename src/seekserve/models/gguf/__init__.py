"""GGUF files (llama.cpp, Ollama): header reading, dequantization, and mapping onto seekserve's models.

`reader.py` parses the file, `config.py` turns its metadata into a transformers config,
`tensors.py` renames and re-lays-out its tensors per architecture, `dequant.py` dequantizes,
`tokenizer.py` converts and caches its tokenizer, `checkpoint.py` puts these together.
"""

from __future__ import annotations

from seekserve.models.gguf.checkpoint import GGUFCheckpoint
from seekserve.models.gguf.reader import is_gguf_file

__all__ = ["GGUFCheckpoint", "is_gguf_file"]
