"""GPU checks through NVML (the `nvidia-ml-py` package of the `gpu` extra, imported as `pynvml`).

The inventory (each GPU's model, memory, compute capability and persistence mode, the driver, and
how each pair of GPUs is joined) is read once per doctor run; without the package, a driver or a
GPU every GPU check is `skip` and says which of the three is missing.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seekserve.host.checks import Check, Finding, Host, Status, format_bytes

__all__ = ["CHECKS", "Gpu", "GpuInventory", "PeerLink", "read_inventory"]

FP8_CAPABILITY = (8, 9)
"""FP8 tensor cores: Ada (8.9: L4, L40S) and Hopper (9.0: H100, H200) onwards."""
MAX_FOREIGN_MEMORY = 0.1
"""Share of a GPU's memory already in use above which the check warns."""
# NVML's topology levels (nvmlGpuTopologyLevel_t) by the names `nvidia-smi topo -m` prints.
_TOPOLOGY = {0: "same board", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}
_INSTALL = "pip install 'seekserve[gpu]'"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    compute_capability: tuple[int, int] | None
    persistence: bool | None
    """Persistence mode; None where NVML does not report it."""


@dataclass(frozen=True)
class PeerLink:
    """How two GPUs reach each other."""

    first: int
    second: int
    nvlink: bool
    """Peer-to-peer over NVLink (NVML's P2P status for the NVLink capability)."""
    path: str
    """The PCIe path, as `nvidia-smi topo -m` names it: PIX, PXB, PHB, NODE (one socket), SYS (across)."""


@dataclass(frozen=True)
class GpuInventory:
    gpus: tuple[Gpu, ...] = ()
    driver: str | None = None
    cuda_driver: str | None = None
    """The newest CUDA version the driver runs, e.g. '12.4'."""
    links: tuple[PeerLink, ...] = ()
    absent: str | None = None
    """Why no GPU was read (no package, no driver, no GPU); None when GPUs were read."""
    install: str | None = None
    """The command that makes the readings possible, where one does."""


def read_inventory(nvml: Any = None) -> GpuInventory:
    """Every NVIDIA GPU of the host (all of them, whatever CUDA_VISIBLE_DEVICES says)."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return GpuInventory(absent="nvidia-ml-py is not installed: GPUs are not read", install=_INSTALL)
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as e:
        return GpuInventory(absent=f"no NVIDIA driver (NVML: {e})")
    try:
        return _read(nvml)
    except nvml.NVMLError as e:
        return GpuInventory(absent=f"NVML failed while reading the GPUs: {e}")
    finally:
        nvml.nvmlShutdown()


def _read(nvml: Any) -> GpuInventory:
    def optional(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except nvml.NVMLError:
            return None

    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    if not handles:
        return GpuInventory(absent="the NVIDIA driver finds no GPU")
    gpus = []
    for index, handle in enumerate(handles):
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        capability = optional(nvml.nvmlDeviceGetCudaComputeCapability, handle)
        persistence = optional(nvml.nvmlDeviceGetPersistenceMode, handle)
        gpus.append(
            Gpu(
                index,
                _text(nvml.nvmlDeviceGetName(handle)),
                int(memory.total),
                int(memory.used),
                tuple(capability) if capability is not None else None,
                None if persistence is None else persistence == nvml.NVML_FEATURE_ENABLED,
            )
        )
    links = []
    for (i, a), (j, b) in itertools.combinations(enumerate(handles), 2):
        p2p = optional(nvml.nvmlDeviceGetP2PStatus, a, b, nvml.NVML_P2P_CAPS_INDEX_NVLINK)
        level = optional(nvml.nvmlDeviceGetTopologyCommonAncestor, a, b)
        links.append(PeerLink(i, j, p2p == nvml.NVML_P2P_STATUS_OK, _TOPOLOGY.get(level, "unknown")))
    cuda = optional(nvml.nvmlSystemGetCudaDriverVersion)
    return GpuInventory(
        tuple(gpus),
        optional(nvml.nvmlSystemGetDriverVersion),
        None if cuda is None else f"{cuda // 1000}.{cuda % 1000 // 10}",
        tuple(links),
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def inventory(host: Host) -> GpuInventory:
    found: GpuInventory = host.once("gpus", lambda: read_inventory(host.nvml))
    return found


def gpu_check(name: str, why: str) -> Callable[[Callable[[Host, GpuInventory], Finding]], Check]:
    """A check over the GPU inventory; `skip`, saying why, where there is no GPU to read."""

    def wrap(measure: Callable[[Host, GpuInventory], Finding]) -> Check:
        def run(host: Host) -> Finding:
            found = inventory(host)
            if not found.gpus:
                return Finding(Status.SKIP, found.absent or "no GPU", found.install)
            return measure(host, found)

        return Check(name, why, run)

    return wrap


@gpu_check(
    "gpu.devices",
    why="GPU memory bounds the model and its KV cache: the weights must fit with room left for the "
    "tokens of every concurrent request.",
)
def devices(host: Host, found: GpuInventory) -> Finding:
    kinds = Counter((g.name, g.memory_total_bytes) for g in found.gpus)
    value = ", ".join(f"{n} × {name} ({format_bytes(total)})" for (name, total), n in kinds.items())
    busy = [g for g in found.gpus if g.memory_used_bytes > MAX_FOREIGN_MEMORY * g.memory_total_bytes]
    if not busy:
        return Finding(Status.OK, value)
    used = ", ".join(
        f"GPU {g.index} {format_bytes(g.memory_used_bytes)} of {format_bytes(g.memory_total_bytes)}"
        for g in busy
    )
    return Finding(
        Status.WARN,
        f"{value}; already in use: {used}",
        "nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv  (stop what holds it)",
    )


@gpu_check(
    "gpu.driver",
    why="torch runs only on a driver at least as new as the CUDA it was built for; otherwise the GPUs "
    "sit idle and the model runs on the CPU or fails to start.",
)
def driver(host: Host, found: GpuInventory) -> Finding:
    torch = host.torch_info()
    value = f"driver {found.driver or '?'} (CUDA {found.cuda_driver or '?'}); torch {torch.version}"
    value += f" built for CUDA {torch.cuda}" if torch.cuda else " (a CPU-only build)"
    if torch.cuda is None:
        index = f"cu{found.cuda_driver.replace('.', '')}" if found.cuda_driver else "cu128"
        return Finding(
            Status.FAIL,
            value,
            f"pip install torch --index-url https://download.pytorch.org/whl/{index}  "
            f"(a CUDA no newer than the driver's)",
        )
    if found.cuda_driver and _version(torch.cuda) > _version(found.cuda_driver):
        return Finding(
            Status.FAIL,
            value,
            f"upgrade the NVIDIA driver to one for CUDA {torch.cuda}, or install a torch built for CUDA "
            f"{found.cuda_driver} or older",
        )
    if not torch.cuda_available:
        return Finding(
            Status.FAIL,
            value + "; torch.cuda.is_available() is False",
            "expose the GPUs to this process: check CUDA_VISIBLE_DEVICES, and docker run --gpus all",
        )
    return Finding(Status.OK, value)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@gpu_check(
    "gpu.fp8",
    why="DeepSeek-V3/R1 ship FP8 weights: GPUs with FP8 tensor cores (compute capability 8.9 and up) "
    "run them as stored, older ones need twice the memory in BF16.",
)
def fp8(host: Host, found: GpuInventory) -> Finding:
    capabilities = {g.index: g.compute_capability for g in found.gpus}
    shown = ", ".join(sorted({f"cc {c[0]}.{c[1]}" if c else "cc unknown" for c in capabilities.values()}))
    without = [i for i, c in capabilities.items() if c is None or c < FP8_CAPABILITY]
    if not without:
        return Finding(Status.OK, f"FP8 on every GPU ({shown})")
    if len(without) == len(found.gpus):
        value = f"no GPU has FP8 ({shown})"
    else:
        value = f"GPU {', '.join(map(str, without))} without FP8 ({shown})"
    return Finding(
        Status.WARN,
        value,
        "serve FP8 checkpoints on GPUs of compute capability 8.9+ (L40S, H100, H200), or quantize "
        "while loading: seekserve serve --quantization int8",
    )


@gpu_check(
    "gpu.topology",
    why="Tensor parallelism exchanges activations between GPUs at every layer: NVLink carries that at "
    "hundreds of GB/s, PCIe at tens, and across CPU sockets slower still.",
)
def topology(host: Host, found: GpuInventory) -> Finding:
    if len(found.gpus) == 1:
        return Finding(Status.SKIP, "one GPU: no peers")
    slow = [link for link in found.links if not link.nvlink]
    if not slow:
        return Finding(Status.OK, f"{len(found.gpus)} GPUs, all {len(found.links)} pairs over NVLink")
    pairs = ", ".join(f"{link.first}-{link.second} ({link.path})" for link in slow)
    return Finding(
        Status.WARN,
        f"{len(found.gpus)} GPUs, {len(slow)} of {len(found.links)} pairs without NVLink: {pairs}",
        "keep tensor parallelism inside GPUs joined by NVLink (nvidia-smi topo -m) and put pipeline "
        "parallelism across the others (vLLM/SGLang --pipeline-parallel-size)",
    )


@gpu_check(
    "gpu.persistence",
    why="Without persistence mode the driver tears a GPU down when no process holds it, and the next "
    "start waits seconds to bring it up again.",
)
def persistence(host: Host, found: GpuInventory) -> Finding:
    modes = {g.index: g.persistence for g in found.gpus if g.persistence is not None}
    if not modes:
        return Finding(Status.SKIP, "not reported by the driver")
    off = [i for i, on in modes.items() if not on]
    if not off:
        return Finding(Status.OK, f"on for all {len(modes)} GPUs")
    return Finding(Status.WARN, f"off on GPU {', '.join(map(str, off))}", "sudo nvidia-smi -pm 1")


CHECKS = (devices, driver, fp8, topology, persistence)
