"""The OpenAI-compatible HTTP server (`seekserve serve`): FastAPI in front of an `AsyncEngine`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ServerConfig", "create_app"]

if TYPE_CHECKING:
    from seekserve.server.app import create_app
    from seekserve.server.config import ServerConfig


def __getattr__(name: str) -> Any:
    # Lazy, so `seekserve --help` does not import FastAPI and the engine.
    if name == "create_app":
        from seekserve.server.app import create_app

        return create_app
    if name == "ServerConfig":
        from seekserve.server.config import ServerConfig

        return ServerConfig
    raise AttributeError(f"module 'seekserve.server' has no attribute {name!r}")
