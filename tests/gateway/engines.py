"""Real `seekserve serve` engines on the tiny random Llama, as child processes the tests can kill,
stop and start again on the same port.

The engines run without the CPU kernels (SEEKSERVE_CPU_KERNELS=0): the test session's fresh
SEEKSERVE_HOME would have each of them compile the library first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from factories import subprocess_env
from seekserve.bench.servers import free_port

__all__ = ["ENGINE_ARGS", "MODEL", "Engine", "running_engines", "start_engine", "stop", "wait_ready"]

MODEL = "tiny"
ENGINE_ARGS = (
    "--served-model-name", MODEL, "--dtype", "float32", "--max-model-len", "256",
    "--num-kv-blocks", "64", "--num-threads", "1", "--no-enable-metrics", "--log-level", "warning",
)  # fmt: skip


@dataclass
class Engine:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    argv: list[str] = field(default_factory=list)
    """The whole command line, to start it again on the same port."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def restart(self) -> None:
        """Start the same command again (the last process must have exited)."""
        assert not self.alive, "stop the engine before starting it again"
        self.proc = _spawn(self.argv, self.log)


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**subprocess_env(), "SEEKSERVE_CPU_KERNELS": "0"}
    with log.open("ab") as err:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)


def start_engine(model_dir: Path, log: Path, *extra: str) -> Engine:
    """`seekserve serve` on the model with ENGINE_ARGS and `extra` (later options win), on a free port."""
    port = free_port()
    argv = [
        sys.executable, "-m", "seekserve", "serve", "--model", str(model_dir), "--port", str(port),
        *ENGINE_ARGS, *extra,
    ]  # fmt: skip
    return Engine(_spawn(argv, log), port, log, argv)


def wait_ready(engine: Engine, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not engine.alive:
            raise AssertionError(f"engine exited with {engine.proc.returncode}: {engine.log.read_text()}")
        try:
            if httpx.get(f"{engine.root}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"engine on port {engine.port} not healthy within {timeout_s:g} s")


def stop(engine: Engine, sig: signal.Signals = signal.SIGKILL) -> None:
    """Send `sig` if it runs, and wait for it to exit."""
    if engine.alive:
        os.kill(engine.proc.pid, sig)
    engine.proc.wait(timeout=60)


@contextmanager
def running_engines(model_dir: Path, logs: Path, count: int, *extra: str) -> Iterator[list[Engine]]:
    """`count` engines started at once, healthy on entry, killed by pid on exit."""
    started = [start_engine(model_dir, logs / f"engine{i}.log", *extra) for i in range(count)]
    try:
        for engine in started:
            wait_ready(engine)
        yield started
    finally:
        for engine in started:
            stop(engine)
