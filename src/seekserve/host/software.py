"""Software checks: Python, torch, and which set of seekserve's CPU kernels runs."""

from __future__ import annotations

import platform

from seekserve import __version__
from seekserve.host.checks import Finding, Host, Status, check
from seekserve.layers.cpu_kernels import KernelSet, KernelStatus

__all__ = ["CHECKS"]


@check("software.python", why="seekserve needs Python 3.11 or newer; the version goes in every bug report.")
def python(host: Host) -> Finding:
    return Finding(
        Status.OK,
        f"Python {platform.python_version()} ({platform.python_implementation()}), seekserve {__version__}",
    )


@check(
    "software.torch",
    why="The torch build decides where the model runs: a CPU-only build never touches the GPUs.",
)
def torch(host: Host) -> Finding:
    info = host.torch_info()
    build = f"built for CUDA {info.cuda}" if info.cuda else "CPU-only build"
    usable = "GPUs usable" if info.cuda_available else "no GPU usable"
    return Finding(Status.OK, f"torch {info.version}, {build}, {usable}")


@check(
    "software.kernels",
    why="On CPU, seekserve's own kernels (paged decode attention, int4 products, the greedy head) run "
    "decoding several times faster than the torch path they replace.",
)
def kernels(host: Host) -> Finding:
    status = _kernel_status(host)
    value = str(status)
    if status.kernel_set is KernelSet.AVX512:
        return Finding(Status.OK, value)
    if status.kernel_set is KernelSet.PORTABLE:
        if status.detail == "no AVX-512":
            return Finding(Status.OK, value + ": the best set for this CPU")
        return Finding(Status.WARN, value, "unset SEEKSERVE_CPU_KERNELS (portable leaves AVX-512 unused)")
    if status.detail.startswith("SEEKSERVE_CPU_KERNELS=0"):
        return Finding(Status.WARN, value, "unset SEEKSERVE_CPU_KERNELS")
    if status.detail.startswith("no C++ compiler"):
        return Finding(Status.WARN, value, "sudo apt-get install -y g++  (or dnf install gcc-c++)")
    return Finding(
        Status.WARN, value, "read the compiler's error in the warning `seekserve serve` logs as it starts"
    )


def _kernel_status(host: Host) -> KernelStatus:
    if host.kernel_status is not None:
        return host.kernel_status()
    from seekserve.layers.cpu_kernels import kernel_status

    return kernel_status()


CHECKS = (python, torch, kernels)
