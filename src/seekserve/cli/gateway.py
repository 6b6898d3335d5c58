"""`seekserve gateway`: the OpenAI-compatible access layer in front of many engines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from seekserve.cli.serve import log_config
from seekserve.errors import ConfigError

__all__ = ["gateway"]


@click.command()
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    metavar="URL",
    help="An engine's OpenAI base URL, http://host:port/v1 (repeat for several); "
    "models come from its /v1/models.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A YAML file with backends, models, retry, cache, keys and limits (docs/gateway.md); "
    "SIGHUP reloads it.",
)
@click.option("--host", default=None, help="Address to listen on.  [default: 127.0.0.1, or listen.host]")
@click.option("--port", type=int, default=None, help="TCP port.  [default: 4000, or listen.port]")
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]), show_default=True
)
def gateway(
    upstreams: tuple[str, ...], config_path: Path | None, host: str | None, port: int | None, log_level: str
) -> None:
    """Route OpenAI-compatible requests across engines, with retries, fallback, caching and limits.

    \b
      seekserve gateway --upstream http://10.0.0.1:8000/v1 --upstream http://10.0.0.2:8000/v1
      seekserve gateway --config gateway.yaml
    """  # fmt: skip
    from seekserve.gateway.config import from_upstreams, load_config
    from seekserve.gateway.runner import serve

    if bool(upstreams) == bool(config_path):
        raise click.UsageError("give either --upstream URL (one or more) or --config FILE")
    try:
        if config_path is not None:
            config = load_config(config_path)
            listen = config.listen.model_copy(
                update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
            )
            config = config.model_copy(update={"listen": listen})
        else:
            config = from_upstreams(
                list(upstreams), host=host or "127.0.0.1", port=4000 if port is None else port
            )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    logging = log_config(log_level)
    logging["loggers"]["seekserve.gateway.access"] = {
        "handlers": ["access"],
        "level": "INFO",
        "propagate": False,
    }
    click.echo(
        f"seekserve gateway: {len(config.backends)} backends, "
        f"listening on http://{config.listen.host}:{config.listen.port}/v1 "
        f"(chat in the browser: /chat)",
        err=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        _run(serve(config, config_path, logging))


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # Windows: the default loop
        asyncio.run(main)
        return
    uvloop.run(main)
