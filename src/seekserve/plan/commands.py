"""The vLLM and SGLang command lines that start a layout that fits.

One engine inside a node is one command. One engine over several nodes: vLLM through a Ray cluster,
SGLang with one command per node (`--nnodes`, `--node-rank`). Replicas: one server per node holding
that node's replicas (`--data-parallel-size` / `--dp`), with `seekserve gateway` in front of the
nodes. DP attention with expert parallelism: vLLM's data-parallel deployment (a head node and
`--headless` ones), SGLang's `--enable-dp-attention`. NODE0_IP stands for the first node's address.
"""

from __future__ import annotations

from dataclasses import dataclass

from seekserve.plan.catalog import PlannedModel
from seekserve.plan.layouts import LayoutPlan
from seekserve.plan.memory import PlanConfig

__all__ = ["Commands", "commands"]


@dataclass(frozen=True)
class _EngineFlags:
    """One engine's names for the settings both engines take."""

    prefix: str
    """Flags every command of this engine carries."""
    max_model_len: str
    memory: str
    max_seqs: str
    kv_fp8: str
    mtp: str


_VLLM = _EngineFlags(
    "",
    "--max-model-len",
    "--gpu-memory-utilization",
    "--max-num-seqs",
    "--kv-cache-dtype fp8",
    """--speculative-config '{"method": "deepseek_mtp", "num_speculative_tokens": 1}'""",
)
_SGLANG = _EngineFlags(
    "--trust-remote-code",
    "--context-length",
    "--mem-fraction-static",
    "--max-running-requests",
    "--kv-cache-dtype fp8_e4m3",
    "--speculative-algorithm EAGLE --speculative-num-steps 1 --speculative-eagle-topk 1 "
    "--speculative-num-draft-tokens 2",
)


@dataclass(frozen=True)
class Commands:
    """Shell lines for each engine; comments (#) say where each runs."""

    vllm: tuple[str, ...]
    sglang: tuple[str, ...]


def _checkpoint_note(model: PlannedModel, config: PlanConfig) -> list[str]:
    dtype, native = config.weight_dtype(model), model.native_dtype
    if dtype == native or (dtype == "fp8" and native == "bf16"):
        return []  # the checkpoint as released, or quantized to FP8 while loading (--quantization fp8)
    if dtype == "bf16":
        return [f"# {model.name} is released in FP8: give the path of its BF16 conversion instead"]
    kind = "a W8A8 (int8)" if dtype == "int8" else "an AWQ or GPTQ (int4)"
    return [f"# give the path of {kind} checkpoint of {model.name} instead"]


def _flags(engine: _EngineFlags, plan: LayoutPlan, model: PlannedModel, config: PlanConfig, seqs: int) -> str:
    """The settings of `plan` in `engine`'s flags, `seqs` sequences per engine process."""
    flags = [
        engine.prefix,
        f"{engine.max_model_len} {plan.max_model_len}",
        f"{engine.memory} {config.gpu_memory_utilization:g}",
        f"{engine.max_seqs} {seqs}",
    ]
    if config.kv_cache_dtype == "fp8":
        flags.append(engine.kv_fp8)
    if config.weight_dtype(model) == "fp8" and model.native_dtype == "bf16":
        flags.append("--quantization fp8")  # both quantize a BF16 checkpoint while loading
    if config.include_mtp:
        flags.append(engine.mtp)
    return " ".join(f for f in flags if f)


def _vllm(plan: LayoutPlan, model: PlannedModel, config: PlanConfig) -> list[str]:
    layout, cluster = plan.layout, plan.cluster
    nodes, per_node = cluster.num_nodes, cluster.gpus_per_node
    flags = _flags(_VLLM, plan, model, config, -(-config.concurrency // layout.dp))  # per DP rank
    serve = f"vllm serve {model.name}"
    if layout.expert_parallel:
        ep = f"{serve} --data-parallel-size {layout.dp} --enable-expert-parallel"
        if nodes == 1:
            return [f"{ep} {flags}"]
        head = (
            f"--data-parallel-size-local {per_node} --data-parallel-address NODE0_IP "
            "--data-parallel-rpc-port 13345"
        )
        lines = ["# node 0:", f"{ep} {head} {flags}"]
        for node in range(1, nodes):
            start = f"--data-parallel-start-rank {node * per_node}"
            lines += [f"# node {node}:", f"{ep} {head} --headless {start} {flags}"]
        return lines
    engine = f"--tensor-parallel-size {layout.tp}"
    if layout.pp > 1:
        engine += f" --pipeline-parallel-size {layout.pp}"
    if layout.dp == 1 and layout.tp * layout.pp > per_node:
        return [
            "# node 0: ray start --head --port 6379; every other node: ray start --address NODE0_IP:6379",
            "# then on node 0:",
            f"{serve} {engine} --distributed-executor-backend ray {flags}",
        ]
    replicas = layout.dp // nodes
    dp = f"--data-parallel-size {replicas} " if replicas > 1 else ""
    where = [f"# on each of the {nodes} nodes, with seekserve gateway in front of them:"] if nodes > 1 else []
    return [*where, f"{serve} {dp}{engine} {flags}"]


def _sglang(plan: LayoutPlan, model: PlannedModel, config: PlanConfig) -> list[str]:
    layout, nodes = plan.layout, plan.cluster.num_nodes
    launch = f"python3 -m sglang.launch_server --model-path {model.name}"
    multi = f"--nnodes {nodes} --node-rank R --dist-init-addr NODE0_IP:5000"
    if layout.expert_parallel:
        gpus = layout.num_gpus
        engine = f"--tp {gpus} --dp {layout.dp} --enable-dp-attention --ep-size {gpus}"
        servers = 1
    elif layout.dp == 1:
        engine = f"--tp {layout.tp}" + (f" --pp-size {layout.pp}" if layout.pp > 1 else "")
        servers = 1
    else:
        replicas = layout.dp // nodes
        engine = f"--tp {layout.tp}" + (f" --dp {replicas}" if replicas > 1 else "")
        servers = nodes
    flags = _flags(_SGLANG, plan, model, config, -(-config.concurrency // servers))
    if nodes == 1:
        return [f"{launch} {engine} {flags}"]
    if servers > 1:
        return [
            f"# on each of the {nodes} nodes, with seekserve gateway in front of them:",
            f"{launch} {engine} {flags}",
        ]
    return [f"# on node R = 0 .. {nodes - 1}:", f"{launch} {engine} {multi} {flags}"]


def commands(plan: LayoutPlan, model: PlannedModel, config: PlanConfig) -> Commands:
    """The command lines that start `plan`'s layout (its cluster and per-GPU settings)."""
    note = _checkpoint_note(model, config)
    return Commands(tuple(note + _vllm(plan, model, config)), tuple(note + _sglang(plan, model, config)))
