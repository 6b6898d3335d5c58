"""Real Redis and Memcached servers for gateway tests, started on free loopback ports.

The Debian packages `redis-server` and `memcached` provide the binaries (.ci/run installs them).
Each server runs in its own process, without persistence, and is stopped by its pid.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from seekserve.bench.servers import free_port

__all__ = ["memcached_server", "redis_server"]

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


@contextmanager
def _server(binary: str, argv: list[str], port: int) -> Iterator[None]:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed: apt-get install {binary}")
    process = subprocess.Popen([path, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, process, binary)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def redis_server() -> Iterator[str]:
    """A fresh redis-server; yields its URL, redis://127.0.0.1:PORT/0."""
    port = free_port()
    argv = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with _server("redis-server", argv, port):
        yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def memcached_server() -> Iterator[str]:
    """A fresh memcached (64 MB); yields its URL, memcached://127.0.0.1:PORT."""
    port = free_port()
    argv = ["-l", "127.0.0.1", "-p", str(port), "-m", "64", "-U", "0", "-u", "root"]
    with _server("memcached", argv, port):
        yield f"memcached://127.0.0.1:{port}"
