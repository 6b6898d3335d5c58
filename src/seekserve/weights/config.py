"""`PullConfig`: how a pull fetches (kept apart from the downloader, so the command line reads its
defaults without importing the HTTP client)."""

from __future__ import annotations

from dataclasses import dataclass

from seekserve.errors import ConfigError

__all__ = ["PullConfig"]


@dataclass(frozen=True)
class PullConfig:
    connections: int = 8
    """HTTP requests at once: several files, and a large file in as many ranges."""
    range_bytes: int = 32 << 20
    """Files are fetched in ranges of this size, in file order (a smaller file in one request)."""
    max_attempts: int = 5
    """Tries in a row of one range that bring no byte before the pull gives up (the part stays)."""
    max_fetches: int = 2
    """Whole fetches of a file whose checksum does not match before it is refused."""
    timeout_s: float = 60.0
    """Seconds to connect, and seconds without a byte, before a request is dropped and retried."""
    retry_base_s: float = 0.5
    """The first retry's wait; each try in a row without progress doubles it."""
    lock_poll_s: float = 0.2
    """How often a pull waiting for another pull's file looks again."""

    def __post_init__(self) -> None:
        for name in ("connections", "range_bytes", "max_attempts", "max_fetches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1")
        if self.connections > 256:
            raise ConfigError(f"connections={self.connections} is over the limit of 256: use fewer")
        for name in ("timeout_s", "retry_base_s", "lock_poll_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be positive")
