"""Memory checks: total and available memory, ECC, transparent huge pages, swap."""

from __future__ import annotations

import re

from seekserve.host.checks import Finding, Host, Status, Write, check, format_bytes, sysctl_command
from seekserve.host.procfs import bracketed, meminfo_bytes
from seekserve.host.storage import model_bytes

__all__ = ["CHECKS"]

_EDAC = "/sys/devices/system/edac/mc"
_THP = "/sys/kernel/mm/transparent_hugepage"
MAX_SWAPPINESS = 10
"""Above this, the kernel swaps out idle server memory to keep page cache, and the next request waits."""
FIX_SWAPPINESS = 1


@check(
    "memory.total",
    why="Host memory holds the weights while they load and keeps them in the page cache for a fast "
    "restart; a CPU engine also keeps them and the KV cache there.",
)
def total(host: Host) -> Finding:
    info = meminfo_bytes(host.read("/proc/meminfo"))
    value = f"{format_bytes(info['MemTotal'])} total, {format_bytes(info.get('MemAvailable', 0))} available"
    limit = _cgroup_limit(host, info["MemTotal"])
    if limit is not None:
        value += f", cgroup limit {format_bytes(limit)}"
    usable = min(info["MemTotal"], limit or info["MemTotal"])
    weights = model_bytes(host.model_path) if host.model_path else 0
    if weights:
        value += f"; model {format_bytes(weights)}"
    if weights > usable:
        return Finding(
            Status.WARN,
            value,
            f"give the host or container more than {format_bytes(weights)} of memory "
            f"(docker run --memory, Kubernetes resources.limits.memory), or serve on GPUs",
        )
    return Finding(Status.OK, value)


def _cgroup_limit(host: Host, mem_total: int) -> int | None:
    """The cgroup's memory limit in bytes (v2 memory.max, else v1); None where there is none."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        text = host.read_or_none(path)
        if text is not None and text != "max" and int(text) < mem_total:
            return int(text)
    return None


@check(
    "memory.ecc",
    why="A flipped bit in RAM silently corrupts weights or a reply; ECC corrects single-bit errors and "
    "its error counts warn of a failing DIMM before it crashes the server.",
)
def ecc(host: Host) -> Finding:
    folder = host.path(_EDAC)
    controllers = (
        sorted(p.name for p in folder.iterdir() if re.fullmatch(r"mc\d+", p.name)) if folder.is_dir() else []
    )
    if not controllers:
        return Finding(
            Status.SKIP,
            "not visible: no EDAC memory controller (a VM, a container, or no EDAC driver loaded)",
        )
    corrected = sum(int(host.read_or_none(f"{_EDAC}/{mc}/ce_count") or 0) for mc in controllers)
    uncorrected = sum(int(host.read_or_none(f"{_EDAC}/{mc}/ue_count") or 0) for mc in controllers)
    value = (
        f"ECC on: {len(controllers)} memory controller{'s' * (len(controllers) > 1)}, "
        f"{corrected} corrected, {uncorrected} uncorrected errors"
    )
    if uncorrected:
        return Finding(
            Status.FAIL,
            value,
            f"replace the failing DIMM: grep . {_EDAC}/mc*/dimm*/dimm_ue_count names it",
        )
    if corrected:
        return Finding(
            Status.WARN,
            value,
            f"watch the DIMM that corrects errors (grep . {_EDAC}/mc*/dimm*/dimm_ce_count) and plan "
            f"its replacement",
        )
    return Finding(Status.OK, value)


@check(
    "memory.thp",
    why="With transparent huge pages 'always', khugepaged and direct compaction stall the server for "
    "milliseconds at a time; 'madvise' gives huge pages only to code that asks for them.",
)
def thp(host: Host) -> Finding:
    enabled_text = host.read_or_none(f"{_THP}/enabled")
    if enabled_text is None:
        return Finding(Status.SKIP, f"{_THP} is absent: a kernel without transparent huge pages")
    modes = {"enabled": bracketed(enabled_text)}
    defrag_text = host.read_or_none(f"{_THP}/defrag")
    if defrag_text is not None:
        modes["defrag"] = bracketed(defrag_text)
    value = ", ".join(f"{name} {mode}" for name, mode in modes.items())
    bad = [name for name, mode in modes.items() if mode == "always"]
    if not bad:
        return Finding(Status.OK, value)
    files = " ".join(f"{_THP}/{name}" for name in bad)
    return Finding(
        Status.WARN,
        value,
        f"echo madvise | sudo tee {files}  (after a reboot too: transparent_hugepage=madvise on the "
        f"kernel command line)",
        tuple(Write(f"{_THP}/{name}", "madvise") for name in bad),
    )


@check(
    "memory.swap",
    why="A server whose memory is swapped out waits on the disk in the middle of a request; keep the "
    "model in RAM and let the kernel swap only under real pressure.",
)
def swap(host: Host) -> Finding:
    info = meminfo_bytes(host.read("/proc/meminfo"))
    swap_total, swap_free = info.get("SwapTotal", 0), info.get("SwapFree", 0)
    if swap_total == 0:
        return Finding(Status.OK, "no swap")
    swappiness = int(host.read("/proc/sys/vm/swappiness"))
    value = (
        f"{format_bytes(swap_total)} swap, {format_bytes(swap_total - swap_free)} used, "
        f"swappiness {swappiness}"
    )
    if swappiness <= MAX_SWAPPINESS:
        return Finding(Status.OK, value)
    writes = (Write("/proc/sys/vm/swappiness", str(FIX_SWAPPINESS), "vm.swappiness"),)
    return Finding(Status.WARN, value, sysctl_command(writes), writes)


CHECKS = (total, ecc, thp, swap)
