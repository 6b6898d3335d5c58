"""Real Redis and Memcached servers for gateway tests, started on free loopback ports.

The Debian packages `redis-server` and `memcached` provide the binaries (.ci/run installs them).
Each server runs in its own process, without persistence, and is stopped by its pid; a `Service`
can be stopped and started again on the same port (an outage and its end).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from seekserve.bench.servers import free_port

__all__ = ["Service", "memcached_server", "redis_server", "redis_service"]

_READY_TIMEOUT_S = 10.0


def _wait_listening(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} within {_READY_TIMEOUT_S} s")


class Service:
    """A server process on a fixed loopback port that can be stopped and started again on it."""

    def __init__(self, binary: str, argv: list[str], port: int) -> None:
        path = shutil.which(binary)
        if path is None:
            raise RuntimeError(f"{binary} is not installed: apt-get install {binary}")
        self.name = binary
        self.command = [path, *argv]
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is running"
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(self.port, self.process, self.name)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; waits until it has exited (its port is closed then)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def _running(service: Service) -> Iterator[Service]:
    try:
        service.start()
        yield service
    finally:
        service.stop()


def redis_service(port: int | None = None) -> Service:
    """A redis-server without persistence on `port` (a free one by default), not started yet."""
    port = port or free_port()
    argv = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return Service("redis-server", argv, port)


@contextmanager
def redis_server() -> Iterator[str]:
    """A fresh redis-server; yields its URL, redis://127.0.0.1:PORT/0."""
    with _running(redis_service()) as service:
        yield f"redis://127.0.0.1:{service.port}/0"


@contextmanager
def memcached_server() -> Iterator[str]:
    """A fresh memcached (64 MB); yields its URL, memcached://127.0.0.1:PORT."""
    port = free_port()
    argv = ["-l", "127.0.0.1", "-p", str(port), "-m", "64", "-U", "0", "-u", "root"]
    with _running(Service("memcached", argv, port)):
        yield f"memcached://127.0.0.1:{port}"
