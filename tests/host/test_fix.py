from __future__ import annotations

from pathlib import Path

import pytest

from host.fake_host import GIB_KB, make_host, make_tree, meminfo
from seekserve.errors import HostFixError
from seekserve.host import Status, run_checks
from seekserve.host.fix import SYSCTL_CONF, Applied, apply_fixes, pending_writes

_UNTUNED = {
    "sys/kernel/mm/transparent_hugepage/enabled": "[always] madvise never\n",
    "proc/meminfo": meminfo(swap_kb=4 * GIB_KB),
    "proc/sys/vm/swappiness": "60\n",
    "proc/sys/net/core/somaxconn": "128\n",
    "proc/sys/net/ipv4/tcp_congestion_control": "cubic\n",
}


def _statuses(root: Path) -> dict[str, Status]:
    return {r.name: r.status for r in run_checks(make_host(root)) if not r.name.startswith("gpu.")}


def test_fix_writes_the_settings_and_persists_the_sysctls(tmp_path: Path) -> None:
    root = make_tree(tmp_path, _UNTUNED)
    (root / "etc/sysctl.d").mkdir(parents=True)
    (root / SYSCTL_CONF.lstrip("/")).write_text("# mine\nnet.core.somaxconn = 1024\nkernel.pid_max = 99999\n")
    before = _statuses(root)
    assert [n for n, s in before.items() if s is Status.WARN] == [
        "memory.thp",
        "memory.swap",
        "net.congestion",
        "net.somaxconn",
    ]
    applied = apply_fixes(make_host(root, euid=0), run_checks(make_host(root)))
    assert [(a.path, a.error) for a in applied] == [
        ("/sys/kernel/mm/transparent_hugepage/enabled", None),
        ("/proc/sys/vm/swappiness", None),
        ("/proc/sys/net/ipv4/tcp_congestion_control", None),
        ("/proc/sys/net/core/somaxconn", None),
        (SYSCTL_CONF, None),
    ]
    assert (root / "proc/sys/vm/swappiness").read_text() == "1\n"
    assert (root / "sys/kernel/mm/transparent_hugepage/enabled").read_text() == "madvise\n"
    assert (root / SYSCTL_CONF.lstrip("/")).read_text() == (
        "# written by seekserve doctor --fix\n"
        "net.core.somaxconn = 4096\n"
        "kernel.pid_max = 99999\n"
        "vm.swappiness = 1\n"
        "net.ipv4.tcp_congestion_control = bbr\n"
    )
    # The fake THP file now holds the bare mode, as a real kernel would not show it; the rest re-read ok.
    after = _statuses(root)
    assert after["memory.swap"] is after["net.congestion"] is after["net.somaxconn"] is Status.OK


def test_fix_refuses_without_root_and_writes_nothing(tmp_path: Path) -> None:
    root = make_tree(tmp_path, _UNTUNED)
    results = run_checks(make_host(root))
    with pytest.raises(HostFixError, match=r"only root may change, and this process runs as user id 1000"):
        apply_fixes(make_host(root, euid=1000), results)
    assert (root / "proc/sys/vm/swappiness").read_text() == "60\n"
    assert not (root / SYSCTL_CONF.lstrip("/")).exists()


def test_a_missing_target_is_reported_not_raised(tmp_path: Path) -> None:
    root = make_tree(tmp_path, _UNTUNED)
    results = run_checks(make_host(root))
    (root / "proc/sys/net/core/somaxconn").unlink()
    applied = apply_fixes(make_host(root, euid=0), results)
    assert (
        Applied(
            "/proc/sys/net/core/somaxconn",
            "4096",
            "/proc/sys/net/core/somaxconn does not exist on this kernel",
        )
        in applied
    )
    assert "net.core.somaxconn" not in (root / SYSCTL_CONF.lstrip("/")).read_text()


def test_a_tuned_host_has_nothing_to_fix(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    results = run_checks(make_host(root))
    assert pending_writes(results) == []
    assert apply_fixes(make_host(root, euid=1000), results) == []
