"""`seekserve doctor`: check the host for smooth serving, explain each finding, fix the safe ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seekserve.env import Environment
from seekserve.errors import HostFixError

if TYPE_CHECKING:
    from seekserve.host import CheckResult, Host

__all__ = ["doctor"]

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {name, status, value, why, fix}.")
@click.option(
    "--fix",
    "fix",
    is_flag=True,
    help="Apply the safe fixes (sysctl values, the transparent huge page mode) after confirmation; "
    "needs root.",
)
@click.option("--yes", "-y", is_flag=True, help="Apply --fix without asking.")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="The model folder (or file) whose read speed to measure.  [default: $SEEKSERVE_HOME/models]",
)
@click.option(
    "--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default="/", hidden=True
)
def doctor(as_json: bool, fix: bool, yes: bool, model_path: Path | None, root: Path) -> None:
    """Check GPUs, CPU, memory, storage, network and software for serving; say why each matters.

    \b
    Every check prints its status (ok, warn, fail, skip), what it measured, and the command that
    fixes it. Exits with status 1 when a check fails.
      seekserve doctor
      seekserve doctor --json
      sudo seekserve doctor --fix
    """
    from seekserve.host import Host, Status, run_checks

    env = Environment.read()
    if model_path is None and env.models_dir.is_dir() and any(env.models_dir.iterdir()):
        model_path = env.models_dir
    host = Host(root=root, model_path=model_path, home=env.home)
    results = run_checks(host)
    if fix:
        results = _fix(host, results, yes, quiet=as_json)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in results], indent=2))
    else:
        _print(results)
    if any(r.status is Status.FAIL for r in results):
        raise SystemExit(1)


def _fix(host: Host, results: list[CheckResult], yes: bool, quiet: bool) -> list[CheckResult]:
    from seekserve.host import run_checks
    from seekserve.host.fix import apply_fixes, pending_writes, require_root

    writes = pending_writes(results)
    if not writes:
        click.echo("nothing for --fix to apply: the remaining fixes are commands to run yourself", err=True)
        return results
    try:
        require_root(host, writes)
    except HostFixError as e:
        raise click.ClickException(str(e)) from e
    click.echo("--fix will write:", err=True)
    for w in writes:
        click.echo(
            f"  {w.path} <- {w.value}" + (f"   ({w.sysctl}, also persisted)" if w.sysctl else ""), err=True
        )
    if not yes and not click.confirm("apply these?", err=True):
        click.echo("nothing written", err=True)
        return results
    failed = False
    for applied in apply_fixes(host, results):
        mark = "written" if applied.error is None else f"NOT written: {applied.error}"
        failed |= applied.error is not None
        click.echo(f"  {applied.path}: {mark}", err=True)
    if failed and not quiet:
        click.echo("some writes failed; the table below shows what is in place now", err=True)
    return run_checks(host)


def _print(results: list[CheckResult]) -> None:
    """A table of every check, then why and how to fix each that is not ok."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="seekserve doctor", show_lines=False)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("value")
    for r in results:
        table.add_row(r.name, Text(r.status.value, style=_STYLE[r.status.value]), r.value)
    console = Console()
    console.print(table)
    to_fix = [r for r in results if r.fix and r.status.value != "ok"]
    for r in to_fix:
        console.print(
            Text.assemble((f"{r.name} ", "bold"), (r.status.value, _STYLE[r.status.value]), f": {r.why}")
        )
        console.print(Text.assemble("  fix: ", (r.fix or "", "cyan")), soft_wrap=True)
    if any(r.writes for r in to_fix):
        console.print("sudo seekserve doctor --fix applies the fixes that write a sysctl or the THP mode.")
