"""Server configuration: what `seekserve serve` adds to the engine's options.

The CLI takes its flags, defaults and help from this dataclass (see `cli/serve.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seekserve.errors import ConfigError
from seekserve.search.config import SearchConfig, WebSearchMode

__all__ = ["ReasoningParser", "ServerConfig", "WebSearchMode"]

ReasoningParser = Literal["deepseek_r1", "none"]

_MIN_BODY_BYTES = 1024
_METRICS_INTERVAL_RANGE_S = (0.1, 60.0)


@dataclass(frozen=True)
class ServerConfig:
    """How the OpenAI-compatible HTTP server listens, authenticates and shapes answers."""

    served_model_name: str
    """The model name clients send in `model` and see in GET /v1/models."""

    host: str = "127.0.0.1"
    """Address to listen on; 0.0.0.0 listens on every interface (set an API key then)."""

    port: int = 8000
    """TCP port to listen on; 0 picks a free one."""

    api_key: str | None = field(default=None, repr=False)
    """Bearer token that /v1/* requests must carry; unset leaves the API open."""

    request_timeout_s: float | None = None
    """Longest a request may take, queueing included, before it is aborted; unset means no limit."""

    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request body accepted; larger ones get 413."""

    reasoning_parser: ReasoningParser = "deepseek_r1"
    """"deepseek_r1": text inside <think>...</think> goes to `reasoning_content`; "none": all in `content`."""

    log_prompts: bool = False
    """Put prompt text and messages in the access log (off: only counts and timings are logged)."""

    enable_metrics: bool = True
    """Collect metrics: /metrics for Prometheus, the live /dashboard, GPU and process sampling."""

    metrics_interval_s: float = 1.0
    """How often the GPUs are read and the live dashboard advances (0.1 to 60 s)."""

    web_search: WebSearchMode = "off"
    """Web-search grounding of chat answers: "off" never searches (a request asking gets `search_error`);
    "auto" searches when a request asks (`web_search_options`, `web_search: true`); "on" searches every
    chat request unless it sends `web_search: false`."""

    search: SearchConfig = field(default_factory=SearchConfig)
    """Provider, fetch rules and budgets of web search (the --search-* flags)."""

    def __post_init__(self) -> None:
        if not self.served_model_name:
            raise ConfigError("served_model_name is empty: give the name clients will send as `model`")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port={self.port} is invalid: use 1 to 65535 (or 0 for any free port)")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty: give a non-empty key, or none to leave the API open")
        if self.request_timeout_s is not None and not self.request_timeout_s > 0:
            raise ConfigError(
                f"request_timeout_s={self.request_timeout_s} is invalid: "
                "it must be > 0, or unset for no limit"
            )
        if self.max_body_bytes < _MIN_BODY_BYTES:
            raise ConfigError(
                f"max_body_bytes={self.max_body_bytes} is too small: it must be at least {_MIN_BODY_BYTES}"
            )
        low, high = _METRICS_INTERVAL_RANGE_S
        if not low <= self.metrics_interval_s <= high:
            raise ConfigError(
                f"metrics_interval_s={self.metrics_interval_s} is out of range: use {low} to {high} seconds"
            )
        if self.web_search not in ("off", "auto", "on"):
            raise ConfigError(f"web_search={self.web_search!r} is not supported: choose off, auto or on")
        if self.reasoning_parser not in ("deepseek_r1", "none"):
            raise ConfigError(
                f"reasoning_parser={self.reasoning_parser!r} is not supported: choose deepseek_r1 or none"
            )
