"""The `seekserve` command. Each subcommand lives in a module of this package."""

from __future__ import annotations

import click

from seekserve import __version__

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="seekserve")
def cli() -> None:
    """seekserve: run DeepSeek models smoothly, from a laptop CPU to a GPU cluster.

    \b
    Quick start:
      seekserve generate --model DIR "The capital of France is"
      seekserve serve --model DIR --port 8000
    """


def _register() -> None:
    from seekserve.cli.bench import bench
    from seekserve.cli.generate import generate
    from seekserve.cli.serve import serve

    cli.add_command(bench)
    cli.add_command(generate)
    cli.add_command(serve)


_register()


def main() -> None:
    cli(prog_name="seekserve")
