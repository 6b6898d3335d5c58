"""The host-tuning DaemonSet: the privilege it takes, and what it sets."""

from __future__ import annotations

from deploy.kube import of_kind


def test_host_tuning_states_its_privilege_and_sets_bbr_buffers_and_thp() -> None:
    (daemon,) = of_kind("r1-vllm", "DaemonSet")
    pod = daemon["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    (tune,) = pod["initContainers"]
    assert tune["securityContext"] == {"privileged": True}
    script = tune["command"][2]
    assert "sysctl -w net.ipv4.tcp_congestion_control=bbr" in script
    assert "net.core.rmem_max=67108864" in script
    assert "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled" in script
    (hold,) = pod["containers"]
    assert hold["securityContext"]["allowPrivilegeEscalation"] is False
    assert not of_kind("small-cpu", "DaemonSet")  # no GPU node to tune
