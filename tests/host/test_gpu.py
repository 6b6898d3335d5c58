from __future__ import annotations

import sys
from pathlib import Path

import pytest

from host.fake_gpus import HostGpu, HostNvml
from host.fake_host import make_host
from seekserve.host import Status, run_checks
from seekserve.host.checks import TorchInfo
from seekserve.host.gpu import CHECKS, devices, driver, fp8, persistence, read_inventory, topology

GIB = 1 << 30


def _h100s(count: int, **gpu: object) -> list[HostGpu]:
    fields: dict[str, object] = {"total_bytes": 80 * GIB, **gpu}
    return [HostGpu(name="NVIDIA H100 80GB HBM3", uuid=f"GPU-{i}", **fields) for i in range(count)]  # type: ignore[arg-type]


def test_eight_h100_over_nvlink(tmp_path: Path) -> None:
    nvml = HostNvml(gpus=_h100s(8), nvlink_groups=[set(range(8))], cuda_driver=12080)
    host = make_host(tmp_path, nvml=nvml)
    assert [(r.name, r.status, r.value) for r in run_checks(host, CHECKS)] == [
        ("gpu.devices", Status.OK, "8 × NVIDIA H100 80GB HBM3 (80.0 GiB)"),
        ("gpu.driver", Status.OK, "driver 550.54.15 (CUDA 12.8); torch 2.7.0+cu128 built for CUDA 12.8"),
        ("gpu.fp8", Status.OK, "FP8 on every GPU (cc 9.0)"),
        ("gpu.topology", Status.OK, "8 GPUs, all 28 pairs over NVLink"),
        ("gpu.persistence", Status.OK, "on for all 8 GPUs"),
    ]
    assert nvml.calls == ["init", "shutdown"], "NVML is read once per doctor run"


def test_driver_older_than_torchs_cuda_fails(tmp_path: Path) -> None:
    result = driver.run(make_host(tmp_path, nvml=HostNvml(gpus=_h100s(1), cuda_driver=12020)))
    assert result.status is Status.FAIL
    assert result.fix == (
        "upgrade the NVIDIA driver to one for CUDA 12.8, or install a torch built for CUDA 12.2 or older"
    )


def test_cpu_only_torch_on_a_gpu_host_fails(tmp_path: Path) -> None:
    host = make_host(tmp_path, nvml=HostNvml(gpus=_h100s(1)), torch=TorchInfo("2.7.0+cpu", None, False))
    result = driver.run(host)
    assert (result.status, result.value) == (
        Status.FAIL,
        "driver 550.54.15 (CUDA 12.4); torch 2.7.0+cpu (a CPU-only build)",
    )
    assert result.fix is not None
    assert result.fix.startswith("pip install torch --index-url https://download.pytorch.org/whl/cu124")


def test_gpus_hidden_from_torch_fail(tmp_path: Path) -> None:
    host = make_host(
        tmp_path, nvml=HostNvml(gpus=_h100s(1), cuda_driver=12080), torch=TorchInfo("2.7.0", "12.8", False)
    )
    result = driver.run(host)
    assert result.status is Status.FAIL
    assert result.value.endswith("; torch.cuda.is_available() is False")


def test_memory_held_by_another_process_warns(tmp_path: Path) -> None:
    gpus = _h100s(2)
    gpus[1].used_bytes = 40 * GIB
    result = devices.run(make_host(tmp_path, nvml=HostNvml(gpus=gpus)))
    assert (result.status, result.value) == (
        Status.WARN,
        "2 × NVIDIA H100 80GB HBM3 (80.0 GiB); already in use: GPU 1 40.0 GiB of 80.0 GiB",
    )


def test_a100s_without_fp8_warn(tmp_path: Path) -> None:
    gpus = [HostGpu(name="NVIDIA A100-SXM4-80GB", uuid=f"a{i}", compute_capability=(8, 0)) for i in range(2)]
    gpus.append(HostGpu(name="NVIDIA L40S", uuid="l", compute_capability=(8, 9), total_bytes=48 * GIB))
    host = make_host(tmp_path, nvml=HostNvml(gpus=gpus))
    result = fp8.run(host)
    assert (result.status, result.value) == (Status.WARN, "GPU 0, 1 without FP8 (cc 8.0, cc 8.9)")
    assert devices.run(host).value == ("2 × NVIDIA A100-SXM4-80GB (80.0 GiB), 1 × NVIDIA L40S (48.0 GiB)")
    only_a100 = fp8.run(make_host(tmp_path, nvml=HostNvml(gpus=gpus[:2])))
    assert only_a100.value == "no GPU has FP8 (cc 8.0)"


def test_pcie_pairs_are_named_with_their_path(tmp_path: Path) -> None:
    nvml = HostNvml(
        gpus=_h100s(4),
        nvlink_groups=[{0, 1}, {2, 3}],
        topology={(0, 2): 50, (0, 3): 50, (1, 2): 50, (1, 3): 50},
    )
    result = topology.run(make_host(tmp_path, nvml=nvml))
    assert (result.status, result.value) == (
        Status.WARN,
        "4 GPUs, 4 of 6 pairs without NVLink: 0-2 (SYS), 0-3 (SYS), 1-2 (SYS), 1-3 (SYS)",
    )
    assert result.fix is not None and "nvidia-smi topo -m" in result.fix


def test_one_gpu_has_no_topology_and_persistence_off_warns(tmp_path: Path) -> None:
    host = make_host(tmp_path, nvml=HostNvml(gpus=_h100s(1, persistence=False)))
    assert (topology.run(host).status, topology.run(host).value) == (Status.SKIP, "one GPU: no peers")
    result = persistence.run(host)
    assert (result.status, result.value, result.fix) == (Status.WARN, "off on GPU 0", "sudo nvidia-smi -pm 1")
    unknown = persistence.run(make_host(tmp_path, nvml=HostNvml(gpus=_h100s(1, persistence=None))))
    assert (unknown.status, unknown.value) == (Status.SKIP, "not reported by the driver")


def test_without_a_driver_every_gpu_check_is_skipped(tmp_path: Path) -> None:
    nvml = HostNvml(init_error="NVML Shared Library Not Found")
    results = run_checks(make_host(tmp_path, nvml=nvml), CHECKS)
    assert {(r.status, r.value, r.fix) for r in results} == {
        (Status.SKIP, "no NVIDIA driver (NVML: NVML Shared Library Not Found)", None)
    }


def test_without_gpus_every_gpu_check_is_skipped(tmp_path: Path) -> None:
    results = run_checks(make_host(tmp_path, nvml=HostNvml()), CHECKS)
    assert {(r.status, r.value) for r in results} == {(Status.SKIP, "the NVIDIA driver finds no GPU")}


def test_without_nvidia_ml_py_the_fix_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    found = read_inventory()
    assert (found.gpus, found.install) == ((), "pip install 'seekserve[gpu]'")
    assert found.absent == "nvidia-ml-py is not installed: GPUs are not read"
