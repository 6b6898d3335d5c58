"""GPU kinds a plan can use, and clusters written as `8xH100`, `2x8xH100` or `16xH100`.

Memory is what the driver reports as the card's total (nvidia-smi's MiB), not the marketed GB: an
"80GB" H100 shows 81,559 MiB, 85.5 GB. A kind that is not listed can be given by its memory, as in
`8x96GB` or `8x141GiB`; the plan then assumes FP8 support and fast peer links (NVLink-class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from seekserve.errors import ConfigError

__all__ = ["GPU_KINDS", "MAX_GPUS_PER_NODE", "Cluster", "GpuKind", "gpu_kind", "parse_cluster"]

MAX_GPUS_PER_NODE = 8
"""GPUs one server holds (HGX/DGX and OAM boards): a larger count is split into nodes of 8."""
_MIB = 1 << 20


@dataclass(frozen=True)
class GpuKind:
    """One kind of accelerator."""

    name: str
    """Short name used on the command line (H100, H200, A100-80G, ...)."""
    product: str
    """The name the driver reports."""
    memory_bytes: int
    """Total device memory as the driver reports it."""
    fp8: bool
    """FP8 tensor cores (Hopper, Ada, CDNA3); without them vLLM runs FP8 weights weight-only (Marlin)."""
    fast_peer_links: bool
    """NVLink or Infinity Fabric between the cards of a node; False: PCIe only."""
    interconnect: str
    """The links between the cards of a node, with their bandwidth per GPU."""

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0:
            raise ConfigError(f"GPU {self.name}: memory_bytes must be positive, got {self.memory_bytes}")


GPU_KINDS: dict[str, GpuKind] = {
    k.name: k
    for k in (
        GpuKind("H100", "NVIDIA H100 80GB HBM3 (SXM)", 81559 * _MIB, True, True, "NVLink 4, 900 GB/s"),
        GpuKind("H100-PCIE", "NVIDIA H100 PCIe", 81559 * _MIB, True, False, "PCIe Gen5, 128 GB/s"),
        GpuKind("H200", "NVIDIA H200 (141 GB HBM3e)", 143771 * _MIB, True, True, "NVLink 4, 900 GB/s"),
        GpuKind("A100-80G", "NVIDIA A100-SXM4-80GB", 81920 * _MIB, False, True, "NVLink 3, 600 GB/s"),
        GpuKind("A100-40G", "NVIDIA A100-SXM4-40GB", 40960 * _MIB, False, True, "NVLink 3, 600 GB/s"),
        GpuKind("L40S", "NVIDIA L40S", 46068 * _MIB, True, False, "PCIe Gen4, 64 GB/s"),
        GpuKind("L4", "NVIDIA L4", 23034 * _MIB, True, False, "PCIe Gen4, 64 GB/s"),
        GpuKind("RTX4090", "NVIDIA GeForce RTX 4090", 24564 * _MIB, True, False, "PCIe Gen4, no P2P"),
        GpuKind("MI300X", "AMD Instinct MI300X", 192 * 1024 * _MIB, True, True, "Infinity Fabric, 896 GB/s"),
    )
}
"""Known kinds by name."""

_ALIASES = {
    "H100-SXM": "H100",
    "H100-80G": "H100",
    "H100-SXM5": "H100",
    "A100": "A100-80G",
    "A100-SXM": "A100-80G",
    "4090": "RTX4090",
    "RTX-4090": "RTX4090",
}
_CUSTOM = re.compile(r"^(\d+(?:\.\d+)?)(GB|GIB)$")


def gpu_kind(name: str) -> GpuKind:
    """The kind named `name` (case-insensitive, aliases accepted), or a custom kind such as `96GB`."""
    key = name.strip().upper()
    key = _ALIASES.get(key, key)
    if key in GPU_KINDS:
        return GPU_KINDS[key]
    custom = _CUSTOM.match(key)
    if custom:
        unit = 1 << 30 if custom.group(2) == "GIB" else 10**9
        memory = int(float(custom.group(1)) * unit)
        return GpuKind(name.strip(), f"a {name.strip()} GPU", memory, True, True, "assumed NVLink-class")
    raise ConfigError(
        f"unknown GPU kind {name!r}: use one of {', '.join(GPU_KINDS)} or a memory size such as 96GB"
    )


@dataclass(frozen=True)
class Cluster:
    """`num_nodes` servers of `gpus_per_node` GPUs of one kind."""

    kind: GpuKind
    num_nodes: int
    gpus_per_node: int

    def __post_init__(self) -> None:
        if not 1 <= self.gpus_per_node <= MAX_GPUS_PER_NODE:
            raise ConfigError(
                f"{self.gpus_per_node} GPUs per node: a node holds 1 to {MAX_GPUS_PER_NODE} GPUs"
            )
        if self.num_nodes < 1:
            raise ConfigError(f"{self.num_nodes} nodes: a cluster has at least one node")

    @property
    def num_gpus(self) -> int:
        return self.num_nodes * self.gpus_per_node

    @property
    def name(self) -> str:
        if self.num_nodes == 1:
            return f"{self.gpus_per_node}x{self.kind.name}"
        return f"{self.num_nodes}x{self.gpus_per_node}x{self.kind.name}"


_CLUSTER = re.compile(r"^(?:(\d+)\s*[x×*]\s*)?(?:(\d+)\s*[x×*]\s*)?([A-Za-z0-9.\-]+)$")


def parse_cluster(text: str) -> Cluster:
    """`H100` (one), `8xH100` (one node), `2x8xH100` (two nodes of 8), `16xH100` (nodes of 8)."""
    match = _CLUSTER.match(text.strip())
    if not match:
        raise ConfigError(
            f"cannot read GPUs {text!r}: write COUNTxKIND or NODESxPER_NODExKIND, e.g. 8xH100 or 2x8xH100"
        )
    first, second, name = match.groups()
    kind = gpu_kind(name)
    if second is not None:
        return Cluster(kind, int(first), int(second))
    count = int(first or 1)
    if count < 1:
        raise ConfigError(f"GPUs {text!r}: the count must be at least 1")
    if count <= MAX_GPUS_PER_NODE:
        return Cluster(kind, 1, count)
    if count % MAX_GPUS_PER_NODE:
        raise ConfigError(
            f"GPUs {text!r}: {count} GPUs do not make whole nodes of {MAX_GPUS_PER_NODE}; "
            f"write NODESxPER_NODExKIND, e.g. 3x4x{kind.name}"
        )
    return Cluster(kind, count // MAX_GPUS_PER_NODE, MAX_GPUS_PER_NODE)
