"""The gateway process's memory stays flat over thousands of streamed requests (a short soak).

`python -m seekserve gateway --upstream URL` runs as a real process in front of a fake engine
served by the test's event loop; 6,000 streamed completions go through it, 16 at a time. Its
resident memory (VmRSS) after a 2,000-request warm-up and at the end may differ by under 5 %:
a per-request leak of even 1 KiB would add ~4 MiB, about 8 % of its ~50 MiB. The full-size run
(100,000 requests) is `benchmarks/gateway_soak.py`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

import seekserve
from gateway.fake_upstream import FakeEngine, running
from seekserve.bench.servers import free_port

NUM_REQUESTS = 6_000
WARMUP = 2_000
CONCURRENCY = 16
MAX_GROWTH = 0.05

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads RSS from /proc")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no VmRSS line")


@contextmanager
def gateway_process(upstream: str, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`seekserve gateway --upstream` from this source tree; stopped by its pid on exit."""
    src = str(Path(seekserve.__file__).resolve().parents[1])
    argv = [sys.executable, "-m", "seekserve", "gateway", "--upstream", upstream]
    argv += ["--port", str(port), "--log-level", "warning"]
    with log.open("wb") as err:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the JSON access log
            stderr=err,
            env={**os.environ, "PYTHONPATH": src},
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_healthy(client: aiohttp.ClientSession, url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert process.poll() is None, f"the gateway exited with code {process.returncode}"
        try:
            async with client.get(url + "/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"the gateway at {url} was not healthy within 15 s")


async def streamed(client: aiohttp.ClientSession, url: str, count: int, outcomes: Counter[str]) -> None:
    """`count` streamed completions, CONCURRENCY at a time; each counted as ok or by what went wrong."""
    body = {"model": "fake", "prompt": "soak test prompt", "max_tokens": 4, "stream": True}
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with client.post(url + "/v1/completions", json=body) as response:
                data = await response.read()
            ok = response.status == 200 and data.endswith(b"data: [DONE]\n\n") and data.count(b"data:") == 5
            outcomes["ok" if ok else f"{response.status}: {data[-200:]!r}"] += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


@pytest.mark.slow
def test_gateway_rss_stays_flat_over_6000_streamed_requests(tmp_path: Path) -> None:
    async def main() -> tuple[int, int, Counter[str]]:
        engine = FakeEngine("a")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        outcomes: Counter[str] = Counter()
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with running(engine), aiohttp.ClientSession(connector=connector) as client:
            with gateway_process(engine.url, port, tmp_path / "gateway.log") as process:
                await wait_healthy(client, url, process)
                await streamed(client, url, WARMUP, outcomes)
                after_warmup = rss_kib(process.pid)
                await streamed(client, url, NUM_REQUESTS - WARMUP, outcomes)
                at_end = rss_kib(process.pid)
        return after_warmup, at_end, outcomes

    after_warmup, at_end, outcomes = asyncio.run(main())
    print(f"\ngateway RSS {after_warmup} KiB after {WARMUP} requests, {at_end} KiB after {NUM_REQUESTS}")
    assert outcomes == {"ok": NUM_REQUESTS}
    assert at_end < after_warmup * (1 + MAX_GROWTH), (after_warmup, at_end)
