"""`seekserve pull`: a model's files from the hub or a site's mirror, verified, into $SEEKSERVE_HOME."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import click

from seekserve.errors import ConfigError, PullError
from seekserve.weights.config import PullConfig

__all__ = ["pull"]


@click.command()
@click.argument("model")
@click.option("--mirror", metavar="URL", help="A `seekserve mirror serve` to fetch from instead of the hub.")
@click.option("--revision", metavar="REV", help="The hub's branch, tag or commit.  [default: main]")
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to fill.  [default: $SEEKSERVE_HOME/models/MODEL]",
)
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="Fetch the files whose path matches (repeat for several).  [default: what seekserve loads: "
    "config, tokenizer and safetensors, or the one GGUF file]",
)
@click.option(
    "--connections",
    type=int,
    default=PullConfig.connections,
    show_default=True,
    help="HTTP requests at once: files in parallel, and large files in as many ranges.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def pull(
    model: str,
    mirror: str | None,
    revision: str | None,
    dest: Path | None,
    include: tuple[str, ...],
    connections: int,
    quiet: bool,
) -> None:
    """Fetch MODEL's files: parallel ranged downloads, resumed after an interruption, each file checked
    against its SHA-256 and renamed into place only once it matches.

    \b
      seekserve pull deepseek-ai/DeepSeek-R1-Distill-Qwen-7B
      seekserve pull deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --mirror http://mirror:8080
    """
    from seekserve.weights.pull import PullRequest
    from seekserve.weights.pull import pull as pull_model

    try:
        config = PullConfig(connections=connections)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--connections") from e
    try:
        request = PullRequest(model, mirror, revision, dest, include)
        with _Bar(model, quiet) as bar:
            result = pull_model(request, config, bar)
    except (PullError, ConfigError) as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:
        click.echo("\ninterrupted: run the same command again to resume where it stopped", err=True)
        raise SystemExit(130) from None
    at = f" at {result.revision[:12]}" if result.revision else ""
    click.echo(
        f"{model}{at}: {result.num_files} files, {result.total_bytes / 1e9:.2f} GB in {result.dest} "
        f"({len(result.fetched_files)} fetched, {result.fetched_bytes / 1e9:.2f} GB from {result.source} in "
        f"{result.seconds:.1f} s)"
    )
    click.echo(f"serve it with: seekserve serve --model {result.dest}")


class _Bar:
    """A rich progress bar on stderr: bytes, speed, time left, files done."""

    def __init__(self, model: str, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._model = model
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[files]}"),
            console=Console(stderr=True),
            disable=quiet,
        )
        self._task = self._progress.add_task(model, total=None, files="", start=False)
        self._num_files = self._done = 0

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def begin(self, total_bytes: int, num_files: int) -> None:
        self._num_files = num_files
        self._progress.update(self._task, total=total_bytes, files=f"0/{num_files} files")
        self._progress.start_task(self._task)

    def advance(self, num_bytes: int) -> None:
        self._progress.advance(self._task, num_bytes)

    def file_done(self, path: str) -> None:
        self._done += 1
        self._progress.update(self._task, files=f"{self._done}/{self._num_files} files")
