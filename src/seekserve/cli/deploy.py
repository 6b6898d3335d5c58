"""`seekserve deploy render`: the Kubernetes manifests of deploy/k8s as plain YAML."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from seekserve.errors import ConfigError

if TYPE_CHECKING:
    from seekserve.deploy.values import Values

__all__ = ["deploy"]


def _deploy_dir(path: Path) -> Path:
    if not (path / "k8s" / "values.yaml").is_file():
        raise click.UsageError(
            f"{path} has no k8s/values.yaml: run from the repository root or pass --deploy-dir DIR "
            "(the repository's deploy/ folder)"
        )
    return path


@click.group()
def deploy() -> None:
    """Kubernetes manifests (docs/deploy.md)."""


@deploy.command()
@click.argument("variant", required=False)
@click.option(
    "-f",
    "--values",
    "value_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A values file over deploy/k8s/values.yaml (and over VARIANT's, when given); repeatable.",
)
@click.option("--all", "all_variants", is_flag=True, help="Every variant of deploy/k8s/variants.")
@click.option("--write", is_flag=True, help="Rewrite deploy/rendered/VARIANT/ instead of printing.")
@click.option("--check", is_flag=True, help="Exit 1 when deploy/rendered/ differs from a fresh render.")
@click.option(
    "--deploy-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("deploy"),
    show_default=True,
    help="The repository's deploy/ folder.",
)
def render(
    variant: str | None,
    value_files: tuple[Path, ...],
    all_variants: bool,
    write: bool,
    check: bool,
    deploy_dir: Path,
) -> None:
    """Render the manifests of VARIANT (small-cpu, r1-vllm, ...) or of your own values.

    \b
      seekserve deploy render r1-vllm | kubectl apply -f -
      seekserve deploy render r1-vllm -f my-cluster.yaml > r1.yaml
      seekserve deploy render --all --write      (regenerate deploy/rendered/)
    """
    from seekserve.deploy.render import dump
    from seekserve.deploy.render import render as render_values

    deploy_dir = _deploy_dir(deploy_dir)
    if (write or check) and value_files:
        raise click.UsageError("--write and --check work on the committed variants, not on -f files")
    if write or check:
        if not (variant or all_variants):
            raise click.UsageError("name a VARIANT or --all")
        _write_or_check(deploy_dir, variant, write)
        return
    if all_variants:
        raise click.UsageError("print one variant at a time (or --write them all)")
    try:
        values = _values(deploy_dir, variant, value_files)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    objects = [o for group in render_values(values, deploy_dir).values() for o in group]
    click.echo(dump(objects), nl=False)


def _values(deploy_dir: Path, variant: str | None, value_files: tuple[Path, ...]) -> Values:
    from seekserve.deploy.render import variant_values
    from seekserve.deploy.values import load_values

    if variant is not None and not value_files:
        return variant_values(deploy_dir, variant)
    files = [deploy_dir / "k8s" / "values.yaml"]
    if variant is not None:
        variant_values(deploy_dir, variant)  # a clear error for an unknown variant
        files.append(deploy_dir / "k8s" / "variants" / f"{variant}.yaml")
    return load_values(*files, *value_files)


def _write_or_check(deploy_dir: Path, variant: str | None, write: bool) -> None:
    from seekserve.deploy.render import stale_files, variant_names, write_variant

    names = [variant] if variant else variant_names(deploy_dir)
    try:
        if write:
            for name in names:
                for path in write_variant(deploy_dir, name):
                    click.echo(f"wrote {path}", err=True)
            return
        stale = [f for name in names for f in stale_files(deploy_dir, name)]
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if stale:
        raise click.ClickException(
            f"{len(stale)} rendered files differ from the values: {', '.join(stale)}; "
            "run `seekserve deploy render --all --write`"
        )
    click.echo(f"deploy/rendered matches the values ({len(names)} variants)", err=True)
