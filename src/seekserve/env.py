"""Environment variables seekserve reads, all in one place, all with the SEEKSERVE_ prefix.

    SEEKSERVE_HOME         cache folder: the default model, hub downloads, converted tokenizers,
                           built CPU kernels (default: $XDG_CACHE_HOME/seekserve, else ~/.cache/seekserve)
    SEEKSERVE_CPU_KERNELS  0 turns the hand-written CPU kernels off (torch code runs instead)

Read at call time (not import time), so a process may change them before loading a model.
Hub access itself follows huggingface_hub's variables (HF_TOKEN, HF_HUB_OFFLINE, HF_ENDPOINT).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Environment"]


@dataclass(frozen=True)
class Environment:
    """seekserve's settings from the environment."""

    home: Path
    """Root of seekserve's cache (SEEKSERVE_HOME)."""
    cpu_kernels: bool = True
    """Build and use the CPU kernels (SEEKSERVE_CPU_KERNELS, default on)."""

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Environment:
        env = os.environ if environ is None else environ
        cpu_kernels = env.get("SEEKSERVE_CPU_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")
        home = env.get("SEEKSERVE_HOME")
        if home:
            return cls(home=Path(home).expanduser(), cpu_kernels=cpu_kernels)
        cache = env.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
        return cls(home=Path(cache).expanduser() / "seekserve", cpu_kernels=cpu_kernels)

    @property
    def kernels_dir(self) -> Path:
        """CPU kernel libraries built on this machine, one folder per source and CPU."""
        return self.home / "kernels"

    @property
    def models_dir(self) -> Path:
        """Model files seekserve assembles itself (the default model)."""
        return self.home / "models"

    @property
    def hub_dir(self) -> Path:
        """huggingface_hub's cache for models given as hub ids."""
        return self.home / "hub"

    @property
    def tokenizers_dir(self) -> Path:
        """Tokenizers converted from GGUF metadata, one folder per file header."""
        return self.home / "tokenizers"
