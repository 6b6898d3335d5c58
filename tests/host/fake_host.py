"""Fake /proc and /sys trees for the host checks: a tuned two-socket host, changed file by file."""

from __future__ import annotations

from pathlib import Path

from seekserve.host import Host
from seekserve.host.checks import TorchInfo
from seekserve.layers.cpu_kernels import KernelSet, KernelStatus

__all__ = ["TUNED", "cpuinfo", "make_host", "make_tree"]

GIB_KB = 1 << 20


def cpuinfo(
    sockets: int = 2, cores: int = 2, threads: int = 2, flags: str = "fpu avx2 avx512f avx512_vnni"
) -> str:
    """/proc/cpuinfo of `sockets` × `cores` × `threads` logical CPUs, all with `flags`."""
    blocks = []
    for socket in range(sockets):
        for core in range(cores):
            for _ in range(threads):
                blocks.append(
                    f"processor\t: {len(blocks)}\nvendor_id\t: GenuineIntel\nphysical id\t: {socket}\n"
                    f"core id\t\t: {core}\nflags\t\t: {flags}\n"
                )
    return "\n".join(blocks) + "\n"


def meminfo(total_kb: int = 128 * GIB_KB, available_kb: int = 120 * GIB_KB, swap_kb: int = 0) -> str:
    return (
        f"MemTotal:       {total_kb} kB\nMemFree:        {available_kb} kB\n"
        f"MemAvailable:   {available_kb} kB\nSwapTotal:      {swap_kb} kB\nSwapFree:       {swap_kb} kB\n"
    )


_NODE = "sys/devices/system/node"
_THP = "sys/kernel/mm/transparent_hugepage"

TUNED: dict[str, str] = {
    "proc/cpuinfo": cpuinfo(),
    "proc/meminfo": meminfo(),
    "proc/self/status": "Name:\tseekserve\nCpus_allowed_list:\t0-7\nMems_allowed_list:\t0-1\n",
    "proc/self/numa_maps": "55d0c0000000 interleave:0-1 heap anon=100 dirty=100\n"
    "7f0000000000 interleave:0-1 anon=20 dirty=20\n",
    "proc/self/limits": "Limit                     Soft Limit           Hard Limit           Units\n"
    "Max open files            1048576              1048576              files\n",
    "proc/sys/vm/swappiness": "1\n",
    "proc/sys/net/ipv4/tcp_congestion_control": "bbr\n",
    "proc/sys/net/ipv4/tcp_available_congestion_control": "reno cubic bbr\n",
    "proc/sys/net/core/rmem_max": "16777216\n",
    "proc/sys/net/core/wmem_max": "16777216\n",
    "proc/sys/net/ipv4/tcp_rmem": "4096\t131072\t16777216\n",
    "proc/sys/net/ipv4/tcp_wmem": "4096\t16384\t16777216\n",
    "proc/sys/net/core/somaxconn": "4096\n",
    f"{_THP}/enabled": "always [madvise] never\n",
    f"{_THP}/defrag": "always defer defer+madvise [madvise] never\n",
    f"{_NODE}/node0/cpulist": "0-3\n",
    f"{_NODE}/node0/meminfo": f"Node 0 MemTotal:       {64 * GIB_KB} kB\nNode 0 MemFree: 1 kB\n",
    f"{_NODE}/node1/cpulist": "4-7\n",
    f"{_NODE}/node1/meminfo": f"Node 1 MemTotal:       {64 * GIB_KB} kB\n",
    f"{_NODE}/online": "0-1\n",
    "sys/devices/system/edac/mc/mc0/ce_count": "0\n",
    "sys/devices/system/edac/mc/mc0/ue_count": "0\n",
    "sys/devices/system/edac/mc/mc1/ce_count": "0\n",
    "sys/devices/system/edac/mc/mc1/ue_count": "0\n",
    "sys/fs/cgroup/cpu.max": "max 100000\n",
    "sys/fs/cgroup/memory.max": "max\n",
}


def make_tree(root: Path, changes: dict[str, str | None] | None = None) -> Path:
    """The TUNED tree under root, with changes ({'proc/sys/vm/swappiness': '60'}); None removes a file."""
    files = {**TUNED, **(changes or {})}
    for path, text in files.items():
        if text is not None:
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return root


def make_host(root: Path, **fields: object) -> Host:
    """A Host over the tree at root, with no GPU, a CUDA torch and the AVX-512 kernels unless given."""
    defaults: dict[str, object] = {
        "torch": TorchInfo("2.7.0+cu128", "12.8", True),
        "kernel_status": lambda: KernelStatus(KernelSet.AVX512, "VNNI, VBMI int4"),
        "home": root,
    }
    return Host(root=root, **{**defaults, **fields})  # type: ignore[arg-type]
