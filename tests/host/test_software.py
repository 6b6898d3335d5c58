from __future__ import annotations

import platform
from pathlib import Path

import pytest

from host.fake_host import make_host
from seekserve import __version__
from seekserve.host import Status
from seekserve.host.checks import TorchInfo
from seekserve.host.software import kernels, python, torch
from seekserve.layers.cpu_kernels import KernelSet, KernelStatus


def test_python_and_torch_versions(tmp_path: Path) -> None:
    assert python.run(make_host(tmp_path)).value == (
        f"Python {platform.python_version()} ({platform.python_implementation()}), seekserve {__version__}"
    )
    cpu = torch.run(make_host(tmp_path, torch=TorchInfo("2.13.0+cpu", None, False)))
    assert (cpu.status, cpu.value) == (Status.OK, "torch 2.13.0+cpu, CPU-only build, no GPU usable")


@pytest.mark.parametrize(
    ("status", "expected", "fix"),
    [
        (KernelStatus(KernelSet.AVX512, "VNNI, VBMI int4"), Status.OK, None),
        (KernelStatus(KernelSet.PORTABLE, "no AVX-512"), Status.OK, None),
        (
            KernelStatus(KernelSet.PORTABLE, "SEEKSERVE_CPU_KERNELS=portable"),
            Status.WARN,
            "unset SEEKSERVE_CPU_KERNELS",
        ),
        (KernelStatus(KernelSet.OFF, "SEEKSERVE_CPU_KERNELS=0"), Status.WARN, "unset SEEKSERVE_CPU_KERNELS"),
        (
            KernelStatus(KernelSet.OFF, "no C++ compiler: install g++, or SEEKSERVE_CPU_KERNELS=0"),
            Status.WARN,
            "sudo apt-get install -y g++",
        ),
        (
            KernelStatus(KernelSet.OFF, "the build failed: g++ exit status 1"),
            Status.WARN,
            "read the compiler's error",
        ),
    ],
)
def test_kernels_status_and_fix(
    tmp_path: Path, status: KernelStatus, expected: Status, fix: str | None
) -> None:
    result = kernels.run(make_host(tmp_path, kernel_status=lambda: status))
    assert result.status is expected
    assert result.value.startswith(str(status))
    assert (result.fix is None) if fix is None else (result.fix is not None and result.fix.startswith(fix))
