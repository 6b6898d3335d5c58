"""Every rendered object of every variant against its schema: Kubernetes' own kinds against the
Kubernetes 1.33 schemas (strict), KEDA, Prometheus Operator and LeaderWorkerSet objects against
deploy/schemas/. Broken objects fail, so the validation is known to bite."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable

import pytest
from jsonschema import ValidationError

from deploy.kube import CRD_SCHEMAS, VARIANTS, Obj, objects, of_kind, validate

COMMON = {"Namespace": 1, "PodDisruptionBudget": 1, "PersistentVolumeClaim": 1, "ServiceMonitor": 2,
          "PrometheusRule": 1}  # fmt: skip
EXPECTED_KINDS = {
    "small-cpu": COMMON | {"Deployment": 4, "Service": 4, "ScaledObject": 1, "ConfigMap": 2},
    "r1-vllm-hpa": COMMON | {"Deployment": 5, "Service": 5, "HorizontalPodAutoscaler": 2, "ConfigMap": 3,
                             "DaemonSet": 1},
    "r1-vllm-multinode": COMMON | {"Deployment": 3, "LeaderWorkerSet": 1, "Service": 4, "ScaledObject": 1,
                                   "ConfigMap": 2, "DaemonSet": 1},
}  # fmt: skip


def test_the_variants_are_the_documented_five() -> None:
    assert VARIANTS == ["r1-sglang-multinode", "r1-vllm", "r1-vllm-hpa", "r1-vllm-multinode", "small-cpu"]


@pytest.mark.parametrize("variant", sorted(EXPECTED_KINDS))
def test_a_variant_renders_the_kinds_it_should(variant: str) -> None:
    assert Counter(o["kind"] for o in objects(variant)) == EXPECTED_KINDS[variant]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_valid_for_its_schema(variant: str) -> None:
    for obj in objects(variant):
        validate(obj)


def test_every_custom_kind_rendered_has_a_schema_and_each_schema_is_used() -> None:
    rendered = {(o["apiVersion"], o["kind"]) for v in VARIANTS for o in objects(v)}
    custom = {key for key in rendered if "." in key[0].split("/")[0]}
    assert custom == set(CRD_SCHEMAS)


def _container(o: Obj) -> Obj:
    return o["spec"]["template"]["spec"]["containers"][0]


def _group(o: Obj) -> Obj:
    return o["spec"]["leaderWorkerTemplate"]


def _scale_down(o: Obj) -> Obj:
    return o["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]


def _trigger(o: Obj) -> Obj:
    return o["spec"]["triggers"][0]["metadata"]


def _rule(o: Obj) -> Obj:
    return o["spec"]["groups"][0]["rules"][0]


BROKEN = [
    ("Deployment", "small-cpu", lambda o: _container(o).update(imagee="x"), "imagee"),
    ("Service", "small-cpu", lambda o: o["spec"]["ports"][0].update(port="http"), "http"),
    ("LeaderWorkerSet", "r1-vllm-multinode", lambda o: _group(o).update(restartPolicy="Always"), "Always"),
    ("LeaderWorkerSet", "r1-vllm-multinode",
     lambda o: _group(o)["workerTemplate"]["spec"]["containers"][0].update(gpu=8), "gpu"),
    ("ScaledObject", "small-cpu", lambda o: _trigger(o).pop("threshold"), "threshold"),
    ("ScaledObject", "small-cpu", lambda o: _scale_down(o).update(window=1), "window"),
    ("ServiceMonitor", "small-cpu", lambda o: o["spec"]["endpoints"][0].update(intervall="5s"), "intervall"),
    ("PrometheusRule", "small-cpu", lambda o: _rule(o).pop("record"), "valid under"),
    ("HorizontalPodAutoscaler", "r1-vllm-hpa", lambda o: o["spec"].pop("maxReplicas"), "maxReplicas"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "variant", "break_it", "complaint"), BROKEN)
def test_a_broken_object_fails_validation(
    kind: str, variant: str, break_it: Callable[[Obj], object], complaint: str
) -> None:
    obj = copy.deepcopy(of_kind(variant, kind)[0])
    break_it(obj)
    with pytest.raises(ValidationError) as failed:
        validate(obj)
    assert complaint in str(failed.value.message)
