"""Names of models and of their files: hub ids, and the files of a Hugging Face folder seekserve reads.

Shared by the loader's hub downloads (`models/hub.py`) and `seekserve pull`, so both take the same
ids and fetch the same files.
"""

from __future__ import annotations

import re

__all__ = ["HF_DIR_PATTERNS", "is_hub_id"]

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}(:[\w.-]+)?")
HF_DIR_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.jinja"]
"""Files of a Hugging Face model directory that seekserve reads (no .bin/.pth/.gguf duplicates)."""


def is_hub_id(model: str) -> bool:
    """Whether `model` has the shape of a hub id, `org/name` or `org/name:TAG`."""
    return _REPO_ID.fullmatch(model) is not None
