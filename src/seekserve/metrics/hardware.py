"""GPU readings through NVML (the `nvidia-ml-py` package, imported as `pynvml`).

    sampler = GpuSampler()
    sampler.open()            # logs one line and samples nothing where there is no NVIDIA GPU
    sampler.sample()          # -> (GpuSample(index=0, sm_utilization=0.87, ...), ...)

SM utilization is NVML's `utilization.gpu`: the share of the last sample period (1/6 s to 1 s,
by GPU) in which at least one kernel ran, the `sm` column of `nvidia-smi dmon`. It is not SM
occupancy; that needs DCGM's profiling metrics. Memory utilization is the share of that period
in which device memory was read or written (the memory controller's busy time), not memory used.

Only the GPUs this process may use are read: where CUDA_VISIBLE_DEVICES lists indices or GPU
UUIDs (CUDA's own variable, read as torch reads it), the others are left out, so several servers
sharing a host each export their own GPUs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["GpuSample", "GpuSampler"]

log = logging.getLogger(__name__)

_MILLIWATTS_PER_WATT = 1000.0
_PERCENT = 100.0


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment; a reading the GPU does not support is None."""

    index: int
    """NVML's index of the GPU (as nvidia-smi numbers them)."""
    name: str
    uuid: str
    sm_utilization: float | None
    """Share of time a kernel was running, 0 to 1."""
    memory_utilization: float | None
    """Share of time device memory was being read or written, 0 to 1."""
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    power_watts: float | None
    temperature_celsius: float | None


@dataclass(frozen=True)
class _Device:
    index: int
    handle: Any
    name: str
    uuid: str


class GpuSampler:
    """Reads every visible NVIDIA GPU; on a machine without one, `sample()` returns nothing.

    `nvml` is the pynvml module (a fake in tests); `visible_devices` a CUDA_VISIBLE_DEVICES value.
    """

    def __init__(self, nvml: Any = None, visible_devices: str | None = None) -> None:
        self._nvml = nvml
        self._visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible_devices is None else visible_devices
        self._devices: list[_Device] = []
        self._opened = False
        self._initialised = False

    @property
    def num_gpus(self) -> int:
        return len(self._devices)

    def open(self) -> None:
        """Initialise NVML and find the GPUs; without any, log one line saying so (never raise)."""
        if self._opened:
            return
        self._opened = True
        nvml = self._nvml
        if nvml is None:
            try:
                import pynvml
            except ImportError:
                log.info("GPU metrics are off: nvidia-ml-py is not installed")
                return
            self._nvml = nvml = pynvml
        try:
            nvml.nvmlInit()
            self._initialised = True
            found = [self._device(i) for i in range(nvml.nvmlDeviceGetCount())]
        except nvml.NVMLError as e:
            log.info("GPU metrics are off: no NVIDIA GPU found (NVML: %s)", e)
            return
        self._devices = _visible(found, self._visible)
        if not self._devices:
            log.info("GPU metrics are off: no NVIDIA GPU visible to this process")
            return
        log.info("GPU metrics on for %s", ", ".join(f"GPU {d.index} ({d.name})" for d in self._devices))

    def _device(self, index: int) -> _Device:
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        return _Device(
            index, handle, _text(nvml.nvmlDeviceGetName(handle)), _text(nvml.nvmlDeviceGetUUID(handle))
        )

    def sample(self) -> tuple[GpuSample, ...]:
        """The current readings of every GPU found by `open()`."""
        return tuple(self._read(device) for device in self._devices)

    def _read(self, device: _Device) -> GpuSample:
        nvml, handle = self._nvml, device.handle
        rates = self._get(nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = self._get(nvml.nvmlDeviceGetMemoryInfo, handle)
        power_mw = self._get(nvml.nvmlDeviceGetPowerUsage, handle)
        temperature = self._get(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
        return GpuSample(
            index=device.index,
            name=device.name,
            uuid=device.uuid,
            sm_utilization=None if rates is None else rates.gpu / _PERCENT,
            memory_utilization=None if rates is None else rates.memory / _PERCENT,
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_total_bytes=None if memory is None else int(memory.total),
            power_watts=None if power_mw is None else power_mw / _MILLIWATTS_PER_WATT,
            temperature_celsius=None if temperature is None else float(temperature),
        )

    def _get(self, read: Any, *args: Any) -> Any:
        try:
            return read(*args)
        except self._nvml.NVMLError:  # not supported by this GPU, or it is gone: leave the reading out
            return None

    def close(self) -> None:
        """Release NVML (sampling returns nothing afterwards)."""
        self._devices = []
        if self._initialised:
            self._initialised = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as e:
                log.debug("nvmlShutdown failed: %s", e)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value  # older pynvml returns bytes


def _visible(found: list[_Device], visible: str | None) -> list[_Device]:
    """The GPUs CUDA_VISIBLE_DEVICES lets this process use (all where it is unset or not understood)."""
    if visible is None:
        return found
    chosen = []
    for entry in (e.strip() for e in visible.split(",")):
        is_index = entry.removeprefix("-").isdigit()
        if not is_index and not entry.startswith("GPU-"):
            if entry:
                log.info(
                    "GPU metrics cover every GPU: CUDA_VISIBLE_DEVICES entry %r is not understood", entry
                )
                return found
            break
        match = [d for d in found if (d.index == int(entry) if is_index else d.uuid.startswith(entry))]
        if not match:
            break  # CUDA ignores everything from the first entry it cannot use
        chosen.append(match[0])
    return chosen
