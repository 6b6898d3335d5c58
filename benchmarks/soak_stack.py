"""The processes a soak runs (benchmarks/soak.py): Redis, `seekserve serve` engines, `seekserve gateway`,
and what can be read from outside each of them (/proc, /metrics).

Every process is a child of the soak, started from this tree's src/ and stopped by its pid
(SIGTERM, then SIGKILL); stdout (the JSON access log) and stderr go to files in the log folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from common import REPO
from seekserve.bench.servers import free_port

MODEL = "soak"
"""The name the engines serve their model under."""
MAIN_KEY, LIMITED_KEY = "sk-soak-main", "sk-soak-limited"
LIMITED_RPM = 20


@dataclass(frozen=True)
class StackConfig:
    """What the soak starts; the defaults are the documented run (docs/reliability.md)."""

    model: str | None = None
    """--model of the engines; None: the default model."""
    num_engines: int = 2
    max_model_len: int = 1024
    num_kv_blocks: int = 160
    """160 blocks of 16 hold 2,560 tokens: four long prompts at once preempt."""
    max_num_seqs: int = 6
    max_queue_len: int = 6
    engine_args: tuple[str, ...] = ()
    redis: bool = True
    """Cache and rate limits in Redis (when redis-server is installed), else in the gateway."""
    log_dir: Path = Path("results/soak-logs")


@dataclass
class Child:
    """One child process: its role ("engine0", "gateway", "redis"), port, and log files."""

    name: str
    argv: list[str]
    port: int
    log_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.name}.out"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}.err"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.pid

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after 30 s; the exit status (None if it was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        return self.proc.returncode

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.stderr_path.read_text(errors="replace")[-3000:]
            sys.exit(f"{self.name} exited with code {self.proc.returncode}:\n{tail}")


@dataclass
class Stack:
    engines: list[Child]
    gateway: Child
    redis: Child | None
    config: StackConfig
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    @property
    def servers(self) -> list[Child]:
        """The seekserve processes: the engines and the gateway."""
        return [*self.engines, self.gateway]

    @property
    def url(self) -> str:
        return self.gateway.root


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _engine(index: int, config: StackConfig) -> Child:
    argv = [sys.executable, "-m", "seekserve", "serve", "--port"]
    port = free_port()
    argv += [str(port), "--served-model-name", MODEL, "--log-level", "warning", "--num-threads", "1"]
    argv += ["--max-model-len", str(config.max_model_len), "--num-kv-blocks", str(config.num_kv_blocks)]
    argv += ["--max-num-seqs", str(config.max_num_seqs), "--max-queue-len", str(config.max_queue_len)]
    if config.model is not None:
        argv += ["--model", config.model]
    return Child(f"engine{index}", [*argv, *config.engine_args], port, config.log_dir)


def gateway_config(engines: list[Child], redis_url: str | None, port: int) -> dict[str, Any]:
    """Least-loaded routing, a small admission queue, one key without limits and one with an rpm."""
    store: dict[str, Any] = (
        {"backend": "memory"} if redis_url is None else {"backend": "redis", "url": redis_url}
    )
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "backends": [
            {"name": e.name, "url": e.root + "/v1", "models": [MODEL], "max_concurrency": 16} for e in engines
        ],
        "health": {"interval_s": 2},
        "cache": {**store, "ttl_s": 600},
        "limits": {"url": redis_url},
        "queue": {"max_waiting": 8, "max_wait_s": 10},
        "keys": [
            {"name": "main", "key_sha256": sha256(MAIN_KEY)},
            {"name": "limited", "key_sha256": sha256(LIMITED_KEY), "rpm": LIMITED_RPM},
        ],
    }


def _wait_healthy(child: Child, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        child.check_alive()
        try:
            if httpx.get(child.root + "/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit(f"{child.name} was not healthy within {timeout_s:g} s: see {child.stderr_path}")


@contextmanager
def running_stack(config: StackConfig) -> Iterator[Stack]:
    """Start Redis (if wanted and installed), the engines (the first alone, so that a fresh home
    assembles the default model and builds the kernels once), then the gateway; stop all on exit."""
    config.log_dir.mkdir(parents=True, exist_ok=True)
    redis_bin = shutil.which("redis-server") if config.redis else None
    redis = None
    if redis_bin is not None:
        port = free_port()
        argv = [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        redis = Child("redis", argv, port, config.log_dir)
    engines = [_engine(i, config) for i in range(config.num_engines)]
    port = free_port()
    gateway_yaml = config.log_dir / "gateway.yaml"
    redis_url = None if redis is None else f"redis://127.0.0.1:{redis.port}/0"
    gateway_yaml.write_text(json.dumps(gateway_config(engines, redis_url, port), indent=2))  # JSON is YAML
    argv = [
        sys.executable,
        "-m",
        "seekserve",
        "gateway",
        "--config",
        str(gateway_yaml),
        "--log-level",
        "warning",
    ]
    gateway = Child("gateway", argv, port, config.log_dir)
    stack = Stack(engines, gateway, redis, config)
    with ExitStack() as stops:
        for child in [c for c in (redis, *engines, gateway) if c is not None]:
            stops.callback(lambda c=child: stack.exit_codes.__setitem__(c.name, c.stop()))
        if redis is not None:
            redis.start()
        engines[0].start()
        _wait_healthy(engines[0], 900)
        for engine in engines[1:]:
            engine.start()
        for engine in engines[1:]:
            _wait_healthy(engine, 900)
        gateway.start()
        _wait_healthy(gateway, 60)
        yield stack


def proc_sample(pid: int) -> dict[str, int]:
    """Resident memory (KiB), OS threads and open file descriptors of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    value = {
        line.split(":")[0]: line.split()[1] for line in status if line.startswith(("VmRSS:", "Threads:"))
    }
    return {
        "rss_kib": int(value["VmRSS"]),
        "threads": int(value["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def scrape(client: httpx.Client, child: Child) -> dict[str, float]:
    """The process's /metrics samples without labels other than model_name/backend, by name
    (labelled samples are keyed name{label=value,...} as exposed)."""
    text = client.get(child.root + "/metrics", timeout=10).text
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def engine_gauge(samples: dict[str, float], name: str) -> float:
    return samples.get(f'seekserve:{name}{{model_name="{MODEL}"}}', float("nan"))
