"""A real Prometheus (Debian's `prometheus` package) on loopback, for tests: start, query, stop."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from factories import stop_process


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` now; raises on a PromQL error."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", f"{expr!r}: {body.get('errorType')}: {body.get('error')}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of `expr`, or None while it has none."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr!r} has {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def rules(self) -> list[dict[str, Any]]:
        groups = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def wait_for(self, expr: str, accept: Any, timeout_s: float = 20.0) -> float:
        """Poll `expr` until `accept(value)` holds; returns that value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.value(expr)
            if value is not None and accept(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr!r} is {value} after {timeout_s} s")
            time.sleep(0.1)


@contextmanager
def run_prometheus(
    tmp: Path, target: str, rule_files: Sequence[Path], interval: str = "500ms"
) -> Iterator[Prometheus]:
    """Prometheus scraping `target` (host:port) as job "seekserve" every `interval`, with `rule_files`."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(
            "no prometheus on PATH: install Debian's `prometheus` package (apt-get install prometheus)"
        )
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "seekserve", "static_configs": [{"targets": [target]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"prometheus did not start: {(tmp / 'prometheus.log').read_text()}")
            time.sleep(0.1)
        yield Prometheus(url)
    finally:
        stop_process(process, timeout_s=15)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
