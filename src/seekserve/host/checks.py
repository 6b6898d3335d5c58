"""What a host check is, what it returns, and the host it reads.

A `Check` has a name, one sentence on why it matters for smooth serving, and a `measure` function
of a `Host` that returns a `Finding`: a status, the measured value, the command that fixes it and,
for the safe fixes (a sysctl value, the transparent huge page mode), the file writes that
`fix.py` makes. Every file is read under `Host.root` (default `/`), so tests point the checks at a
fake `/proc` and `/sys` built in a temporary folder.

    @check("memory.thp", why="...")
    def thp(host: Host) -> Finding: ...

    thp.run(Host())   # -> CheckResult(name="memory.thp", status=Status.OK, value="madvise", ...)
"""

from __future__ import annotations

import enum
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seekserve.layers.cpu_kernels import KernelStatus

__all__ = [
    "Check",
    "CheckResult",
    "Finding",
    "Host",
    "Status",
    "TorchInfo",
    "Write",
    "check",
    "format_bytes",
    "sysctl_command",
]


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    """Works, but serving is slower or less steady than it could be."""
    FAIL = "fail"
    """Serving does not work as it should (a GPU torch cannot use, uncorrected memory errors)."""
    SKIP = "skip"
    """Not measurable here (no GPU, a file the kernel does not expose)."""


@dataclass(frozen=True)
class Write:
    """One write a safe fix makes: `value` into the file `path` (absolute, taken under the root)."""

    path: str
    value: str
    sysctl: str | None = None
    """The sysctl key the file is (`net.core.rmem_max`): the fix also persists it in /etc/sysctl.d."""


@dataclass(frozen=True)
class Finding:
    """What a check measured."""

    status: Status
    value: str
    fix: str | None = None
    """The exact command that fixes it; None where nothing needs fixing."""
    writes: tuple[Write, ...] = ()
    """The writes `seekserve doctor --fix` makes; empty where the fix is not one it applies itself."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    value: str
    why: str
    fix: str | None = None
    writes: tuple[Write, ...] = ()

    def to_json(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "status": self.status.value,
            "value": self.value,
            "why": self.why,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class TorchInfo:
    """The torch this process runs."""

    version: str
    cuda: str | None
    """The CUDA version torch was built for (torch.version.cuda); None for a CPU-only build."""
    cuda_available: bool
    """Whether torch can use a GPU here (torch.cuda.is_available())."""

    @classmethod
    def read(cls) -> TorchInfo:
        import torch

        return cls(torch.__version__, torch.version.cuda, torch.cuda.is_available())


@dataclass(frozen=True)
class Host:
    """The machine the checks read. Every field has the real machine's value by default."""

    root: Path = Path("/")
    """Files such as /proc/meminfo are read as root/proc/meminfo."""
    model_path: Path | None = None
    """The model folder (or file) whose read speed is measured; None: none given."""
    home: Path | None = None
    """Where pulled models go (SEEKSERVE_HOME), for the free-space check; None: from the environment."""
    nvml: Any = None
    """The pynvml module (a fake in tests); None: import it, if installed."""
    torch: TorchInfo | None = None
    """None: the torch of this process."""
    kernel_status: Callable[[], KernelStatus] | None = None
    """Returns the CPU kernels' status (`layers.cpu_kernels.kernel_status`); None: that function."""
    euid: int = field(default_factory=lambda: os.geteuid())
    """The effective user id: `--fix` needs 0 (root)."""
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Readings several checks share (the GPU inventory), taken once per doctor run."""

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def read(self, absolute: str) -> str:
        """The text of a file under the root; raises OSError where it is missing or unreadable."""
        return self.path(absolute).read_text()

    def read_or_none(self, absolute: str) -> str | None:
        """The stripped text of a file under the root, or None where it does not exist."""
        try:
            return self.read(absolute).strip()
        except FileNotFoundError:
            return None

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """compute(), taken once per host (shared by the checks that need it)."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    def torch_info(self) -> TorchInfo:
        return self.torch or self.once("torch", TorchInfo.read)


@dataclass(frozen=True)
class Check:
    name: str
    why: str
    """Why it matters for smooth serving, in one sentence."""
    measure: Callable[[Host], Finding]

    def run(self, host: Host) -> CheckResult:
        """The result; a file that exists but cannot be read or parsed gives `skip`, saying why."""
        try:
            found = self.measure(host)
        except (OSError, ValueError) as e:
            found = Finding(Status.SKIP, f"could not be read: {e}")
        return CheckResult(self.name, found.status, found.value, self.why, found.fix, found.writes)


def check(name: str, why: str) -> Callable[[Callable[[Host], Finding]], Check]:
    """Make a measuring function a named `Check`."""

    def wrap(measure: Callable[[Host], Finding]) -> Check:
        return Check(name, why, measure)

    return wrap


def format_bytes(num_bytes: float) -> str:
    """1536 -> '1.5 KiB'; binary units, as free(1) and nvidia-smi show them."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(num_bytes) < 1024 or unit == "TiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    raise AssertionError("unreachable: the loop returns at TiB")


def sysctl_command(writes: tuple[Write, ...]) -> str:
    """The `sysctl -w` command line that makes the writes of sysctl keys: 'sudo sysctl -w a=1 b=2'."""
    settings = [shlex.quote(f"{w.sysctl}={w.value}") for w in writes if w.sysctl]
    assert settings, "only writes of sysctl keys have a sysctl command"
    return "sudo sysctl -w " + " ".join(settings)
