"""`seekserve stack up`: Redis, two engines, the gateway and Prometheus on one machine, no Kubernetes."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType

import click

from seekserve.errors import SeekserveError

__all__ = ["stack"]


@click.group()
def stack() -> None:
    """A local stack of processes (deploy/local/, docs/deploy.md)."""


@stack.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A stack YAML file, e.g. deploy/local/stack.yaml.  [default: two engines on the default model]",
)
@click.option("--model", default=None, help="What the engines serve (overrides the file's `model`).")
@click.option("--served-model-name", default=None, help="The name clients send as `model`.")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Logs, generated configs and stack.json.  [default: the file's run_dir, or ./seekserve-stack]",
)
def up(
    config_path: Path | None, model: str | None, served_model_name: str | None, run_dir: Path | None
) -> None:
    """Start Redis, the engines, the gateway and Prometheus; wait until each is healthy; stop them all
    on Ctrl-C or SIGTERM (or when one of them dies).

    \b
      seekserve stack up --config deploy/local/stack.yaml
      curl http://127.0.0.1:4000/v1/chat/completions -H 'Content-Type: application/json' \\
        -d '{"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Hi"}]}'
    """
    from seekserve.stack.config import load_stack_config
    from seekserve.stack.supervisor import Stack

    logging.basicConfig(level=logging.INFO, format="seekserve stack: %(message)s")
    try:
        config = load_stack_config(
            config_path, model=model, served_model_name=served_model_name, run_dir=run_dir
        )
    except SeekserveError as exc:
        raise click.ClickException(str(exc)) from exc
    running = Stack(config)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        running.stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        running.start()
        gateway = next(c for c in running.children if c.name == "gateway")
        parts = ", ".join(f"{c.name} {c.url}" for c in running.children if c.name != "gateway")
        click.echo(f"seekserve stack: ready: gateway {gateway.url}/v1 ({parts})", err=True)
        running.wait()
    except SeekserveError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        running.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    click.echo("seekserve stack: stopped", err=True)
