"""Network checks: TCP congestion control, socket buffer limits, the listen backlog, open-file limits."""

from __future__ import annotations

import resource

from seekserve.host.checks import Check, Finding, Host, Status, Write, check, format_bytes, sysctl_command

__all__ = ["CHECKS"]

MIN_BUFFER_BYTES = 16 << 20
"""Socket buffers that keep a 10 Gbit/s link full at 13 ms round trip (a pull from a mirror, streams
to far clients); Linux's defaults (208 KiB for rmem_max) cap a stream far below that."""
MIN_SOMAXCONN = 4096
"""uvicorn listens with a backlog of 2048; the kernel silently caps it at somaxconn."""
MIN_NOFILE = 65536
"""Each client stream and each upstream connection is a file descriptor, and so is every open weight file."""


@check(
    "net.congestion",
    why="BBR keeps throughput up and queues short on lossy or long links, where loss-based cubic "
    "backs off at every drop: faster weight pulls and steadier token streams.",
)
def congestion(host: Host) -> Finding:
    current = host.read("/proc/sys/net/ipv4/tcp_congestion_control").strip()
    available = host.read_or_none("/proc/sys/net/ipv4/tcp_available_congestion_control") or ""
    value = f"{current} (available: {available or 'unknown'})"
    if current == "bbr":
        return Finding(Status.OK, value)
    writes = (Write("/proc/sys/net/ipv4/tcp_congestion_control", "bbr", "net.ipv4.tcp_congestion_control"),)
    command = sysctl_command(writes)
    if "bbr" not in available.split():
        command = f"sudo modprobe tcp_bbr && {command}"
    return Finding(Status.WARN, value, command, writes)


def _buffer_check(direction: str, why: str) -> Check:
    """net.core.{r,w}mem_max (what a socket may ask for) and the top of net.ipv4.tcp_{r,w}mem (what
    TCP's autotuning grows to): both at least MIN_BUFFER_BYTES."""
    core_key, tcp_key = f"net.core.{direction}mem_max", f"net.ipv4.tcp_{direction}mem"

    def measure(host: Host) -> Finding:
        core_path, tcp_path = _sysctl_path(core_key), _sysctl_path(tcp_key)
        core = int(host.read(core_path))
        tcp = host.read(tcp_path).split()
        if len(tcp) != 3:
            raise ValueError(f"{tcp_path} holds {' '.join(tcp)!r}, not three numbers")
        value = f"{core_key} {format_bytes(core)}, {tcp_key} max {format_bytes(int(tcp[2]))}"
        writes = []
        if core < MIN_BUFFER_BYTES:
            writes.append(Write(core_path, str(MIN_BUFFER_BYTES), core_key))
        if int(tcp[2]) < MIN_BUFFER_BYTES:
            writes.append(Write(tcp_path, f"{tcp[0]} {tcp[1]} {MIN_BUFFER_BYTES}", tcp_key))
        if not writes:
            return Finding(Status.OK, value)
        return Finding(Status.WARN, value, sysctl_command(tuple(writes)), tuple(writes))

    return Check(f"net.{direction}mem_max", why, measure)


rmem_max = _buffer_check(
    "r",
    why="Small receive buffers cap each TCP stream at buffer/round-trip: a weight pull from a mirror "
    "or a peer node crawls however fast the link is.",
)
wmem_max = _buffer_check(
    "w",
    why="Small send buffers cap what a mirror or a server can push per stream to a far client.",
)


@check(
    "net.somaxconn",
    why="The listen backlog holds connections the server has not accepted yet; when a burst overflows "
    "it, clients see resets or a 1 s SYN retry.",
)
def somaxconn(host: Host) -> Finding:
    value = int(host.read("/proc/sys/net/core/somaxconn"))
    if value >= MIN_SOMAXCONN:
        return Finding(Status.OK, str(value))
    writes = (Write("/proc/sys/net/core/somaxconn", str(MIN_SOMAXCONN), "net.core.somaxconn"),)
    return Finding(Status.WARN, str(value), sysctl_command(writes), writes)


@check(
    "limits.nofile",
    why="Every client stream, upstream connection and open weight file takes a file descriptor; at "
    "the limit new connections fail with 'Too many open files'.",
)
def nofile(host: Host) -> Finding:
    soft, hard = _nofile_limits(host)
    value = f"soft {soft}, hard {hard}"
    if soft >= MIN_NOFILE:
        return Finding(Status.OK, value)
    return Finding(
        Status.WARN,
        value,
        f"ulimit -n {MIN_NOFILE} before starting the server (systemd: LimitNOFILE={MIN_NOFILE}; "
        f"docker run --ulimit nofile={MIN_NOFILE}:{MIN_NOFILE})",
    )


def _nofile_limits(host: Host) -> tuple[int, int]:
    """(soft, hard) from /proc/self/limits, else (where it is absent) from getrlimit."""
    limits = host.read_or_none("/proc/self/limits")
    for line in (limits or "").splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.removeprefix("Max open files").split()[:2]
            return _limit(soft), _limit(hard)
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _limit(text: str) -> int:
    return resource.RLIM_INFINITY if text == "unlimited" else int(text)


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


CHECKS = (congestion, rmem_max, wmem_max, somaxconn, nofile)
