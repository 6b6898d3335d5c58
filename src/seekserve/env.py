"""Environment variables seekserve reads, all in one place, all with the SEEKSERVE_ prefix.

    SEEKSERVE_HOME         cache folder: the default model, hub downloads, converted tokenizers,
                           built CPU kernels (default: $XDG_CACHE_HOME/seekserve, else ~/.cache/seekserve)
    SEEKSERVE_CPU_KERNELS  1 (default) builds the hand-written CPU kernels for this CPU; portable builds
                           them without AVX-512 (the code CPUs without it run); 0 turns them off
                           (torch code runs instead)
    SEEKSERVE_BING_API_KEY    key of the Bing Web Search API   (--search-provider bing)
    SEEKSERVE_BRAVE_API_KEY   key of the Brave Search API      (--search-provider brave)
    SEEKSERVE_TAVILY_API_KEY  key of the Tavily Search API     (--search-provider tavily)

Read at call time (not import time), so a process may change them before loading a model.
Two of oneDNN's, not seekserve's, are set by a CPU engine where the environment leaves them unset:
ONEDNN_PRIMITIVE_CACHE_CAPACITY and LRU_CACHE_CAPACITY, to 128 entries each instead of 1,024, which
bounds the memory their shape-keyed caches grow to (engine/model_runner.py, ONEDNN_CACHE_ENTRIES).
Hub access itself follows huggingface_hub's variables (HF_TOKEN, HF_HUB_OFFLINE, HF_ENDPOINT);
`seekserve pull` reads HF_ENDPOINT here (the hub's base URL, default https://huggingface.co).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_HUB_ENDPOINT", "Environment"]

DEFAULT_HUB_ENDPOINT = "https://huggingface.co"

# SEEKSERVE_CPU_KERNELS value -> (kernels on, portable build)
_KERNEL_SETTINGS = {
    **dict.fromkeys(("", "1", "true", "yes", "on", "native"), (True, False)),
    **dict.fromkeys(("0", "false", "no", "off"), (False, False)),
    "portable": (True, True),
}


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """A key from the environment, stripped; None where unset or blank (kept out of reprs)."""
    value = env.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class Environment:
    """seekserve's settings from the environment."""

    home: Path
    """Root of seekserve's cache (SEEKSERVE_HOME)."""
    cpu_kernels: bool = True
    """Build and use the CPU kernels (SEEKSERVE_CPU_KERNELS, default on)."""
    portable_kernels: bool = False
    """Build the CPU kernels without AVX-512 even where the CPU has it (SEEKSERVE_CPU_KERNELS=portable)."""
    bing_api_key: str | None = field(default=None, repr=False)
    """Bing Web Search API key (SEEKSERVE_BING_API_KEY); None where unset or blank."""
    brave_api_key: str | None = field(default=None, repr=False)
    """Brave Search API key (SEEKSERVE_BRAVE_API_KEY); None where unset or blank."""
    tavily_api_key: str | None = field(default=None, repr=False)
    """Tavily Search API key (SEEKSERVE_TAVILY_API_KEY); None where unset or blank."""
    hub_endpoint: str = DEFAULT_HUB_ENDPOINT
    """The Hugging Face hub's base URL (HF_ENDPOINT, as huggingface_hub reads it), without a trailing /."""

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Environment:
        env = os.environ if environ is None else environ
        kernels = env.get("SEEKSERVE_CPU_KERNELS", "1").strip().lower()
        if kernels not in _KERNEL_SETTINGS:
            raise ValueError(
                f"SEEKSERVE_CPU_KERNELS={kernels!r} is not a setting: use 1 (built for this CPU, the "
                f"default), portable (built without AVX-512) or 0 (off: torch code instead)"
            )
        cpu_kernels, portable = _KERNEL_SETTINGS[kernels]
        home = env.get("SEEKSERVE_HOME")
        if home:
            root = Path(home).expanduser()
        else:
            root = Path(env.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "seekserve"
        return cls(
            home=root,
            cpu_kernels=cpu_kernels,
            portable_kernels=portable,
            bing_api_key=_secret(env, "SEEKSERVE_BING_API_KEY"),
            brave_api_key=_secret(env, "SEEKSERVE_BRAVE_API_KEY"),
            tavily_api_key=_secret(env, "SEEKSERVE_TAVILY_API_KEY"),
            hub_endpoint=(env.get("HF_ENDPOINT", "").strip() or DEFAULT_HUB_ENDPOINT).rstrip("/"),
        )

    @property
    def search_dir(self) -> Path:
        """Indexes of the local search provider's folders, one folder per file list."""
        return self.home / "search"

    @property
    def kernels_dir(self) -> Path:
        """CPU kernel libraries built on this machine, one folder per source and CPU."""
        return self.home / "kernels"

    @property
    def models_dir(self) -> Path:
        """Model files seekserve assembles itself (the default model)."""
        return self.home / "models"

    def pulled_model_dir(self, model_id: str) -> Path:
        """Where `seekserve pull org/name` puts a model's files: `models/org/name`."""
        return self.models_dir.joinpath(*model_id.split("/"))

    @property
    def hub_dir(self) -> Path:
        """huggingface_hub's cache for models given as hub ids."""
        return self.home / "hub"

    @property
    def tokenizers_dir(self) -> Path:
        """Tokenizers converted from GGUF metadata, one folder per file header."""
        return self.home / "tokenizers"
