"""Parsers for the text formats of /proc and /sys that the host checks read."""

from __future__ import annotations

__all__ = ["bracketed", "cpu_flags", "key_values", "meminfo_bytes", "parse_cpulist"]


def parse_cpulist(text: str) -> list[int]:
    """'0-3,8,10-11' (a cpulist, as in Cpus_allowed_list or node0/cpulist) -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def key_values(text: str, separator: str = ":") -> dict[str, str]:
    """'Key:   value' lines (/proc/self/status, /proc/cpuinfo's first block) -> {key: value}."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(separator)
        if sep:
            found.setdefault(key.strip(), value.strip())
    return found


def meminfo_bytes(text: str) -> dict[str, int]:
    """/proc/meminfo (or a NUMA node's meminfo, 'Node 0 MemTotal: ... kB') -> {field: bytes}."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        parts = value.split()
        if not parts or not parts[0].isdigit():
            continue
        scale = 1024 if parts[1:] == ["kB"] else 1
        found[key.split()[-1]] = int(parts[0]) * scale
    return found


def bracketed(text: str) -> str:
    """The selected choice of a sysfs mode file: 'always [madvise] never' -> 'madvise'."""
    start, end = text.find("["), text.find("]")
    if start < 0 or end < start:
        raise ValueError(f"no [selected] choice in {text.strip()!r}")
    return text[start + 1 : end]


def cpu_flags(cpuinfo: str) -> set[str]:
    """The CPU's feature flags: x86's `flags` line, or arm64's `Features`, of the first CPU."""
    fields = key_values(cpuinfo)
    return set((fields.get("flags") or fields.get("Features") or "").split())
