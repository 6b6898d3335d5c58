"""Host checks for `seekserve doctor`: GPUs, CPU, memory, storage, network, software.

    results = run_checks(Host())                 # every check, in the order of CHECKS
    results = run_checks(Host(root=fake_tree))   # the same, over a fake /proc and /sys

One module per part of the machine; `checks.py` defines a check and the host it reads, `fix.py`
applies the safe fixes.
"""

from __future__ import annotations

from seekserve.host import cpu, gpu, memory, network, software, storage
from seekserve.host.checks import Check, CheckResult, Host, Status

__all__ = ["CHECKS", "Check", "CheckResult", "Host", "Status", "run_checks"]

CHECKS: tuple[Check, ...] = (
    *gpu.CHECKS,
    *cpu.CHECKS,
    *memory.CHECKS,
    *storage.CHECKS,
    *network.CHECKS,
    *software.CHECKS,
)


def run_checks(host: Host, checks: tuple[Check, ...] = CHECKS) -> list[CheckResult]:
    return [c.run(host) for c in checks]
