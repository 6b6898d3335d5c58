"""The NVML calls of the doctor's GPU checks, over scripted GPUs (extends the metrics tests' fake)."""

from __future__ import annotations

from dataclasses import dataclass, field

from metrics.fake_nvml import FakeGpu, FakeNvml, NVMLError, NVMLErrorNotSupported

__all__ = ["HostGpu", "HostNvml", "NVMLError"]


@dataclass
class HostGpu(FakeGpu):
    compute_capability: tuple[int, int] = (9, 0)
    persistence: bool | None = True
    """None: the driver does not report it."""


@dataclass
class HostNvml(FakeNvml):
    gpus: list[HostGpu] = field(default_factory=list)  # type: ignore[assignment]
    driver: str = "550.54.15"
    cuda_driver: int = 12040
    nvlink_groups: list[set[int]] = field(default_factory=list)
    """GPUs joined by NVLink, e.g. [{0, 1}, {2, 3}]; pairs outside a group have none."""
    topology: dict[tuple[int, int], int] = field(default_factory=dict)
    """NVML's topology level of a pair (i < j); 40 (NODE) where not given."""

    NVML_FEATURE_ENABLED = 1
    NVML_FEATURE_DISABLED = 0
    NVML_P2P_CAPS_INDEX_NVLINK = 2
    NVML_P2P_STATUS_OK = 0
    NVML_P2P_STATUS_NOT_SUPPORTED = 5

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda_driver

    def nvmlDeviceGetCudaComputeCapability(self, gpu: HostGpu) -> tuple[int, int]:
        return gpu.compute_capability

    def nvmlDeviceGetPersistenceMode(self, gpu: HostGpu) -> int:
        if gpu.persistence is None:
            raise NVMLErrorNotSupported("Not Supported")
        return self.NVML_FEATURE_ENABLED if gpu.persistence else self.NVML_FEATURE_DISABLED

    def nvmlDeviceGetP2PStatus(self, a: HostGpu, b: HostGpu, index: int) -> int:
        assert index == self.NVML_P2P_CAPS_INDEX_NVLINK, "the doctor asks about NVLink peer access"
        i, j = self.gpus.index(a), self.gpus.index(b)
        joined = any(i in group and j in group for group in self.nvlink_groups)
        return self.NVML_P2P_STATUS_OK if joined else self.NVML_P2P_STATUS_NOT_SUPPORTED

    def nvmlDeviceGetTopologyCommonAncestor(self, a: HostGpu, b: HostGpu) -> int:
        i, j = sorted((self.gpus.index(a), self.gpus.index(b)))
        return self.topology.get((i, j), 40)
