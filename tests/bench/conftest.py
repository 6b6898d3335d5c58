from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from factories import subprocess_env
from seekserve.bench.fake_server import FakeServer, FakeServerConfig

T = TypeVar("T")


def _with_fake_server(test: Callable[[FakeServer], Awaitable[T]], **config: Any) -> T:
    """Run `test(server)` in a fresh event loop beside an in-process fake server."""

    async def main() -> T:
        server = FakeServer(FakeServerConfig(**config))
        await server.start()
        try:
            return await test(server)
        finally:
            await server.close()

    return asyncio.run(main())


@pytest.fixture
def with_fake_server() -> Callable[..., Any]:
    return _with_fake_server


@dataclass(frozen=True)
class Served:
    """An OpenAI-compatible server for end-to-end tests: where it is and the model it serves."""

    base_url: str
    model: str


def start_fake_server_process(*args: str) -> tuple[subprocess.Popen[str], str]:
    """The fake server in its own process (port picked by the OS); returns (process, base URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "seekserve.bench.fake_server", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    assert process.stdout is not None, "stdout is piped"
    line = process.stdout.readline()
    assert line.startswith("listening on "), f"the fake server did not start: {line!r}"
    return process, line.split()[-1]


# End-to-end tests run against every server named here. A live `seekserve serve` joins by adding a
# param whose branch starts it (tiny model from factories) and yields its base URL and model name.
@pytest.fixture(params=["fake"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    process, url = start_fake_server_process("--itl-s", "0.002", "--stall-at-token", "6", "--stall-s", "0.05")
    try:
        yield Served(url, "fake-model")
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(10)
    if process.stdout is not None:
        process.stdout.close()
