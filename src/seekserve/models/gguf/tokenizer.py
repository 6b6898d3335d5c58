"""The tokenizer stored in a GGUF file's metadata, converted once and cached as tokenizer files.

transformers builds a tokenizer from GGUF metadata (vocabulary, merges or scores, special tokens,
chat template); for a 262k-token vocabulary that takes seconds, so the result is saved with
`save_pretrained` under `<SEEKSERVE_HOME>/tokenizers/<header digest>/` and later loads read
tokenizer.json directly. The digest covers the whole header, so an edited file gets a new folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from seekserve.errors import ModelLoadError
from seekserve.models.gguf.reader import GGUFFile

__all__ = ["load_gguf_tokenizer"]

log = logging.getLogger(__name__)


def load_gguf_tokenizer(gguf: GGUFFile, model_type: str, cache_root: Path) -> Any:
    """The file's tokenizer, from the cache when it was converted before.

    The cache is read back with the generic fast tokenizer class: some model-specific classes
    (Qwen2Tokenizer, GemmaTokenizer) rebuild their pre-tokenizer on load, which would undo what the
    conversion took from the file; tokenizer.json already holds the complete pipeline.
    """
    cached = cache_root / gguf.header_digest()[:32]
    if (cached / "tokenizer_config.json").is_file():
        try:
            return _load_cached(cached)
        except (OSError, ValueError, KeyError) as e:
            log.warning("cached tokenizer %s is unreadable (%s); converting it again", cached, e)
            shutil.rmtree(cached, ignore_errors=True)
    tokenizer = _convert(gguf, model_type)
    _save(tokenizer, cached)
    return tokenizer


_CONFIG_KEYS_NOT_FOR_INIT = {
    "tokenizer_class",
    "backend",
    "is_local",
    "local_files_only",
    "auto_map",
    "name_or_path",
}


def _load_cached(folder: Path) -> Any:
    """The cached tokenizer, read in one pass: tokenizer.json straight into the Rust tokenizer.

    `from_pretrained` would parse the 33 MB tokenizer.json of a 262k vocabulary twice (once in
    Python, once in Rust), and a tokenizer object passed in is deep-copied: this takes a third of
    the time, which is most of a warm start.
    """
    from transformers import PreTrainedTokenizerFast

    config = json.loads((folder / "tokenizer_config.json").read_text())
    kwargs = {k: v for k, v in config.items() if k not in _CONFIG_KEYS_NOT_FOR_INIT}
    template = folder / "chat_template.jinja"
    if "chat_template" not in kwargs and template.is_file():
        kwargs["chat_template"] = template.read_text()
    try:
        return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **kwargs)
    except Exception as e:  # the Rust binding reports a malformed file as a bare Exception
        raise ValueError(f"tokenizer.json is malformed: {e}") from e


def _convert(gguf: GGUFFile, model_type: str) -> Any:
    """Build the tokenizer with the class transformers would pick for `model_type`.

    `AutoTokenizer.from_pretrained(..., gguf_file=...)` would pick the same class, but first parses
    the whole file again with gguf's slow reader to learn the model type, which we already know.
    """
    from transformers import PreTrainedTokenizerFast
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES, tokenizer_class_from_name

    class_name = TOKENIZER_MAPPING_NAMES.get(model_type)
    tokenizer_class = (class_name and tokenizer_class_from_name(class_name)) or PreTrainedTokenizerFast
    log.info("converting the tokenizer of %s (once; it is cached afterwards)", gguf.path.name)
    try:
        return tokenizer_class.from_pretrained(str(gguf.path.parent), gguf_file=gguf.path.name)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(
            f"cannot build a tokenizer from the metadata of {gguf.path} ({e}); "
            f"pass tokenizer=DIR with the model's tokenizer files"
        ) from e


def _save(tokenizer: Any, target: Path) -> None:
    """Save atomically: a reader never sees a half-written folder, and a lost race keeps the winner's."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    except OSError as e:
        log.warning(
            "cannot cache the converted tokenizer in %s (%s); it is converted again next time", target, e
        )
        return
    try:
        tokenizer.save_pretrained(str(staging))
        os.replace(staging, target)
    except OSError as e:
        if not target.is_dir():  # else another process cached it first
            log.warning("cannot cache the converted tokenizer in %s (%s)", target, e)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
