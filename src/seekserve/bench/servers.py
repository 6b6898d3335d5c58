"""Server processes for comparisons: start from a command template, wait until ready, stop.

A template is a shell-like command with `{port}` and any other `{name}` the caller supplies
(`{python}` is this interpreter), e.g. "{python} -m seekserve serve --model {model} --port {port}".
A server is ready when GET /v1/models answers 200 with at least one model; that model's id is
the name requests use. Each server runs in its own process group, so stopping it stops its
children too (vLLM runs its engine in a child process).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from seekserve.bench.client import api_url
from seekserve.errors import BenchError, ConfigError

__all__ = ["ManagedServer", "ServerSpec", "free_port"]

_POLL_S = 0.5
_STOP_GRACE_S = 30.0
_LOG_TAIL_BYTES = 3000


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server."""

    name: str
    """Short name used in tables and log files."""

    command: str
    """Command template; {port} and {python} are filled in, other {names} from the caller's values."""

    ready_timeout_s: float = 300.0
    """Give up when /v1/models does not answer within this long."""

    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables."""

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"server name {self.name!r} is invalid: use letters, digits, - and _")
        if "{port}" not in self.command:
            raise ConfigError(f"the command of server {self.name!r} has no {{port}}: {self.command!r}")
        if self.ready_timeout_s <= 0:
            raise ConfigError(f"ready_timeout_s={self.ready_timeout_s} is invalid: it must be positive")

    def argv(self, port: int, values: Mapping[str, str]) -> list[str]:
        """The command line for `port`."""
        try:
            command = self.command.format(port=port, python=shlex.quote(sys.executable), **values)
        except KeyError as e:
            known = ", ".join(["port", "python", *values])
            raise ConfigError(f"server {self.name!r}: unknown placeholder {e} (known: {known})") from None
        return shlex.split(command)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ManagedServer:
    """One started server; use as a context manager or call `start` and `stop`."""

    def __init__(self, spec: ServerSpec, log_dir: Path, values: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.values = dict(values or {})
        self.log_dir = log_dir
        spec.argv(0, self.values)  # placeholders are checked before anything starts
        self.port = 0
        self.base_url = ""
        self.argv: list[str] = []
        self.log_path = log_dir / f"{spec.name}.log"
        self.model: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process on a free port and wait until it serves; raises BenchError when it exits
        or times out. A server may be started again after `stop` (on a new port, with a new log)."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.argv = self.spec.argv(self.port, self.values)
        self.log_path = self.log_dir / f"{self.spec.name}-{self.port}.log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.spec.env},
                start_new_session=True,
            )
        self.model = self._wait_ready()

    def _wait_ready(self) -> str:
        assert self._process is not None, "start() first"
        deadline = time.monotonic() + self.spec.ready_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BenchError(
                    f"server {self.spec.name!r} exited with code {self._process.returncode} before it was "
                    f"ready; command: {shlex.join(self.argv)}\n{self.log_tail()}"
                )
            model = self._models()
            if model is not None:
                return model
            time.sleep(_POLL_S)
        self.stop()
        raise BenchError(
            f"server {self.spec.name!r} was not ready within {self.spec.ready_timeout_s:g} s "
            f"(GET {api_url(self.base_url, '/models')}); see {self.log_path}\n{self.log_tail()}"
        )

    def _models(self) -> str | None:
        try:
            with urllib.request.urlopen(api_url(self.base_url, "/models"), timeout=5) as response:
                data = json.load(response).get("data") or []
        except (OSError, ValueError, AttributeError):
            return None  # not listening yet, or not ready to answer
        return str(data[0]["id"]) if data and isinstance(data[0], dict) and "id" in data[0] else None

    def log_tail(self) -> str:
        try:
            data = self.log_path.read_bytes()[-_LOG_TAIL_BYTES:]
        except OSError:
            return ""
        return data.decode("utf-8", errors="replace")

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after a grace period."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, _STOP_GRACE_S), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> ManagedServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
