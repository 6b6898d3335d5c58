from __future__ import annotations

import resource
from pathlib import Path

from host.fake_host import make_host, make_tree
from seekserve.host import Status
from seekserve.host.checks import Write
from seekserve.host.network import congestion, nofile, rmem_max, somaxconn, wmem_max


def test_tuned_network_is_ok(tmp_path: Path) -> None:
    host = make_host(make_tree(tmp_path))
    assert [(c.run(host).status, c.run(host).value) for c in (congestion, rmem_max, wmem_max, somaxconn)] == [
        (Status.OK, "bbr (available: reno cubic bbr)"),
        (Status.OK, "net.core.rmem_max 16.0 MiB, net.ipv4.tcp_rmem max 16.0 MiB"),
        (Status.OK, "net.core.wmem_max 16.0 MiB, net.ipv4.tcp_wmem max 16.0 MiB"),
        (Status.OK, "4096"),
    ]


def test_cubic_warns_and_switches_to_bbr(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"proc/sys/net/ipv4/tcp_congestion_control": "cubic\n"})
    result = congestion.run(make_host(tree))
    assert (result.status, result.fix) == (Status.WARN, "sudo sysctl -w net.ipv4.tcp_congestion_control=bbr")
    assert result.writes == (
        Write("/proc/sys/net/ipv4/tcp_congestion_control", "bbr", "net.ipv4.tcp_congestion_control"),
    )


def test_bbr_not_loaded_adds_modprobe(tmp_path: Path) -> None:
    tree = make_tree(
        tmp_path,
        {
            "proc/sys/net/ipv4/tcp_congestion_control": "cubic\n",
            "proc/sys/net/ipv4/tcp_available_congestion_control": "reno cubic\n",
        },
    )
    result = congestion.run(make_host(tree))
    assert result.value == "cubic (available: reno cubic)"
    assert result.fix == "sudo modprobe tcp_bbr && sudo sysctl -w net.ipv4.tcp_congestion_control=bbr"


def test_small_buffers_warn_and_raise_both_limits(tmp_path: Path) -> None:
    tree = make_tree(
        tmp_path,
        {"proc/sys/net/core/rmem_max": "212992\n", "proc/sys/net/ipv4/tcp_rmem": "4096\t131072\t6291456\n"},
    )
    result = rmem_max.run(make_host(tree))
    assert (result.status, result.value) == (
        Status.WARN,
        "net.core.rmem_max 208.0 KiB, net.ipv4.tcp_rmem max 6.0 MiB",
    )
    assert result.fix == "sudo sysctl -w net.core.rmem_max=16777216 'net.ipv4.tcp_rmem=4096 131072 16777216'"
    assert result.writes == (
        Write("/proc/sys/net/core/rmem_max", "16777216", "net.core.rmem_max"),
        Write("/proc/sys/net/ipv4/tcp_rmem", "4096 131072 16777216", "net.ipv4.tcp_rmem"),
    )


def test_malformed_tcp_wmem_is_skipped_saying_why(tmp_path: Path) -> None:
    result = wmem_max.run(make_host(make_tree(tmp_path, {"proc/sys/net/ipv4/tcp_wmem": "4096\n"})))
    assert (result.status, result.value) == (
        Status.SKIP,
        "could not be read: /proc/sys/net/ipv4/tcp_wmem holds '4096', not three numbers",
    )


def test_small_somaxconn_warns(tmp_path: Path) -> None:
    result = somaxconn.run(make_host(make_tree(tmp_path, {"proc/sys/net/core/somaxconn": "128\n"})))
    assert (result.status, result.value, result.fix) == (
        Status.WARN,
        "128",
        "sudo sysctl -w net.core.somaxconn=4096",
    )


def test_nofile_reads_proc_self_limits(tmp_path: Path) -> None:
    assert nofile.run(make_host(make_tree(tmp_path))).value == "soft 1048576, hard 1048576"
    limits = "Max open files            1024                 unlimited            files\n"
    result = nofile.run(make_host(make_tree(tmp_path / "low", {"proc/self/limits": limits})))
    assert (result.status, result.value) == (Status.WARN, f"soft 1024, hard {resource.RLIM_INFINITY}")
    assert result.fix is not None and result.fix.startswith("ulimit -n 65536")


def test_nofile_falls_back_to_getrlimit(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    result = nofile.run(make_host(make_tree(tmp_path, {"proc/self/limits": None})))
    assert result.value == f"soft {soft}, hard {hard}"
