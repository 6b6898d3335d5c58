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
      seekserve serve                                   (the default model, on http://127.0.0.1:8000)
      seekserve serve --model DIR|FILE.gguf|org/name --port 8000
      seekserve generate "The capital of France is"
    """


def _register() -> None:
    from seekserve.cli.bench import bench
    from seekserve.cli.deploy import deploy
    from seekserve.cli.doctor import doctor
    from seekserve.cli.gateway import gateway
    from seekserve.cli.generate import generate
    from seekserve.cli.mirror import mirror
    from seekserve.cli.plan import plan
    from seekserve.cli.pull import pull
    from seekserve.cli.serve import serve
    from seekserve.cli.stack import stack

    cli.add_command(bench)
    cli.add_command(deploy)
    cli.add_command(doctor)
    cli.add_command(gateway)
    cli.add_command(generate)
    cli.add_command(mirror)
    cli.add_command(plan)
    cli.add_command(pull)
    cli.add_command(serve)
    cli.add_command(stack)


_register()


def main() -> None:
    cli(prog_name="seekserve")
