"""`seekserve doctor --fix`: the safe fixes (sysctl values, the transparent huge page mode), applied.

Only the writes a check attached to its finding are made, each under the host's root; a sysctl
key is also written to /etc/sysctl.d/90-seekserve.conf so it survives a reboot. Everything else a
check suggests (drivers, limits, numactl, hardware) stays a command for a person to run.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from seekserve.errors import HostFixError
from seekserve.host.checks import CheckResult, Host, Status, Write

__all__ = ["SYSCTL_CONF", "Applied", "apply_fixes", "pending_writes", "require_root"]

SYSCTL_CONF = "/etc/sysctl.d/90-seekserve.conf"


@dataclass(frozen=True)
class Applied:
    path: str
    value: str
    error: str | None = None
    """Why the write failed; None when it was made."""


def pending_writes(results: list[CheckResult]) -> list[Write]:
    """The writes of every check that is not ok and has a safe fix."""
    return [w for r in results if r.status is not Status.OK for w in r.writes]


def apply_fixes(host: Host, results: list[CheckResult]) -> list[Applied]:
    """Make the pending writes; raises HostFixError without root (nothing is written then)."""
    writes = pending_writes(results)
    if not writes:
        return []
    require_root(host, writes)
    applied = [_write(host, w.path, w.value) for w in writes]
    made = [w for w, a in zip(writes, applied, strict=True) if a.error is None and w.sysctl]
    if made:
        applied.append(_persist(host, made))
    return applied


def require_root(host: Host, writes: list[Write]) -> None:
    """Raise HostFixError, saying why, unless this process may make the writes (it runs as root)."""
    if host.euid != 0:
        raise HostFixError(
            f"--fix writes kernel settings ({', '.join(w.path for w in writes)}), which only root may "
            f"change, and this process runs as user id {host.euid}: run `sudo seekserve doctor --fix`, "
            f"or run the commands of the fix column yourself"
        )


def _write(host: Host, path: str, value: str) -> Applied:
    target = host.path(path)
    if not target.exists():
        return Applied(path, value, f"{path} does not exist on this kernel")
    try:
        target.write_text(value + "\n")
    except OSError as e:
        return Applied(path, value, _explain(e))
    return Applied(path, value)


def _persist(host: Host, writes: list[Write]) -> Applied:
    """Merge the sysctl keys into SYSCTL_CONF (written whole, then renamed into place)."""
    conf = host.path(SYSCTL_CONF)
    settings: dict[str, str] = {}
    if conf.is_file():
        for line in conf.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith(("#", ";")):
                settings[key.strip()] = value.strip()
    settings.update({w.sysctl: w.value for w in writes if w.sysctl})
    text = "# written by seekserve doctor --fix\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    try:
        conf.parent.mkdir(parents=True, exist_ok=True)
        partial = conf.with_name(conf.name + ".tmp")
        partial.write_text(text)
        os.replace(partial, conf)
    except OSError as e:
        return Applied(SYSCTL_CONF, text, _explain(e))
    return Applied(SYSCTL_CONF, text)


def _explain(error: OSError) -> str:
    if error.errno == errno.EROFS:
        return (
            "read-only file system: in a container, set it on the host, or start the container with "
            "docker run --sysctl KEY=VALUE (network keys) or --privileged"
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied ({error.strerror}): root inside a container may still lack CAP_SYS_ADMIN"
    if error.errno == errno.EINVAL:
        return "the kernel refused the value (EINVAL): the module it needs may be missing"
    return str(error)
