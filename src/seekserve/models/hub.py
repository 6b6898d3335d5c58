"""Models given as Hugging Face hub ids (`org/name`, or `org/name:TAG` to pick one GGUF file).

Downloads go through huggingface_hub into `<SEEKSERVE_HOME>/hub` (its cache layout), with its
progress bars and its resume of interrupted files. After a download every file is checked against
the hub's SHA-256 (git-sha1 for small files); a mismatching file is fetched again once, then it is
an error. A verified snapshot is recorded so later starts skip the hashing. Without network (or
with HF_HUB_OFFLINE=1) a cached snapshot is used as it is; an uncached one is a clear error.

What is fetched: a repository with config.json gives its config, tokenizer and safetensors files;
one holding only GGUF files gives the single .gguf, or the one whose name contains TAG
(`org/name:Q4_K_M` or `org/name:model-q4_k_m.gguf`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seekserve.env import Environment
from seekserve.errors import ModelLoadError
from seekserve.weights.names import HF_DIR_PATTERNS, is_hub_id

__all__ = ["HF_DIR_PATTERNS", "HubModel", "is_hub_id", "resolve_hub_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubModel:
    path: Path
    """The snapshot folder (a Hugging Face directory) or the GGUF file in it."""
    is_gguf: bool


def resolve_hub_model(model: str, env: Environment | None = None) -> HubModel:
    """Download (or find in the cache) the files of `model` and return where they are."""
    from huggingface_hub import constants

    repo_id, _, tag = model.partition(":")
    cache = (env or Environment.read()).hub_dir
    try:
        if constants.HF_HUB_OFFLINE:
            return _from_cache(repo_id, tag, cache)
        return _download(repo_id, tag, cache)
    except ModelLoadError:
        raise
    except Exception as e:
        # The HTTP client's transport errors are outside huggingface_hub's public error hierarchy;
        # every failure becomes a ModelLoadError that says what to do.
        raise _explain(e, model, cache) from e


def _download(repo_id: str, tag: str, cache: Path) -> HubModel:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        info = api.model_info(repo_id)
    except HfHubHTTPError:
        raise  # the hub answered: no such repository, gated, ...
    except Exception as e:  # no answer (no network, DNS, timeout): use the cache
        log.warning("cannot reach the hub (%s); looking for %s in the local cache", e, repo_id)
        return _from_cache(repo_id, tag, cache)
    files = [s.rfilename for s in info.siblings or []]
    patterns, gguf = _select(repo_id, tag, files)
    folder = Path(snapshot_download(repo_id, revision=info.sha, cache_dir=cache, allow_patterns=patterns))
    _verify(api, repo_id, str(info.sha), folder, cache)
    return HubModel(folder / gguf if gguf else folder, gguf is not None)


def _from_cache(repo_id: str, tag: str, cache: Path) -> HubModel:
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=True))
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    _, gguf = _select(repo_id, tag, files)
    return HubModel(folder / gguf if gguf else folder, gguf is not None)


def _select(repo_id: str, tag: str, files: list[str]) -> tuple[list[str], str | None]:
    """(download patterns, the GGUF file to load or None for a Hugging Face directory)."""
    ggufs = sorted(f for f in files if f.endswith(".gguf"))
    if not tag and "config.json" in files:
        return HF_DIR_PATTERNS, None
    chosen = [f for f in ggufs if tag.lower() in Path(f).name.lower()] if tag else ggufs
    if len(chosen) == 1:
        return [chosen[0]], chosen[0]
    if not ggufs:
        raise ModelLoadError(
            f"hub repository {repo_id} has neither config.json nor GGUF files; seekserve loads "
            f"Hugging Face model directories (config.json + safetensors) and GGUF files"
        )
    shown = ", ".join(ggufs[:12]) + (" ..." if len(ggufs) > 12 else "")
    what = f"{len(chosen)} GGUF files match {tag!r}" if tag else f"{repo_id} holds {len(ggufs)} GGUF files"
    raise ModelLoadError(
        f"{what} ({shown}); pick one with {repo_id}:NAME, e.g. {repo_id}:{Path(ggufs[0]).name}"
    )


def _verify(api: Any, repo_id: str, revision: str, folder: Path, cache: Path) -> None:
    """Hash the downloaded files against the hub's checksums, once per snapshot."""
    from huggingface_hub import hf_hub_download

    marker = cache / ".verified" / f"{repo_id.replace('/', '--')}@{revision}"
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    if marker.is_file() and marker.read_text().splitlines() == files:
        return
    bad = _mismatches(api, repo_id, revision, cache, files)
    for path in bad:
        log.warning("%s of %s does not match the hub's checksum; downloading it again", path, repo_id)
        hf_hub_download(repo_id, path, revision=revision, cache_dir=cache, force_download=True)
    if bad and (still := _mismatches(api, repo_id, revision, cache, bad)):
        raise ModelLoadError(
            f"{', '.join(still)} of {repo_id} still fail the hub's checksum after a fresh download; "
            f"check the disk and the network (a proxy rewriting files?)"
        )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("\n".join(files) + "\n")


def _mismatches(api: Any, repo_id: str, revision: str, cache: Path, files: list[str]) -> list[str]:
    """The files among `files` whose hash differs from the hub's."""
    result = api.verify_repo_checksums(repo_id, revision=revision, cache_dir=cache)
    return [m.path for m in result.mismatches if m.path in files]


def _explain(error: Exception, model: str, cache: Path) -> ModelLoadError:
    """A message that says what went wrong with a hub model and how to get it."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    repo_id = model.partition(":")[0]
    if isinstance(error, LocalEntryNotFoundError):
        offline = constants.HF_HUB_OFFLINE
        why = "downloads are off (HF_HUB_OFFLINE=1)" if offline else "the hub cannot be reached"
        return ModelLoadError(
            f"model {model!r} is not in the local cache ({cache}) and {why}. Run once with network "
            f"access to download it there, or fetch it elsewhere with `hf download {repo_id} "
            f"--cache-dir {cache}` and copy the folder over, or pass a local directory or GGUF file"
        )
    if isinstance(error, GatedRepoError):
        return ModelLoadError(
            f"model {repo_id} is gated: accept its terms on https://huggingface.co/{repo_id} and log in "
            f"(`hf auth login`, or set HF_TOKEN)"
        )
    if isinstance(error, RepositoryNotFoundError):
        return ModelLoadError(
            f"there is no model {repo_id!r} on the hub (or it is private: log in with `hf auth login` or "
            f"set HF_TOKEN); check the spelling, or pass a local directory or GGUF file"
        )
    return ModelLoadError(f"cannot get model {model!r} from the hub: {error}")
