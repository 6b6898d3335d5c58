"""A stand-in for the `pynvml` module: the NVML calls `GpuSampler` makes, over scripted GPUs."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    pass


class NVMLErrorNotSupported(NVMLError):
    pass


@dataclass
class FakeGpu:
    name: str
    uuid: str
    gpu_percent: int = 0
    memory_percent: int = 0
    used_bytes: int = 0
    total_bytes: int = 80 << 30
    power_mw: int | None = 300_000
    """None: the GPU does not report power."""
    temperature_c: int = 40


@dataclass
class FakeNvml:
    """Module-like: pass an instance where `GpuSampler` expects pynvml."""

    gpus: list[FakeGpu] = field(default_factory=list)
    init_error: str | None = None
    """Raise NVMLError with this message from nvmlInit (no driver, no library)."""
    calls: list[str] = field(default_factory=list)

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.init_error is not None:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> bytes:
        return gpu.name.encode()  # older bindings return bytes

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return gpu.uuid

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> Any:
        return SimpleNamespace(gpu=gpu.gpu_percent, memory=gpu.memory_percent)

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> Any:
        return SimpleNamespace(
            used=gpu.used_bytes, total=gpu.total_bytes, free=gpu.total_bytes - gpu.used_bytes
        )

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        if gpu.power_mw is None:
            raise NVMLErrorNotSupported("Not Supported")
        return gpu.power_mw

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU, "the sampler reads the GPU core sensor"
        return gpu.temperature_c
