"""CPU checks: usable cores, the vector extensions the kernels use, NUMA nodes and memory policy."""

from __future__ import annotations

import re

from seekserve.host.checks import Finding, Host, Status, check, format_bytes
from seekserve.host.procfs import cpu_flags, key_values, meminfo_bytes, parse_cpulist

__all__ = ["CHECKS", "numa_nodes"]

MIN_CORES = 4
"""Below this, tokenization, the scheduler and HTTP share too few cores with the model's threads."""

_NODE_DIR = "/sys/devices/system/node"


@check(
    "cpu.cores",
    why="Tokenizing, scheduling and streaming run on the CPU beside the model; a container with too "
    "few cores stalls every stream at once.",
)
def cores(host: Host) -> Finding:
    cpuinfo = host.read("/proc/cpuinfo")
    blocks = [key_values(b) for b in cpuinfo.split("\n\n") if "processor" in b]
    logical = len(blocks)
    physical = len({(b.get("physical id"), b.get("core id")) for b in blocks if "core id" in b}) or logical
    status = key_values(host.read("/proc/self/status"))
    allowed = parse_cpulist(status.get("Cpus_allowed_list", "")) or list(range(logical))
    usable: float = len(allowed)
    parts = [f"{len(allowed)} usable (affinity {status.get('Cpus_allowed_list', 'all')})"]
    parts.append(f"{logical} logical, {physical} physical")
    quota = _cgroup_cpu_quota(host)
    if quota is not None:
        usable = min(usable, quota)
        parts.append(f"cgroup quota {quota:g} CPUs")
    value = ", ".join(parts)
    if usable < MIN_CORES:
        return Finding(
            Status.WARN,
            value,
            f"give the server at least {MIN_CORES} cores: docker run --cpus {MIN_CORES}, or Kubernetes "
            f"resources.limits.cpu: {MIN_CORES}",
        )
    return Finding(Status.OK, value)


def _cgroup_cpu_quota(host: Host) -> float | None:
    """The cgroup's CPU limit in CPUs (v2 cpu.max, else v1 cfs quota); None where unlimited."""
    v2 = host.read_or_none("/sys/fs/cgroup/cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100000)
    v1 = host.read_or_none("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    if v1 is None or int(v1) < 0:
        return None
    period_v1 = host.read_or_none("/sys/fs/cgroup/cpu/cpu.cfs_period_us") or "100000"
    return int(v1) / int(period_v1)


_X86_EXTENSIONS = (
    ("AVX-512", "avx512f", (("VNNI", "avx512_vnni"), ("BF16", "avx512_bf16"), ("VBMI", "avx512vbmi"))),
    ("AMX", "amx_tile", (("int8", "amx_int8"), ("bf16", "amx_bf16"))),
)


@check(
    "cpu.isa",
    why="On CPU serving, the kernels' AVX-512 set (VNNI integer dot products, VBMI int4 unpacking) "
    "decodes several times faster than the portable one, and torch's bf16 products use AMX.",
)
def isa(host: Host) -> Finding:
    flags = cpu_flags(host.read("/proc/cpuinfo"))
    if not flags:
        return Finding(Status.SKIP, "no CPU feature flags in /proc/cpuinfo")
    found = []
    for family, base, extras in _X86_EXTENSIONS:
        if base in flags:
            names = [name for name, flag in extras if flag in flags]
            found.append(f"{family} ({', '.join(names)})" if names else family)
    if "avx512f" not in flags:
        found.append(next((f for f in ("AVX2", "ASIMD") if f.lower() in flags), "no SIMD flag known here"))
        return Finding(
            Status.WARN,
            ", ".join(found) + "; no AVX-512: the CPU kernels run their portable set",
            "serve on GPUs, or on an x86 CPU with AVX-512 VNNI (Intel Ice Lake or later, AMD Zen 4 or later)",
        )
    return Finding(Status.OK, ", ".join(found))


def numa_nodes(host: Host) -> dict[int, list[int]]:
    """{node: its CPUs} from /sys/devices/system/node; empty where the kernel does not expose it."""
    folder = host.path(_NODE_DIR)
    if not folder.is_dir():
        return {}
    nodes = {}
    for entry in folder.iterdir():
        if match := re.fullmatch(r"node(\d+)", entry.name):
            cpulist = host.read_or_none(f"{_NODE_DIR}/{entry.name}/cpulist") or ""
            nodes[int(match[1])] = parse_cpulist(cpulist)
    return dict(sorted(nodes.items()))


@check(
    "cpu.numa",
    why="On a multi-socket host, memory on the other socket is slower to reach, so where the weights "
    "and the KV cache land decides how fast cores read them.",
)
def numa(host: Host) -> Finding:
    nodes = numa_nodes(host)
    if not nodes:
        return Finding(Status.SKIP, f"{_NODE_DIR} is absent: the kernel shows no NUMA nodes")
    parts = []
    for node, cpus in nodes.items():
        memory = meminfo_bytes(host.read_or_none(f"{_NODE_DIR}/node{node}/meminfo") or "").get("MemTotal")
        size = f", {format_bytes(memory)}" if memory else ""
        parts.append(f"node{node}: {len(cpus)} CPUs{size}")
    return Finding(Status.OK, f"{len(nodes)} node{'s' * (len(nodes) > 1)} ({'; '.join(parts)})")


@check(
    "cpu.numa_policy",
    why="With several NUMA nodes and the default policy, the weights fill the node of the thread that "
    "loaded them and every other socket reads them across the interconnect.",
)
def numa_policy(host: Host) -> Finding:
    maps = host.read_or_none("/proc/self/numa_maps")
    if maps is None:
        return Finding(Status.SKIP, "/proc/self/numa_maps is absent (a kernel without NUMA support)")
    policies = sorted({line.split()[1] for line in maps.splitlines() if len(line.split()) > 1})
    mems = key_values(host.read("/proc/self/status")).get("Mems_allowed_list", "?")
    value = f"{', '.join(policies) or 'default'} (memory nodes allowed: {mems})"
    num_nodes = len(numa_nodes(host))
    if num_nodes <= 1:
        return Finding(Status.OK, value + "; one node, nothing to place")
    if set(policies) <= {"default", "local"}:  # both allocate on the node of the touching thread
        return Finding(
            Status.WARN,
            value + f"; {num_nodes} nodes",
            "numactl --interleave=all seekserve serve ...  (or one server per socket: "
            "numactl --cpunodebind=0 --membind=0 seekserve serve ...)",
        )
    return Finding(Status.OK, value + f"; {num_nodes} nodes")


CHECKS = (cores, isa, numa, numa_policy)
