from __future__ import annotations

import dataclasses
import logging
import sys

import pytest
import torch

from metrics.fake_nvml import FakeGpu, FakeNvml
from seekserve.metrics import GpuSample, GpuSampler

H100 = FakeGpu("NVIDIA H100 80GB HBM3", "GPU-aaaa-1111", 87, 41, 60 << 30, 80 << 30, 512_345, 61)
L4 = FakeGpu("NVIDIA L4", "GPU-bbbb-2222", 3, 0, 1 << 30, 24 << 30, None, 35)


def test_samples_every_gpu_in_the_units_of_the_metrics() -> None:
    nvml = FakeNvml([dataclasses.replace(H100), L4])
    sampler = GpuSampler(nvml, visible_devices=None)
    sampler.open()
    assert sampler.num_gpus == 2
    h100, l4 = sampler.sample()
    assert h100 == GpuSample(
        index=0, name="NVIDIA H100 80GB HBM3", uuid="GPU-aaaa-1111", sm_utilization=0.87,
        memory_utilization=0.41, memory_used_bytes=60 << 30, memory_total_bytes=80 << 30,
        power_watts=512.345, temperature_celsius=61.0,
    )  # fmt: skip
    assert (l4.index, l4.name, l4.power_watts, l4.sm_utilization) == (1, "NVIDIA L4", None, 0.03)
    nvml.gpus[0].gpu_percent = 100
    assert sampler.sample()[0].sm_utilization == 1.0  # read afresh each time
    sampler.close()
    assert nvml.calls == ["init", "shutdown"]


def test_without_a_driver_it_logs_one_line_and_samples_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="seekserve.metrics")
    sampler = GpuSampler(FakeNvml(init_error="NVML Shared Library Not Found"), visible_devices=None)
    sampler.open()
    sampler.open()
    assert sampler.sample() == ()
    sampler.close()
    lines = [r for r in caplog.records if r.name.startswith("seekserve.metrics")]
    assert [(r.levelname, r.getMessage()) for r in lines] == [
        ("INFO", "GPU metrics are off: no NVIDIA GPU found (NVML: NVML Shared Library Not Found)")
    ]


def test_without_nvidia_ml_py_it_logs_one_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    caplog.set_level(logging.INFO, logger="seekserve.metrics")
    sampler = GpuSampler(visible_devices=None)
    sampler.open()
    assert sampler.sample() == ()
    assert [r.getMessage() for r in caplog.records] == ["GPU metrics are off: nvidia-ml-py is not installed"]


def test_a_machine_with_no_gpus_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="seekserve.metrics")
    nvml = FakeNvml([])
    sampler = GpuSampler(nvml, visible_devices=None)
    sampler.open()
    assert sampler.sample() == ()
    sampler.close()
    assert nvml.calls == ["init", "shutdown"]  # NVML is released even though it found nothing
    assert [r.getMessage() for r in caplog.records] == [
        "GPU metrics are off: no NVIDIA GPU visible to this process"
    ]


@pytest.mark.parametrize(
    ("visible", "indices"),
    [
        (None, [0, 1, 2]),
        ("2,0", [2, 0]),
        ("1", [1]),
        ("GPU-bbbb", [1]),
        ("0,7,1", [0]),  # CUDA stops at the first entry it cannot use
        ("", []),
        ("-1", []),
        ("MIG-3c7e", [0, 1, 2]),  # not an index or GPU UUID: every GPU, and a log line
    ],
)
def test_only_the_gpus_cuda_visible_devices_allows_are_read(visible: str | None, indices: list[int]) -> None:
    third = FakeGpu("NVIDIA A10", "GPU-cccc-3333")
    sampler = GpuSampler(FakeNvml([H100, L4, third]), visible_devices=visible)
    sampler.open()
    assert [s.index for s in sampler.sample()] == indices


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_real_nvml_reads_every_visible_gpu() -> None:
    sampler = GpuSampler()
    sampler.open()
    samples = sampler.sample()
    sampler.close()
    print(*samples, sep="\n")  # for the record: `pytest -s -m gpu tests/metrics/test_hardware.py`
    assert len(samples) == torch.cuda.device_count()
    for s in samples:
        assert s.name and s.uuid.startswith("GPU-")
        assert s.sm_utilization is not None and 0 <= s.sm_utilization <= 1
        assert s.memory_utilization is not None and 0 <= s.memory_utilization <= 1
        assert s.memory_total_bytes and s.memory_used_bytes is not None
        assert 0 < s.memory_used_bytes <= s.memory_total_bytes
