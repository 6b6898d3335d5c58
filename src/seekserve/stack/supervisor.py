"""`Stack`: start Redis, the engines, the gateway and Prometheus on one machine; stop them all.

    start(): redis-server ─ engines (all at once) ─ wait /health of each ─ gateway ─ wait its /health
             ─ prometheus ─ wait /-/ready ─ write RUN_DIR/stack.json (names, pids, URLs, logs)
    wait():  until SIGINT/SIGTERM, or until a process exits by itself (then the others are stopped
             too and its log's tail is reported)
    stop():  SIGTERM to each, newest first; SIGKILL to one still running STOP_TIMEOUT_S later

On Linux every child is also started with PR_SET_PDEATHSIG, so the kernel sends it SIGTERM when the
supervisor dies without cleaning up (SIGKILL, a crash): nothing outlives `seekserve stack up`.
"""

from __future__ import annotations

import ctypes
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

from seekserve.errors import SeekserveError
from seekserve.stack.config import StackConfig, Switch

__all__ = ["Child", "Stack", "StackError"]

log = logging.getLogger("seekserve.stack")
STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1


class StackError(SeekserveError):
    """A process of the stack could not start, or died."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    """Its root URL (http://host:port), or redis://host:port."""
    health: str | None
    """The URL that answers 200 once it is ready; None: ready once its port accepts connections."""
    log_path: Path


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.run_dir = config.run_dir
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self._logs: list[IO[bytes]] = []

    def _port(self, configured: int, offset: int = 0) -> int:
        return configured + offset if configured else _free_port(self.config.host)

    def _spawn(self, name: str, argv: list[str], url: str, health: str | None) -> Child:
        log_path = self.run_dir / f"{name}.log"
        out = log_path.open("wb")
        self._logs.append(out)
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        child = Child(name, process, url, health, log_path)
        self.children.append(child)
        log.info("started %s (pid %d): %s", name, process.pid, " ".join(argv))
        return child

    def _wait_ready(self, children: list[Child]) -> None:
        deadline = time.monotonic() + self.config.ready_timeout_s
        pending = list(children)
        while pending:
            for child in list(pending):
                self._check_alive(child)
                host, _, port = child.url.rsplit("/", 1)[-1].rpartition(":")
                if _answers(child.health) if child.health else _listens(host, int(port)):
                    pending.remove(child)
            if self.stopping.is_set():
                raise StackError("stopped while starting")
            if pending and time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise StackError(
                    f"{names} not ready within {self.config.ready_timeout_s:g} s: see {pending[0].log_path} "
                    "(a first start may download or compile; raise ready_timeout_s)"
                )
            time.sleep(0.1)

    def _check_alive(self, child: Child) -> None:
        code = child.process.poll()
        if code is not None:
            tail = child.log_path.read_text(errors="replace")[-2000:]
            raise StackError(f"{child.name} exited with code {code}; the end of {child.log_path}:\n{tail}")

    def _binary(self, name: str, wanted: Switch) -> str | None:
        if wanted is Switch.OFF:
            return None
        path = shutil.which(name)
        if path is None and wanted is Switch.ON:
            raise StackError(
                f"{name} is not on PATH: install it (Debian: apt-get install {name}) or set it off"
            )
        if path is None:
            log.warning("%s is not installed: starting without it", name)
        return path

    def start(self) -> None:
        """Start every process and wait until each is ready; on any failure stop those started."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            redis = self._start_redis()
            engines = self._start_engines()
            self._wait_ready(engines)
            gateway = self._start_gateway(engines, redis)
            self._wait_ready([gateway])
            prometheus = self._start_prometheus(engines, gateway)
            if prometheus is not None:
                self._wait_ready([prometheus])
        except BaseException:
            self.stop()
            raise
        self._write_state()

    def _start_redis(self) -> Child | None:
        binary = self._binary("redis-server", self.config.redis)
        if binary is None:
            return None
        host, port = self.config.host, self._port(self.config.redis_port)
        argv = [binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no"]
        child = self._spawn("redis", argv, f"redis://{host}:{port}", None)
        self._wait_ready([child])
        return child

    def _start_engines(self) -> list[Child]:
        config, engines = self.config, []
        for i in range(config.num_engines):
            port = self._port(config.engine_port, i)
            argv = [sys.executable, "-m", "seekserve", "serve", "--host", config.host, "--port", str(port)]
            if config.model is not None:
                argv += ["--model", config.model]
            if config.served_model_name is not None:
                argv += ["--served-model-name", config.served_model_name]
            url = f"http://{config.host}:{port}"
            engines.append(self._spawn(f"engine{i}", [*argv, *config.engine_args], url, f"{url}/health"))
        return engines

    def _start_gateway(self, engines: list[Child], redis: Child | None) -> Child:
        config = self.config
        port = self._port(config.gateway_port)
        backends = [{"name": e.name, "url": f"{e.url}/v1", "engine": "seekserve"} for e in engines]
        gateway: dict[str, object] = {"listen": {"host": config.host, "port": port}, "backends": backends}
        if redis is not None:
            gateway["cache"] = {"backend": "redis", "url": f"{redis.url}/0"}
            gateway["limits"] = {"url": f"{redis.url}/0"}
        path = self.run_dir / "gateway.yaml"
        path.write_text(yaml.safe_dump(gateway, sort_keys=False))
        argv = [sys.executable, "-m", "seekserve", "gateway", "--config", str(path)]
        url = f"http://{config.host}:{port}"
        return self._spawn("gateway", argv, url, f"{url}/health")

    def _start_prometheus(self, engines: list[Child], gateway: Child) -> Child | None:
        binary = self._binary("prometheus", self.config.prometheus)
        if binary is None:
            return None
        config, port = self.config, self._port(self.config.prometheus_port)
        interval = f"{int(config.scrape_interval_s * 1000)}ms"
        rules = [str(p) for p in config.rule_files]
        targets = {"seekserve": engines, "seekserve-gateway": [gateway]}
        scrape = [
            {"job_name": job, "static_configs": [{"targets": [c.url.removeprefix("http://") for c in found]}]}
            for job, found in targets.items()
        ]
        settings = {"scrape_interval": interval, "evaluation_interval": interval}
        path = self.run_dir / "prometheus.yml"
        path.write_text(yaml.safe_dump({"global": settings, "rule_files": rules, "scrape_configs": scrape}))
        argv = [binary, f"--config.file={path}", f"--storage.tsdb.path={self.run_dir / 'prometheus-data'}"]
        argv += [f"--web.listen-address={config.host}:{port}", "--log.level=warn"]
        url = f"http://{config.host}:{port}"
        return self._spawn("prometheus", argv, url, f"{url}/-/ready")

    def _write_state(self) -> None:
        state = [
            {"name": c.name, "pid": c.process.pid, "url": c.url, "log": str(c.log_path)}
            for c in self.children
        ]
        (self.run_dir / "stack.json").write_text(json.dumps({"processes": state}, indent=2) + "\n")

    def wait(self) -> None:
        """Block until stop is asked for (the event) or a process exits by itself (StackError)."""
        while not self.stopping.wait(0.2):
            for child in self.children:
                self._check_alive(child)

    def stop(self) -> None:
        """SIGTERM every process still running, newest first; SIGKILL those that outlive the wait."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in reversed(self.children):
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM: killing it", child.name, child.process.pid)
                child.process.kill()
                child.process.wait()
        for out in self._logs:
            out.close()
        self._logs.clear()
