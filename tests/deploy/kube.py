"""What the deploy tests share: every rendered variant's objects, and schema validation of one object.

Kubernetes' own kinds are checked against the JSON schemas of Kubernetes KUBERNETES_VERSION that
kubernetes-validate ships (the strict ones: an unknown field is an error); KEDA's, the Prometheus
Operator's and LeaderWorkerSet's against deploy/schemas/ (deploy/schemas/README.md says how they
were written), which point into the same Kubernetes schemas for pod templates and HPA behaviour.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import kubernetes_validate
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from seekserve.deploy.render import render, variant_names, variant_values

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SCHEMAS = DEPLOY / "schemas"
KUBERNETES_VERSION = "1.33"
VARIANTS = variant_names(DEPLOY)
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "leaderworkerset.x-k8s.io_v1_leaderworkerset.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
}

Obj = dict[str, Any]


@cache
def objects(variant: str) -> tuple[Obj, ...]:
    """Every object of a variant, rendered from the values (not read from deploy/rendered/)."""
    files = render(variant_values(DEPLOY, variant), DEPLOY)
    return tuple(o for group in files.values() for o in group)


def of_kind(variant: str, kind: str) -> list[Obj]:
    return [o for o in objects(variant) if o["kind"] == kind]


@cache
def _registry() -> Registry:
    folder = (
        resources.files(kubernetes_validate)
        / "kubernetes-json-schema"
        / f"v{KUBERNETES_VERSION}.0-local-strict"
    )
    definitions = json.loads((folder / "_definitions.json").read_text())
    registry: Registry = Resource.from_contents(definitions) @ Registry()
    for path in SCHEMAS.glob("*.json"):
        registry = Resource.from_contents(json.loads(path.read_text())) @ registry
    return registry


@cache
def _crd_validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


def validate(obj: Obj) -> None:
    """Raise jsonschema's ValidationError (or kubernetes-validate's) when `obj` breaks its schema."""
    crd = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if crd is not None:
        _crd_validator(crd).validate(obj)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
