"""Cross-object checks a schema cannot make: what selects what, what names what, what every
container must have. Every variant, every object."""

from __future__ import annotations

import pytest

from deploy.kube import VARIANTS, Obj, objects, of_kind

WORKLOADS = ("Deployment", "DaemonSet", "LeaderWorkerSet")


def pod_templates(variant: str) -> list[tuple[Obj, Obj]]:
    """(workload, pod template) of every workload; a LeaderWorkerSet gives its leader and worker."""
    found = []
    for obj in objects(variant):
        if obj["kind"] in ("Deployment", "DaemonSet"):
            found.append((obj, obj["spec"]["template"]))
        elif obj["kind"] == "LeaderWorkerSet":
            group = obj["spec"]["leaderWorkerTemplate"]
            found += [(obj, group["leaderTemplate"]), (obj, group["workerTemplate"])]
    return found


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_service_selects_pods_that_serve_its_target_port(variant: str) -> None:
    for service in of_kind(variant, "Service"):
        chosen = [
            t
            for _, t in pod_templates(variant)
            if selects(service["spec"]["selector"], t["metadata"]["labels"])
        ]
        assert chosen, f"Service {service['metadata']['name']} selects no pod"
        for template in chosen:
            ports = {p.get("name") for c in template["spec"]["containers"] for p in c.get("ports", [])}
            ports |= {p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports, f"{service['metadata']['name']}: no container port {port}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_lws_service_selects_leaders_only(variant: str) -> None:
    for lws in of_kind(variant, "LeaderWorkerSet"):
        service = next(
            s for s in of_kind(variant, "Service") if s["metadata"]["name"] == lws["metadata"]["name"]
        )
        group = lws["spec"]["leaderWorkerTemplate"]
        assert selects(service["spec"]["selector"], group["leaderTemplate"]["metadata"]["labels"])
        assert not selects(service["spec"]["selector"], group["workerTemplate"]["metadata"]["labels"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_workload_selectors_match_their_templates(variant: str) -> None:
    for workload, template in pod_templates(variant):
        if workload["kind"] != "LeaderWorkerSet":
            assert selects(workload["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])
    for budget in of_kind(variant, "PodDisruptionBudget"):
        gateway = next(
            t for w, t in pod_templates(variant) if w["metadata"]["name"] == budget["metadata"]["name"]
        )
        assert selects(budget["spec"]["selector"]["matchLabels"], gateway["metadata"]["labels"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_is_pinned_sized_and_guaranteed(variant: str) -> None:
    for workload, template in pod_templates(variant):
        spec = template["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            image = container["image"]
            assert ":" in image and not image.endswith(":latest"), f"{where}: unpinned image {image}"
            resources = container["resources"]
            assert resources["requests"] == resources["limits"], f"{where}: requests differ from limits"
            assert {"cpu", "memory"} <= set(resources["requests"]), where


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_volume_and_config_reference_resolves(variant: str) -> None:
    config_maps = {c["metadata"]["name"] for c in of_kind(variant, "ConfigMap")}
    claims = {c["metadata"]["name"] for c in of_kind(variant, "PersistentVolumeClaim")}
    for workload, template in pod_templates(variant):
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for container in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{workload['metadata']['name']}: no volume {mount['name']}"
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_in_the_rendered_namespace(variant: str) -> None:
    (namespace,) = of_kind(variant, "Namespace")
    for obj in objects(variant):
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace["metadata"]["name"], obj["metadata"]["name"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_autoscalers_target_rendered_workloads(variant: str) -> None:
    workloads = {
        (o["apiVersion"], o["kind"], o["metadata"]["name"])
        for o in objects(variant)
        if o["kind"] in WORKLOADS
    }
    scalers = of_kind(variant, "ScaledObject") + of_kind(variant, "HorizontalPodAutoscaler")
    assert len(scalers) == len(
        [e for e in of_kind(variant, "Service") if "seekserve.dev/engine" in e["metadata"]["labels"]]
    )
    for scaler in scalers:
        ref = scaler["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"], ref["name"]) in workloads


@pytest.mark.parametrize("variant", VARIANTS)
def test_service_monitors_find_services_with_their_port(variant: str) -> None:
    services = of_kind(variant, "Service")
    for monitor in of_kind(variant, "ServiceMonitor"):
        chosen = [
            s
            for s in services
            if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert chosen, f"ServiceMonitor {monitor['metadata']['name']} selects no Service"
        for service in chosen:
            assert monitor["spec"]["jobLabel"] in service["metadata"]["labels"]
            names = {p["name"] for p in service["spec"]["ports"]}
            assert all(e["port"] in names for e in monitor["spec"]["endpoints"])


def test_the_engines_service_monitor_names_the_job_the_alerts_expect() -> None:
    # alert_rules.yml: up{job="seekserve"} == 0 for SeekserveTargetDown
    engines = [s for s in of_kind("r1-vllm", "Service") if "seekserve.dev/engine" in s["metadata"]["labels"]]
    assert {s["metadata"]["labels"]["seekserve.dev/job"] for s in engines} == {"seekserve"}


@pytest.mark.parametrize("variant", ["r1-vllm", "r1-vllm-multinode", "r1-sglang-multinode"])
def test_gpu_engines_request_their_gpus_on_gpu_nodes_with_shared_memory(variant: str) -> None:
    for workload, template in pod_templates(variant):
        if workload["metadata"]["labels"].get("seekserve.dev/engine") != "r1":
            continue
        spec = template["spec"]
        (engine,) = spec["containers"]
        assert engine["resources"]["limits"]["nvidia.com/gpu"] == 8
        assert spec["nodeSelector"]["nvidia.com/gpu.present"] == "true"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
        assert {"name": "dshm", "mountPath": "/dev/shm"} in engine["volumeMounts"]
        assert spec["initContainers"][0]["command"][:3] == ["seekserve", "pull", "deepseek-ai/DeepSeek-R1"]
