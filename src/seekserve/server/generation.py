"""The engine requests behind one HTTP request, read as one stream and always cleaned up.

A completions request may carry a batch of prompts; each becomes one engine request (with its
`n` choices). Each engine stream is drained by a task of its own into one queue, so the handler
reads a single stream of `(prompt_index, RequestOutput)`. `aclose()` cancels those tasks; a task
cancelled inside the engine stream aborts its request, so the engine frees its KV blocks before
its next step. Handlers call `aclose()` however they end: finished, failed, timed out, or left
by a client that disconnected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from starlette.requests import Request

from seekserve.engine.async_engine import AsyncEngine
from seekserve.engine.outputs import RequestOutput
from seekserve.engine.sampling_params import SamplingParams
from seekserve.errors import RequestAbortedError, RequestTimeoutError
from seekserve.metrics import RequestTracker

__all__ = ["Generation", "run_unless_disconnected"]

T = TypeVar("T")

_Item = tuple[int, RequestOutput] | BaseException


class Generation:
    """Engine requests for a list of prompts, merged into one stream of outputs."""

    def __init__(
        self,
        engine: AsyncEngine,
        request_id: str,
        timeout_s: float | None,
        tracker: RequestTracker | None = None,
    ) -> None:
        self.engine = engine
        self.request_id = request_id
        self.timeout_s = timeout_s
        self.tracker = tracker
        loop = asyncio.get_running_loop()
        self._deadline = None if timeout_s is None else loop.time() + timeout_s
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._latest: dict[int, RequestOutput] = {}

    @classmethod
    async def start(
        cls,
        engine: AsyncEngine,
        request_id: str,
        prompts: list[list[int]],
        params: SamplingParams,
        arrival_time: float,
        timeout_s: float | None,
        tracker: RequestTracker | None = None,
    ) -> Generation:
        """Queue every prompt; raises the first prompt's error (nothing stays queued then).

        `tracker`, where metrics are on, sees every output as it is read.
        """
        gen = cls(engine, request_id, timeout_s, tracker)
        try:
            for index, prompt in enumerate(prompts):
                rid = request_id if len(prompts) == 1 else f"{request_id}-{index}"
                await gen._add(index, rid, prompt, params, arrival_time)
        except BaseException:
            await gen.aclose()
            raise
        return gen

    async def _add(
        self, index: int, rid: str, prompt: list[int], params: SamplingParams, arrival_time: float
    ) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.create_task(self._pump(index, rid, prompt, params, arrival_time, ready)))
        await ready

    async def _pump(
        self,
        index: int,
        rid: str,
        prompt: list[int],
        params: SamplingParams,
        arrival_time: float,
        ready: asyncio.Future[None],
    ) -> None:
        try:
            stream = await self.engine.add_request(prompt, params, rid, arrival_time)
        except Exception as e:
            if not ready.done():
                ready.set_exception(e)
            return
        if not ready.done():
            ready.set_result(None)
        # From here on the stream is being iterated, so cancelling this task aborts the request.
        try:
            async for out in stream:
                self._queue.put_nowait((index, out))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the engine died, or a bug: the reader must hear of it
            self._queue.put_nowait(e)

    @property
    def num_prompts(self) -> int:
        return len(self._tasks)

    async def outputs(self) -> AsyncIterator[tuple[int, RequestOutput]]:
        """(prompt index, output) as the engine produces them, until every prompt has finished.

        Raises RequestTimeoutError past the deadline, or the engine's error if it died.
        """
        num_open = len(self._tasks)
        while num_open:
            item = await self._next()
            if isinstance(item, BaseException):
                raise item
            index, out = item
            self._latest[index] = out
            if self.tracker is not None:
                self.tracker.observe(index, out)
            num_open -= out.finished
            yield item

    @property
    def latest(self) -> list[RequestOutput]:
        """The last output read of each prompt (final ones once all have finished), in prompt order."""
        return [self._latest[i] for i in sorted(self._latest)]

    async def final_outputs(self) -> list[RequestOutput]:
        """Each prompt's finished output, in prompt order."""
        async for _ in self.outputs():
            pass
        return self.latest

    async def _next(self) -> _Item:
        if self._deadline is None:
            return await self._queue.get()
        try:
            async with asyncio.timeout_at(self._deadline):
                return await self._queue.get()
        except TimeoutError:
            assert self.timeout_s is not None, "a deadline implies a timeout"
            raise RequestTimeoutError(self.timeout_s) from None

    async def aclose(self) -> None:
        """Abort whatever has not finished and wait until the engine streams are closed."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def run_unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; if the client disconnects first, cancel it and raise RequestAbortedError."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise RequestAbortedError("the client disconnected before the answer was ready")
    return task.result()


async def _wait_for_disconnect(request: Request) -> None:
    # The body has been read, so the next message the server delivers is the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
