"""Values in, plain manifests out: one YAML file per part, in the order `kubectl apply -f DIR` needs.

    deploy/k8s/values.yaml + deploy/k8s/variants/NAME.yaml ─ render() ─ deploy/rendered/NAME/
        00-namespace.yaml  10-redis.yaml  20-mirror.yaml  30-engine-NAME.yaml ...  40-gateway.yaml
        50-autoscaling.yaml  60-monitoring.yaml  70-host-tuning.yaml

The rendered files are committed; `seekserve deploy render --all --write` regenerates them and the
tests fail while the committed files differ from what the code and values give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from seekserve.deploy.autoscaling import adapter_rules, hpa_objects, keda_objects
from seekserve.deploy.engines import engine_objects
from seekserve.deploy.gateway import gateway_objects
from seekserve.deploy.host import host_tuning_objects
from seekserve.deploy.monitoring import monitoring_objects
from seekserve.deploy.objects import Obj
from seekserve.deploy.services import mirror_objects, namespace, redis_objects
from seekserve.deploy.values import AutoscalingMode, Values, load_values
from seekserve.errors import ConfigError

__all__ = [
    "dump",
    "render",
    "render_files",
    "stale_files",
    "variant_names",
    "variant_values",
    "write_variant",
]

HEADER = (
    "# Rendered by `seekserve deploy render` from deploy/k8s (values.yaml + variants/{variant}.yaml).\n"
    "# Do not edit: change the values or src/seekserve/deploy/, then\n"
    "# run `seekserve deploy render --all --write`.\n"
)


def render(values: Values, deploy_dir: Path) -> dict[str, list[Obj]]:
    """Every object, by the file it goes in; files without objects are left out."""
    files: dict[str, list[Obj]] = {"00-namespace.yaml": [namespace(values)]}
    if values.redis.enabled:
        files["10-redis.yaml"] = redis_objects(values)
    if values.mirror.enabled and values.mirror.url is None:
        files["20-mirror.yaml"] = mirror_objects(values)
    for engine in values.engines:
        files[f"30-engine-{engine.name}.yaml"] = engine_objects(engine, values)
    files["40-gateway.yaml"] = gateway_objects(values)
    mode = values.autoscaling.mode
    if mode is AutoscalingMode.KEDA:
        files["50-autoscaling.yaml"] = [o for e in values.engines for o in keda_objects(e, values)]
    elif mode is AutoscalingMode.HPA:
        scalers = [o for e in values.engines for o in hpa_objects(e, values)]
        if any(e.gpus_per_node for e in values.engines):
            scalers.append(adapter_rules(values))
        files["50-autoscaling.yaml"] = scalers
    files["60-monitoring.yaml"] = monitoring_objects(values, deploy_dir)
    if values.host_tuning.enabled and any(e.gpus_per_node for e in values.engines):
        files["70-host-tuning.yaml"] = host_tuning_objects(values)
    return {name: objects for name, objects in files.items() if objects}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (config files, scripts, the dashboard) as literal blocks, readable in review."""


def _str(dumper: yaml.SafeDumper, text: str) -> Any:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def dump(objects: list[Obj]) -> str:
    docs = [yaml.dump(o, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True) for o in objects]
    return "---\n" + "---\n".join(docs)


def variant_names(deploy_dir: Path) -> list[str]:
    return sorted(p.stem for p in (deploy_dir / "k8s" / "variants").glob("*.yaml"))


def variant_values(deploy_dir: Path, variant: str) -> Values:
    path = deploy_dir / "k8s" / "variants" / f"{variant}.yaml"
    if not path.is_file():
        known = ", ".join(variant_names(deploy_dir)) or "none"
        raise ConfigError(f"no variant {variant!r} in {path.parent} (variants: {known})")
    return load_values(deploy_dir / "k8s" / "values.yaml", path)


def render_files(values: Values, deploy_dir: Path, variant: str) -> dict[str, str]:
    """File name -> text, as committed under deploy/rendered/VARIANT/."""
    header = HEADER.format(variant=variant)
    return {name: header + dump(objects) for name, objects in render(values, deploy_dir).items()}


def write_variant(deploy_dir: Path, variant: str) -> list[Path]:
    """Rewrite deploy/rendered/VARIANT/ (files no longer rendered are removed); the paths written."""
    out = deploy_dir / "rendered" / variant
    out.mkdir(parents=True, exist_ok=True)
    files = render_files(variant_values(deploy_dir, variant), deploy_dir, variant)
    for old in out.glob("*.yaml"):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (out / name).write_text(text)
    return [out / name for name in files]


def stale_files(deploy_dir: Path, variant: str) -> list[str]:
    """Files of deploy/rendered/VARIANT/ that are missing, differ or should not be there."""
    out = deploy_dir / "rendered" / variant
    files = render_files(variant_values(deploy_dir, variant), deploy_dir, variant)
    committed = {p.name: p.read_text() for p in out.glob("*.yaml")} if out.is_dir() else {}
    names = sorted(set(files) | set(committed))
    return [f"{variant}/{n}" for n in names if files.get(n) != committed.get(n)]
