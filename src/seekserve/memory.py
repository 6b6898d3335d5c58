"""Host memory as the engine sizes itself by it, and a sampler of a process's peak memory."""

from __future__ import annotations

import os
import threading
from types import TracebackType

__all__ = ["PeakMemory", "anonymous_memory_bytes", "available_memory_bytes"]


def available_memory_bytes() -> int:
    """Memory the system can give this process now (free pages)."""
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def anonymous_memory_bytes() -> int:
    """This process's resident memory not backed by files (Linux): its own allocations, without
    memory-mapped checkpoint pages, which the kernel can drop and reread."""
    with open("/proc/self/statm") as f:
        _, resident, shared = (int(v) for v in f.read().split()[:3])
    return (resident - shared) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Samples `anonymous_memory_bytes` from a thread while the block runs: `peak_bytes` is the most it
    grew above its value on entry, `final_bytes` what it grew by at exit, so `peak_bytes - final_bytes`
    is what the block needed only while it ran. Sampling misses spikes shorter than `interval_s`.

        with PeakMemory() as peak:
            load_model(...)
        print(peak.peak_bytes)
    """

    def __init__(self, interval_s: float = 0.0005):
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.final_bytes = 0
        self._base = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._base = anonymous_memory_bytes()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join()
        self._record()
        self.final_bytes = anonymous_memory_bytes() - self._base

    def _sample(self) -> None:
        while not self._done.wait(self.interval_s):
            self._record()

    def _record(self) -> None:
        self.peak_bytes = max(self.peak_bytes, anonymous_memory_bytes() - self._base)
