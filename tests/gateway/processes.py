"""The gateway as a real process (`python -m seekserve gateway --config FILE`) in front of fake engines.

    engines_in_thread(*engines)        FakeEngines served by a thread with its own event loop, so a
                                       gateway process can reach them while the test blocks
    gateway_processes(configs, dir)    one gateway process per config, each on a free port, started
                                       together and stopped by pid (SIGTERM, then SIGKILL) on exit
    upstream_gateway(urls, dir)        one `seekserve gateway --upstream URL ... --port P` process

The processes import seekserve from the same source tree as the tests (PYTHONPATH), so a test of a
worktree runs that worktree's gateway.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import yaml

import seekserve
from gateway.fake_upstream import FakeEngine, running
from seekserve.bench.servers import free_port

__all__ = [
    "GatewayProcess",
    "engines_in_thread",
    "gateway_config",
    "gateway_processes",
    "post",
    "upstream_gateway",
]

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
_SRC = Path(seekserve.__file__).resolve().parents[1]


def gateway_config(backends: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    """A gateway YAML document (as a dict) with fast retries; `listen` is set by `gateway_processes`."""
    fast = {
        "retry": {"attempts": 3, "base_s": 0.001, "max_s": 0.01},
        "timeouts": {"inter_token_s": 5.0, "first_byte_s": 5.0},
    }
    return {**fast, "backends": backends, **sections}


@contextmanager
def engines_in_thread(*engines: FakeEngine) -> Iterator[tuple[FakeEngine, ...]]:
    """Serve `engines` on their ports from a daemon thread's event loop until the block ends.

    The test thread may read `engine.requests` and set `engine.faults` fields while they run (plain
    attribute reads and list appends; the GIL makes each one atomic)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    errors: list[BaseException] = []

    async def serve() -> None:
        try:
            async with running(*engines):
                started.set()
                await stop.wait()
        except BaseException as exc:  # reported in the test thread, which is waiting on `started`
            errors.append(exc)
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        if not started.wait(READY_TIMEOUT_S):
            raise RuntimeError(f"fake engines did not start within {READY_TIMEOUT_S} s")
        if errors:
            raise RuntimeError(f"fake engines failed to start: {errors[0]!r}") from errors[0]
        yield engines
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    port: int
    config_path: Path | None
    """The --config file; None for a gateway started with --upstream."""
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """What the gateway wrote on stderr so far (its messages; the access log is on stdout)."""
        return self.stderr_path.read_text(errors="replace")

    def access_log(self) -> str:
        """What the gateway wrote on stdout so far: its access log, one JSON line per request."""
        return self.stderr_path.with_suffix(".out").read_text(errors="replace")

    def reload(self, config: dict[str, Any]) -> None:
        """Rewrite the config file (keeping the port) and send SIGHUP."""
        assert self.config_path is not None, "a gateway started with --upstream has no file to reload"
        _write(self.config_path, {**config, "listen": {"host": "127.0.0.1", "port": self.port}})
        os.kill(self.process.pid, signal.SIGHUP)


def _write(path: Path, config: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(path)  # atomic: a reload never reads half a file


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every process still running, then wait for each; SIGKILL one that outlives the wait."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(gateway: GatewayProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise RuntimeError(
                f"gateway exited with code {gateway.process.returncode} before listening:\n{gateway.log()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(
        f"gateway did not listen on {gateway.port} within {READY_TIMEOUT_S} s:\n{gateway.log()}"
    )


@contextmanager
def gateway_processes(
    configs: list[dict[str, Any]], directory: Path, log_level: str = "info", env: dict[str, str] | None = None
) -> Iterator[list[GatewayProcess]]:
    """Start one `seekserve gateway --config FILE` per config (all at once), wait until each listens;
    `env` adds environment variables (for `${NAME}` in the config)."""
    launches = []
    for i, config in enumerate(configs):
        port = free_port()
        path = directory / f"gateway{i}.yaml"
        _write(path, {**config, "listen": {"host": "127.0.0.1", "port": port}})
        launches.append((["--config", str(path), "--log-level", log_level], port, path))
    with _launched(launches, directory, env) as gateways:
        yield gateways


@contextmanager
def upstream_gateway(urls: list[str], directory: Path) -> Iterator[GatewayProcess]:
    """`seekserve gateway --upstream URL ... --port P`, no config file."""
    port = free_port()
    args = [arg for url in urls for arg in ("--upstream", url)] + ["--port", str(port)]
    with _launched([(args, port, None)], directory) as (gateway,):
        yield gateway


@contextmanager
def _launched(
    launches: list[tuple[list[str], int, Path | None]],
    directory: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[list[GatewayProcess]]:
    """Start `seekserve gateway ARGS` per (args, port, config path), logs in `directory`; stop by pid."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_SRC), os.environ.get("PYTHONPATH", "")])}
    env.update(extra_env or {})
    gateways: list[GatewayProcess] = []
    processes: list[subprocess.Popen[bytes]] = []
    with ExitStack() as logs:
        try:
            for i, (args, port, config_path) in enumerate(launches):
                stdout: IO[bytes] = logs.enter_context((directory / f"gateway{i}.out").open("wb"))
                stderr: IO[bytes] = logs.enter_context((directory / f"gateway{i}.err").open("wb"))
                argv = [sys.executable, "-m", "seekserve", "gateway", *args]
                processes.append(subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env))
                gateways.append(
                    GatewayProcess(processes[-1], port, config_path, directory / f"gateway{i}.err")
                )
            for gateway in gateways:
                _wait_listening(gateway)
            yield gateways
        finally:
            _stop(processes)


async def post(
    client: aiohttp.ClientSession, url: str, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, str], bytes]:
    async with client.post(url, json=body, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()
