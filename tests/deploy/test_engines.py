"""Engine pods: the command lines each runtime gets (seekserve's parsed by its own CLI; vLLM's and
SGLang's flags from the pinned versions), the layouts of the R1 variants, probes sized from the
load time, and the pull of the weights before the engine starts."""

from __future__ import annotations

import pytest

from deploy.kube import of_kind
from deploy.runtimes import SGLANG_FLAGS, VLLM_FLAGS
from seekserve.cli.mirror import mirror
from seekserve.cli.pull import pull
from seekserve.cli.serve import serve

MODEL = "/var/lib/seekserve/models/deepseek-ai/DeepSeek-R1"


def engine_pod(variant: str, name: str, leader: bool = True) -> dict:  # type: ignore[type-arg]
    for obj in of_kind(variant, "Deployment") + of_kind(variant, "LeaderWorkerSet"):
        if obj["metadata"]["name"] == f"seekserve-engine-{name}":
            if obj["kind"] == "Deployment":
                return obj["spec"]["template"]["spec"]
            group = obj["spec"]["leaderWorkerTemplate"]
            return group["leaderTemplate" if leader else "workerTemplate"]["spec"]
    raise AssertionError(f"no engine {name} in {variant}")


def flags(argv: list[str]) -> set[str]:
    return {a for a in argv if a.startswith("--")}


def test_the_seekserve_engine_command_is_one_seekserve_serve_accepts() -> None:
    (container,) = engine_pod("small-cpu", "distill")["containers"]
    argv = container["command"]
    assert argv[:2] == ["seekserve", "serve"]
    context = serve.make_context("serve", argv[2:])  # click parses and checks every flag and choice
    assert context.params["model"] == "/var/lib/seekserve/models/deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert (context.params["host"], context.params["port"]) == ("0.0.0.0", 8000)
    assert (context.params["quantization"], context.params["max_model_len"]) == ("int8", 8192)
    assert context.params["served_model_name"] == "deepseek-r1-distill-qwen-1.5b"


def test_single_node_r1_is_vllm_tensor_parallel_8_on_h200() -> None:
    pod = engine_pod("r1-vllm", "r1")
    (container,) = pod["containers"]
    argv = container["command"]
    assert argv[:3] == ["vllm", "serve", MODEL]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
    assert "--pipeline-parallel-size" not in argv
    assert flags(argv) <= VLLM_FLAGS
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H200"


def test_multi_node_vllm_is_tp8_pp2_over_ray_as_the_lws_example() -> None:
    leader = engine_pod("r1-vllm-multinode", "r1")["containers"][0]["command"]
    worker = engine_pod("r1-vllm-multinode", "r1", leader=False)["containers"][0]["command"]
    script = "bash /vllm-workspace/examples/online_serving/multi-node-serving.sh"
    assert leader[:2] == worker[:2] == ["sh", "-c"]
    assert leader[2].startswith(
        f"{script} leader --ray_cluster_size=$(LWS_GROUP_SIZE) && exec vllm serve {MODEL} "
    )
    served = leader[2].split(" && exec ")[1].split()
    assert served[served.index("--tensor-parallel-size") + 1] == "8"
    assert served[served.index("--pipeline-parallel-size") + 1] == "2"
    assert flags(served) <= VLLM_FLAGS
    assert worker[2] == f"{script} worker --ray_address=$(LWS_LEADER_ADDRESS)"
    (lws,) = of_kind("r1-vllm-multinode", "LeaderWorkerSet")
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2


def test_multi_node_sglang_is_dp_attention_and_expert_parallel_over_16_gpus() -> None:
    leader = engine_pod("r1-sglang-multinode", "r1")["containers"][0]
    worker = engine_pod("r1-sglang-multinode", "r1", leader=False)["containers"][0]
    argv = leader["command"]
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    assert (pairs["--tp-size"], pairs["--dp-size"], pairs["--ep-size"]) == ("16", "16", "16")
    assert "--enable-dp-attention" in argv and "--enable-metrics" in argv
    assert (pairs["--nnodes"], pairs["--node-rank"]) == ("$(LWS_GROUP_SIZE)", "$(LWS_WORKER_INDEX)")
    assert pairs["--dist-init-addr"] == "$(LWS_LEADER_ADDRESS):20000"
    assert flags(argv) <= SGLANG_FLAGS
    # rank 1 runs the same model split without an HTTP server, probes or ports
    assert "--port" not in worker["command"] and "ports" not in worker and "readinessProbe" not in worker
    index = {"fieldRef": {"fieldPath": "metadata.labels['leaderworkerset.sigs.k8s.io/worker-index']"}}
    assert {"name": "LWS_WORKER_INDEX", "valueFrom": index} in worker["env"]


@pytest.mark.parametrize(
    ("variant", "name", "load_time_s"), [("small-cpu", "distill", 120), ("r1-vllm", "r1", 1200)]
)
def test_the_startup_probe_allows_twice_the_load_time(variant: str, name: str, load_time_s: int) -> None:
    (container,) = engine_pod(variant, name)["containers"]
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] == 2 * load_time_s
    assert (
        container["readinessProbe"]["periodSeconds"] * container["readinessProbe"]["failureThreshold"] == 15
    )
    assert container["livenessProbe"]["periodSeconds"] * container["livenessProbe"]["failureThreshold"] == 60


def test_weights_are_pulled_from_the_mirror_into_the_shared_cache_first() -> None:
    pod = engine_pod("r1-vllm", "r1")
    (pull,) = pod["initContainers"]
    assert pull["command"] == ["seekserve", "pull", "deepseek-ai/DeepSeek-R1", "--mirror",
                               "http://seekserve-mirror.seekserve.svc:8090"]  # fmt: skip
    assert {"name": "SEEKSERVE_HOME", "value": "/var/lib/seekserve"} in pull["env"]
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert cache["hostPath"] == {"path": "/var/lib/seekserve", "type": "DirectoryOrCreate"}
    assert {"name": "model-cache", "mountPath": "/var/lib/seekserve"} in pod["containers"][0]["volumeMounts"]


def test_the_pull_init_container_and_the_mirror_are_commands_seekserve_accepts() -> None:
    (init,) = engine_pod("small-cpu", "distill")["initContainers"]
    assert init["command"][:2] == ["seekserve", "pull"]
    context = pull.make_context("pull", init["command"][2:])
    assert context.params["model"] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert context.params["mirror"].startswith("http://seekserve-mirror.")
    assert context.params["dest"] is None  # $SEEKSERVE_HOME/models/MODEL, where the engine looks
    (container,) = [
        c
        for d in of_kind("small-cpu", "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        if c["command"][:3] == ["seekserve", "mirror", "serve"]
    ]
    known = {opt for param in mirror.commands["serve"].params for opt in param.opts}
    assert flags(container["command"]) <= known  # its folder is a volume: it exists only in the pod
