"""`seekserve serve`: run the OpenAI-compatible HTTP server in front of one model."""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from seekserve.cli.options import (
    config_options,
    engine_options,
    pop_engine_options,
    pop_search_config,
    search_options,
)
from seekserve.errors import SeekserveError
from seekserve.server.config import ServerConfig

if TYPE_CHECKING:
    from seekserve.engine.async_engine import AsyncEngine
    from seekserve.engine.config import EngineConfig

__all__ = ["ModelChoice", "resolve_model", "serve"]

API_KEY_ENV = "SEEKSERVE_API_KEY"


@dataclass(frozen=True)
class ModelChoice:
    path: str | None
    """What the engine loads (None: the default model)."""
    name: str
    """What clients call it."""


def resolve_model(model: str | None, served_model_name: str | None) -> ModelChoice:
    """The model to load for `--model` and the name to serve it under.

    The name defaults to the directory's or GGUF file's name, a hub id as given, or the default
    model's name when no model is given.
    """
    if model is None:
        from seekserve.models.default_model import DEFAULT_MODEL_NAME

        return ModelChoice(None, served_model_name or DEFAULT_MODEL_NAME)
    path = Path(model).expanduser()
    if not path.exists():
        return ModelChoice(model, served_model_name or model)  # a hub id: org/name[:TAG]
    name = path.resolve().name
    return ModelChoice(str(path), served_model_name or name.removesuffix(".gguf") or str(path))


@click.command()
@click.option(
    "--model",
    "model",
    default=None,
    help="A Hugging Face directory, a GGUF file, or a hub id (org/name[:TAG]).  "
    "[default: the packaged Gemma 3 270M]",
)
@click.option(
    "--served-model-name",
    default=None,
    help="Name clients send as `model` and see in /v1/models.  [default: the model's directory or file name]",
)
@config_options([ServerConfig], skip={"served_model_name", "search"}, envvars={"api_key": API_KEY_ENV})
@search_options
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Least severe server log messages shown (the access log is always on, one JSON line per request).",
)
@engine_options
def serve(model: str | None, served_model_name: str | None, log_level: str, **kwargs: Any) -> None:
    """Serve a model through an OpenAI-compatible HTTP API.

    \b
    Endpoints:
      POST /v1/chat/completions   POST /v1/completions   GET /v1/models
      GET /health (200 once ready)   GET /metrics (Prometheus)   GET /dashboard (live)
      GET /chat (chat in the browser)   GET /docs
    Chat answers grounded in web search: --web-search auto|on (see docs/search.md).
    \b
    Example:
      seekserve serve --model /models/DeepSeek-R1-Distill-Qwen-1.5B --port 8000
      curl localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\
        -d '{"messages": [{"role": "user", "content": "Hi"}]}'
    """
    from seekserve.engine.config import EngineConfig

    engine_kwargs = pop_engine_options(kwargs)
    choice = resolve_model(model, served_model_name)
    try:
        search = pop_search_config(kwargs)
        config = ServerConfig(served_model_name=choice.name, search=search, **kwargs)
        engine_config = EngineConfig.from_options(model=choice.path, **engine_kwargs)
    except SeekserveError as e:
        raise click.ClickException(str(e)) from e
    if click.get_current_context().get_parameter_source("api_key") is ParameterSource.COMMANDLINE:
        click.echo(
            f"seekserve: warning: an --api-key on the command line is visible to every user of this machine "
            f"(ps, /proc/PID/cmdline); set {API_KEY_ENV} instead",
            err=True,
        )
    run_server(config, engine_config, log_level)


def run_server(config: ServerConfig, engine_config: EngineConfig, log_level: str) -> None:
    """Listen until stopped (Ctrl-C or SIGTERM); exits with status 1 if the model fails to load, or if
    the engine dies later (after every stream in flight has been sent the error), for a supervisor to
    restart it."""
    import uvicorn

    from seekserve.engine.async_engine import AsyncEngine
    from seekserve.server import create_app

    failures: list[BaseException] = []
    deaths: list[BaseException] = []

    def load() -> AsyncEngine:
        return AsyncEngine.from_config(engine_config)

    def on_load_error(error: BaseException) -> None:
        failures.append(error)
        server.should_exit = True

    def on_engine_dead(error: BaseException) -> None:
        # Every stream has its error event; stop taking requests and exit non-zero, so that the
        # supervisor (systemd, Kubernetes, docker --restart) starts a fresh process.
        deaths.append(error)
        server.should_exit = True

    def on_ready(engine: AsyncEngine) -> None:
        # With --port 0 the system picked the port: report the one actually bound.
        ports = [sock.getsockname()[1] for srv in server.servers for sock in srv.sockets]
        _print_ready(config, engine, ports[0] if ports else config.port)

    try:
        app = create_app(config, load, on_ready, on_load_error, on_engine_dead)
    except SeekserveError as e:  # the search provider lacks what it needs
        raise click.ClickException(str(e)) from e
    uv_config = uvicorn.Config(
        app, host=config.host, port=config.port, log_config=log_config(log_level), access_log=False
    )
    server = uvicorn.Server(uv_config)
    _print_start(config, engine_config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after a graceful shutdown
        server.run()
    if failures:
        raise click.ClickException(f"the model failed to load: {failures[0]}")
    if deaths:
        raise click.ClickException(f"{deaths[0]}; the server stopped so that it can be restarted")


def _url(config: ServerConfig, port: int | None = None) -> str:
    host = config.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.port if port is None else port}"


def _print_start(config: ServerConfig, engine_config: EngineConfig) -> None:
    click.echo(
        f"seekserve: loading {engine_config.model.model or 'the default model'}; "
        f"/health answers 503 until it is ready",
        err=True,
    )
    if config.api_key is None and not _is_loopback(config.host):
        click.echo(
            f"seekserve: warning: listening on {config.host} with no API key; anyone who can reach it may "
            f"use it (set --api-key or {API_KEY_ENV})",
            err=True,
        )


def _print_ready(config: ServerConfig, engine: AsyncEngine, port: int) -> None:
    e = engine.info
    arch, dtype = e.architecture, e.dtype
    lines = [
        f"seekserve: serving {config.served_model_name!r}",
        f"  model      {e.model_path} ({arch}, {dtype}, {e.weight_bytes / 1e6:,.1f} MB of weights, "
        f"on {e.device})",
        f"  context    {e.max_model_len:,} tokens per sequence; up to {e.max_num_seqs} sequences at once",
        f"  KV cache   {e.kv_cache_tokens:,} tokens ({e.num_kv_blocks:,} blocks of {e.block_size})",
        f"  API        {_url(config, port)}/v1  (health: /health, docs: /docs)",
        f"  chat       {_url(config, port)}/chat",
    ]
    if e.cpu_kernels is not None:
        lines.append(f"  kernels    {e.cpu_kernels}")  # avx512 (...), portable (...) or off (why)
    if config.enable_metrics:
        lines.append(f"  monitoring {_url(config, port)}/dashboard  (Prometheus: /metrics)")
    click.echo("\n".join(lines), err=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def log_config(level: str) -> dict[str, Any]:
    """Logging for the server: messages on stderr, the JSON access log alone on stdout."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(name)s: %(message)s",
            },
            "access": {"format": "%(message)s"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
            "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "seekserve": {"handlers": ["default"], "level": level, "propagate": False},
            "seekserve.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
