"""`seekserve mirror serve DIR`: model folders over HTTP for a site's engines (an edge cache of weights)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

__all__ = ["mirror"]


@click.group()
def mirror() -> None:
    """Serve model folders to the engines of a site, so each pulls from the site instead of the hub.

    \b
      seekserve pull deepseek-ai/DeepSeek-R1-Distill-Qwen-7B          (once, on the mirror host)
      seekserve mirror serve ~/.cache/seekserve/models --host 0.0.0.0 --port 8080
      seekserve pull deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --mirror http://mirror:8080   (on each engine)
    """


@mirror.command("serve")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="TCP port.")
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]), show_default=True
)
def serve(directory: Path, host: str, port: int, log_level: str) -> None:
    """Serve every model folder under DIRECTORY: GET /{model}/manifest.json lists its files with
    their SHA-256, GET /{model}/{path} sends a file (with Range), GET / lists the models."""
    from seekserve.weights.mirror import serve_mirror

    click.echo(
        f"seekserve mirror: serving the model folders under {directory} on http://{host}:{port}/", err=True
    )
    with contextlib.suppress(KeyboardInterrupt):
        serve_mirror(directory, host, port, log_level)
