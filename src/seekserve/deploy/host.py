"""Host tuning on the GPU nodes: a DaemonSet whose init container sets kernel settings once per boot.

    net.core.default_qdisc=fq, net.ipv4.tcp_congestion_control=bbr   BBR paces long transfers
                                                                      (weight pulls, cross-node traffic)
    net.core.rmem_max / wmem_max, net.ipv4.tcp_rmem / tcp_wmem        socket buffers up to
                                                                      socket_buffer_bytes
    /sys/kernel/mm/transparent_hugepage/enabled                       madvise: huge pages only where
                                                                      asked (no khugepaged stalls)

The privilege it needs, plainly: the init container runs `privileged: true` in the host's network
namespace (`hostNetwork: true`), which lets it write any sysctl and /sys file on the node. Those
two are what the settings need (sysctls of the host network namespace; /sys is read-only to
unprivileged containers). It runs only the shell script below, from a pinned image; the container
that stays running is unprivileged and only sleeps, so the pod shows the node as tuned. The
network settings apply to the host's network namespace (host-network pods, node traffic); a pod
network namespace keeps its own per-namespace TCP settings.
"""

from __future__ import annotations

from seekserve.deploy.objects import Obj, labels, meta, resources
from seekserve.deploy.values import Resources, Values

__all__ = ["host_tuning_objects", "tuning_script"]


def tuning_script(values: Values) -> str:
    tuning = values.host_tuning
    size = tuning.socket_buffer_bytes
    lines = ["set -eu"]
    if tuning.bbr:
        lines += ["sysctl -w net.core.default_qdisc=fq", "sysctl -w net.ipv4.tcp_congestion_control=bbr"]
    lines += [
        f"sysctl -w net.core.rmem_max={size} net.core.wmem_max={size}",
        f'sysctl -w net.ipv4.tcp_rmem="4096 131072 {size}" net.ipv4.tcp_wmem="4096 65536 {size}"',
        f"echo {tuning.transparent_hugepages} > /sys/kernel/mm/transparent_hugepage/enabled",
    ]
    return "\n".join(lines) + "\n"


def host_tuning_objects(values: Values) -> list[Obj]:
    small = resources(Resources(cpu="10m", memory="16Mi"))
    tune = {
        "name": "tune",
        "image": values.images.host_tools,
        "command": ["sh", "-c", tuning_script(values)],
        "securityContext": {"privileged": True},
        "resources": small,
    }
    hold = {
        "name": "tuned",
        "image": values.images.host_tools,
        "command": ["sleep", "2147483647"],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 65534},
        "resources": small,
    }
    pod = {
        "hostNetwork": True,
        "nodeSelector": dict(values.host_tuning.node_selector),
        "tolerations": [{"operator": "Exists"}],  # every selected node, tainted or not
        "initContainers": [tune],
        "containers": [hold],
    }
    daemon_set = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta("seekserve-host-tuning", values, "host-tuning"),
        "spec": {
            "selector": {"matchLabels": labels("host-tuning")},
            "template": {"metadata": {"labels": labels("host-tuning")}, "spec": pod},
        },
    }
    return [daemon_set]
