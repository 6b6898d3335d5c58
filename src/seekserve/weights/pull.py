"""`seekserve pull`: a model's files from the hub or a mirror into a folder, verified.

    result = pull(PullRequest("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", mirror="http://mirror:8080"))
    result.dest   # $SEEKSERVE_HOME/models/deepseek-ai/DeepSeek-R1-Distill-Qwen-7B

Which files: a model with config.json gives what seekserve loads from a Hugging Face folder
(config, tokenizer, safetensors: `names.HF_DIR_PATTERNS`); a GGUF-only model gives its one
GGUF file (several must be narrowed with `include`); `include` globs choose any others.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import aiohttp

from seekserve.env import Environment
from seekserve.errors import ConfigError, PullError
from seekserve.weights.checksums import STATE_DIR
from seekserve.weights.config import PullConfig
from seekserve.weights.download import Downloader, NullProgress, Progress
from seekserve.weights.hub import HubSource, hub_token
from seekserve.weights.manifest import FileEntry, check_relative_path
from seekserve.weights.names import HF_DIR_PATTERNS, is_hub_id
from seekserve.weights.source import MirrorSource, Source

__all__ = ["PullRequest", "PullResult", "pull", "pull_async", "select_files"]


@dataclass(frozen=True)
class PullResult:
    dest: Path
    source: str
    revision: str | None
    num_files: int
    total_bytes: int
    fetched_files: tuple[str, ...]
    """Files this pull wrote (the others were there already, verified)."""
    fetched_bytes: int
    """Bytes received over the network (a resumed file counts only its missing part)."""
    seconds: float


@dataclass(frozen=True)
class PullRequest:
    """What to pull, from where, into where."""

    model: str
    """A hub id (org/name); from a mirror, the folder it serves (org/name, or any relative path)."""
    mirror: str | None = None
    """A `seekserve mirror serve` base URL; None: the hub (HF_ENDPOINT)."""
    revision: str | None = None
    """The hub's branch, tag or commit (default main); a mirror serves the one it holds."""
    dest: Path | None = None
    """The folder to fill; None: $SEEKSERVE_HOME/models/{model}."""
    include: tuple[str, ...] = ()
    """Globs of the paths to fetch; empty: what seekserve loads (see the module docstring)."""

    def __post_init__(self) -> None:
        if self.mirror is None:
            if not is_hub_id(self.model) or ":" in self.model:
                raise ConfigError(
                    f"{self.model!r} is not a hub id: give org/name "
                    f"(e.g. deepseek-ai/DeepSeek-R1-Distill-Qwen-7B)"
                )
            return
        if self.revision is not None:
            raise ConfigError(
                f"--revision {self.revision} is for the hub: a mirror serves the one revision it holds of "
                f"{self.model}"
            )
        if not self.mirror.startswith(("http://", "https://")):
            raise ConfigError(f"--mirror {self.mirror!r} is not an http:// or https:// URL")
        try:
            check_relative_path(self.model)
        except ValueError as e:
            raise ConfigError(f"model {self.model!r} is not a folder name a mirror serves: {e}") from e

    def source(self, env: Environment) -> Source:
        if self.mirror is not None:
            return MirrorSource(self.mirror, self.model)
        return HubSource(env.hub_endpoint, self.model, self.revision or "main", hub_token())


def pull(
    request: PullRequest,
    config: PullConfig | None = None,
    progress: Progress | None = None,
    env: Environment | None = None,
) -> PullResult:
    """Fetch the files; raises PullError (ChecksumError for a file that stays damaged)."""
    return asyncio.run(pull_async(request, config, progress, env))


async def pull_async(
    request: PullRequest,
    config: PullConfig | None = None,
    progress: Progress | None = None,
    env: Environment | None = None,
) -> PullResult:
    config, progress, env = config or PullConfig(), progress or NullProgress(), env or Environment.read()
    source = request.source(env)
    dest = request.dest or env.pulled_model_dir(request.model)
    start = time.perf_counter()
    async with _session(source, config) as session:
        entries = select_files(await source.manifest(session), request.include, request.model)
        progress.begin(sum(e.size for e in entries), len(entries))
        dest.mkdir(parents=True, exist_ok=True)
        downloader = Downloader(source, dest, config, session, progress)
        await downloader.fetch_all(entries)
    _record_origin(dest, request.model, source, entries)
    return PullResult(
        dest,
        source.description,
        source.revision,
        len(entries),
        sum(e.size for e in entries),
        tuple(downloader.fetched_files),
        downloader.fetched_bytes,
        time.perf_counter() - start,
    )


def _session(source: Source, config: PullConfig) -> aiohttp.ClientSession:
    # No decompression: the bytes on disk must be the bytes the checksum is of. trust_env: a site's
    # HTTP(S)_PROXY and NO_PROXY apply, as for huggingface_hub.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.timeout_s, sock_read=config.timeout_s)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=config.connections + 2),
        timeout=timeout,
        headers=source.headers,
        auto_decompress=False,
        trust_env=True,
    )


def select_files(entries: list[FileEntry], include: tuple[str, ...], model: str) -> list[FileEntry]:
    """The entries to fetch: those matching `include` (globs on the path), else the default set."""
    patterns = list(include)
    if not patterns:
        ggufs = sorted(e.path for e in entries if e.path.endswith(".gguf"))
        if any(e.path == "config.json" for e in entries):
            patterns = HF_DIR_PATTERNS
        elif len(ggufs) > 1:
            shown = ", ".join(ggufs[:8]) + (" ..." if len(ggufs) > 8 else "")
            raise PullError(
                f"{model} holds {len(ggufs)} GGUF files ({shown}): pick one with --include, e.g. "
                f"--include '{ggufs[0]}'"
            )
        else:
            patterns = ["*"]
    chosen = [e for e in entries if any(fnmatch(e.path, p) for p in patterns)]
    if not chosen:
        shown = ", ".join(e.path for e in entries[:8]) + (" ..." if len(entries) > 8 else "")
        raise PullError(f"no file of {model} matches {', '.join(patterns)}; it has {shown or 'no files'}")
    return chosen


def _record_origin(dest: Path, model: str, source: Source, entries: list[FileEntry]) -> None:
    """`.seekserve/origin.json`: where the folder's files came from, for people and for audits."""
    record = {
        "model": model,
        "source": source.description,
        "revision": source.revision,
        "files": [e.to_json() for e in entries],
    }
    path = dest / STATE_DIR / "origin.json"
    partial = path.with_name(f"origin.json.{os.getpid()}.tmp")
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, path)
