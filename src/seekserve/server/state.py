"""`ServerState`: what the endpoints share — the engine once loaded, the config, the metrics."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from seekserve.engine.async_engine import AsyncEngine
from seekserve.engine.sampling_params import SamplingParams
from seekserve.errors import (
    EngineDeadError,
    EngineNotReadyError,
    InvalidRequestError,
    ModelNotFoundError,
    PromptTooLongError,
)
from seekserve.metrics import Monitor, ServerMetrics
from seekserve.search.metrics import SearchMetrics
from seekserve.search.service import WebSearch
from seekserve.server.config import ServerConfig
from seekserve.server.logprobs import LogprobFormatter
from seekserve.server.protocol import SamplingDefaults

__all__ = ["ServerState", "sampling_defaults"]

log = logging.getLogger(__name__)


class ServerState:
    """Shared by all requests; `engine` is None until the model has loaded."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.created = int(time.time())
        self.engine: AsyncEngine | None = None
        self.load_error: BaseException | None = None
        self.defaults = SamplingDefaults()
        self.logprobs: LogprobFormatter | None = None
        self.metrics: ServerMetrics | None = None
        """None when metrics are off (`enable_metrics=False`)."""
        self.monitor: Monitor | None = None
        self.search_metrics: SearchMetrics | None = None
        if config.enable_metrics:
            self.metrics = ServerMetrics(config.served_model_name, self._stats)
            self.monitor = Monitor(self.metrics, config.metrics_interval_s)
            self.search_metrics = SearchMetrics(self.metrics.registry, config.served_model_name)
        self.search: WebSearch | None = None if config.web_search == "off" else WebSearch(config.search)
        """Web search (--web-search auto|on); ConfigError here when its provider lacks what it needs."""

    def _stats(self) -> Any:
        return None if self.engine is None else self.engine.stats

    def attach(self, engine: AsyncEngine) -> None:
        """Serve with `engine` from now on (called once the model has loaded)."""
        self.defaults = sampling_defaults(engine.info.model_path)
        self.logprobs = LogprobFormatter(engine.tokenizer)
        self.engine = engine

    @property
    def max_model_len(self) -> int:
        return self.ready_engine().info.max_model_len

    def ready_engine(self) -> AsyncEngine:
        """The engine, or EngineNotReadyError while loading and EngineDeadError after a fatal error."""
        engine = self.engine
        if engine is None:
            if self.load_error is not None:
                raise EngineDeadError(f"the model failed to load: {self.load_error}")
            raise EngineNotReadyError("the model is still loading: retry when GET /health answers 200")
        if not engine.is_healthy:
            raise engine.dead_error or EngineDeadError("the engine has stopped; restart the server")
        return engine

    def check_model(self, model: str | None) -> str:
        """The served name for a request's `model`; ModelNotFoundError for any other name."""
        name = self.config.served_model_name
        if model is not None and model != name:
            raise ModelNotFoundError(model, [name])
        return name

    def check_length(
        self, num_prompt_tokens: int, max_tokens: int | None, explicit: bool, param: str = "messages"
    ) -> None:
        """Reject prompts that leave no room, and an explicit max_tokens that overflows the context.

        `param` is the field that holds the prompt: `messages` (chat) or `prompt` (completions)."""
        limit = self.max_model_len
        if num_prompt_tokens >= limit:
            raise PromptTooLongError(num_prompt_tokens, limit, param)
        if explicit and max_tokens is not None and num_prompt_tokens + max_tokens > limit:
            raise InvalidRequestError(
                f"the model's context holds {limit} tokens, but the prompt has {num_prompt_tokens} and "
                f"max_tokens asks for {max_tokens} more ({num_prompt_tokens + max_tokens} in all): lower "
                f"max_tokens to at most {limit - num_prompt_tokens}, or shorten the prompt",
                param="max_tokens",
            )


def sampling_defaults(model_path: Path) -> SamplingDefaults:
    """Defaults from a model directory's generation_config.json (as vLLM applies them), else OpenAI's.

    A GGUF file carries no sampling defaults.
    """
    path = model_path / "generation_config.json"
    if not model_path.is_dir() or not path.is_file():
        return SamplingDefaults()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable %s: %s", path, e)
        return SamplingDefaults()
    values = {
        f.name: data[f.name]
        for f in fields(SamplingDefaults)
        if isinstance(data.get(f.name), int | float) and not isinstance(data.get(f.name), bool)
    }
    try:
        SamplingParams(**values)
    except InvalidRequestError as e:
        log.warning("ignoring the sampling defaults of %s: %s", path, e)
        return SamplingDefaults()
    if values:
        log.info("sampling defaults from %s: %s", path, values)
    return SamplingDefaults(**values)
