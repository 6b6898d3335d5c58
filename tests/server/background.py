"""aiohttp apps (the search fakes) served from an event loop in a thread of their own, for tests of a
server that runs in another thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager

from aiohttp import web

from search.web import serving


@contextmanager
def background(*apps: web.Application) -> Iterator[list[int]]:
    """Serve each app on a free loopback port until the block ends; yields their ports in order."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ports: list[int] = []
    started = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            async with AsyncExitStack() as stack:
                for app in apps:
                    ports.append(await stack.enter_async_context(serving(app)))
                started.set()
                await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            started.set()
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    if failure:
        raise failure[0]
    try:
        yield ports
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
