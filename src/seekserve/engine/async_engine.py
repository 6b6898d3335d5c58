"""AsyncEngine: the engine loop in its own thread, driven from an asyncio event loop.

    engine = AsyncEngine.from_options(model=DIR)
    engine.start()
    async for out in engine.generate("Hello", SamplingParams(max_tokens=8), "req-1"):
        print(out.outputs[0].delta_text, end="")

The event loop never waits on model compute. Prompts are tokenized and validated on the
caller's side, so a bad request fails at once without a round trip. Requests and aborts reach the
engine thread through a queue it drains before every step; each step's outputs come back in one
`call_soon_threadsafe` and are routed to per-request queues. A consumer slower than the engine
gets the accumulated deltas merged into one output. Leaving `generate` early (a client that
disconnects, a timeout, `break`) aborts the request, which frees its KV blocks before the next step.
If a step raises, the engine is dead: every stream gets `EngineDeadError` (those of requests still
being tokenized too), `is_healthy` is False and `wait_dead()` returns; later requests are refused.
Each time the engine falls idle it audits the KV cache's reference counts (`LLMEngine.audit`).

`max_queue_len` is enforced when a request is accepted, before its stream starts, and only there:
it counts the sequences waiting in the engine (`_num_waiting`: set from the scheduler after each
step, raised by the engine thread as it takes requests in) plus those queued for the engine thread
and not yet taken in (`num_pending`), both under `_lock`, so no update is lost and nothing taken
in is missed. The engine thread never refuses a request for the queue's length: one accepted is
served, not failed after its stream (an HTTP 200) has begun. Preemptions during a step may leave
more waiting than the limit until they run again; nothing new is accepted meanwhile.

`from_options`/`from_config` build the engine on the thread that will step it. On CPUs this is
worth a quarter of a step: libgomp (PyTorch's OpenMP) keeps a team of worker threads for every
thread that has run a parallel region, and once more of them exist than there are CPUs it stops
spin-waiting between regions, so every matrix product wakes its workers through the kernel. A
model loaded on one thread and stepped on another leaves the loader's idle team counted: a
one-stream Gemma 3 270M step took 17 ms instead of 13.8 on two cores. Wrapping an engine built
elsewhere (`AsyncEngine(engine)`) works, but keeps that cost when the building thread lives on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from seekserve.engine.config import EngineConfig
from seekserve.engine.info import EngineInfo
from seekserve.engine.llm_engine import EngineStats, LLMEngine
from seekserve.engine.outputs import RequestOutput
from seekserve.engine.sampling_params import SamplingParams
from seekserve.errors import EngineDeadError, EngineOverloadedError, InvalidRequestError
from seekserve.layers.cpu_kernels import kernel_status

__all__ = ["AsyncEngine", "EngineInfo", "EngineStats"]

log = logging.getLogger(__name__)

_IDLE_WAIT_S = 0.5


@dataclass(frozen=True)
class _Add:
    request_id: str
    prompt: str | None
    token_ids: list[int]
    params: SamplingParams
    arrival_time: float | None


@dataclass(frozen=True)
class _Abort:
    request_id: str


class AsyncEngine:
    """Thread-safe, asyncio-facing wrapper of an `LLMEngine`.

    Servers and the CLI use only the public methods and properties below (`info`, `encode`,
    `tokenizer`, `stats`, `add_request`/`generate`, `abort`, ...); this is the one module that
    reads the wrapped engine's attributes.
    """

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        """The wrapped engine, stepped by the engine thread only (tests reach in to inject faults)."""
        self._info = _describe(engine)
        self._commands: queue.SimpleQueue[_Add | _Abort | None] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._streams: dict[str, asyncio.Queue[RequestOutput | BaseException]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._go = threading.Event()
        self._started = False
        self._stopping = False
        self._dead: EngineDeadError | None = None
        self._died: asyncio.Future[EngineDeadError] | None = None
        """Resolved on the event loop once every stream has been sent the engine's death."""
        self._lock = threading.Lock()
        """Guards `_num_pending` and `_num_waiting`: the event loop and the engine thread both update them."""
        self._num_pending = 0
        self._num_waiting = 0
        self._ids = itertools.count()
        self.stats: EngineStats = engine.stats()
        """Snapshot of the engine's load, refreshed after every step."""

    @classmethod
    def from_options(cls, **options: Any) -> AsyncEngine:
        return cls.from_config(EngineConfig.from_options(**options))

    @classmethod
    def from_config(cls, config: EngineConfig) -> AsyncEngine:
        """Build the engine on a new thread, which then runs its loop once `start` is called."""
        built: queue.SimpleQueue[AsyncEngine | BaseException] = queue.SimpleQueue()

        def body() -> None:
            try:
                self = cls(LLMEngine(config))
            except BaseException as e:  # the caller re-raises it
                built.put(e)
                return
            self._thread = threading.current_thread()
            go, ref = self._go, weakref.ref(self)
            built.put(self)
            del self  # an engine dropped without being started must not live on in this thread
            while not go.wait(_IDLE_WAIT_S):
                if ref() is None:
                    return
            engine = ref()
            if engine is not None and not engine._stopping:
                engine._run()

        threading.Thread(target=body, name="seekserve-engine", daemon=True).start()
        result = built.get()
        if isinstance(result, BaseException):
            raise result
        return result

    @property
    def info(self) -> EngineInfo:
        """The model served and the engine's capacity (fixed once loaded)."""
        return self._info

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (a `tokenizers`/transformers tokenizer: `encode`, `decode`)."""
        return self.engine.tokenizer

    def encode(self, prompt: str) -> list[int]:
        """The prompt's token ids, as the engine would tokenize it. Blocks for long prompts:
        call it from a worker thread (`asyncio.to_thread`) on an event loop. Safe from any thread."""
        return self.engine.encode(prompt)

    @property
    def num_pending(self) -> int:
        """Sequences accepted by `add_request` that the engine thread has not taken in yet."""
        with self._lock:
            return self._num_pending

    @property
    def is_healthy(self) -> bool:
        return self._dead is None and self._started and self._thread is not None and self._thread.is_alive()

    @property
    def dead_error(self) -> EngineDeadError | None:
        return self._dead

    def start(self) -> None:
        """Start the engine thread; call from the event loop that will consume the outputs."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._died = self._loop.create_future()
        self._started = True
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="seekserve-engine", daemon=True)
            self._thread.start()
        else:  # built by from_config: its thread is waiting for this
            self._go.set()

    async def wait_dead(self) -> EngineDeadError:
        """Wait until the engine thread has died after an error (never returns while it is healthy);
        by then every stream of a request in flight has been sent the error."""
        if not self._started:
            self.start()
        assert self._died is not None, "start() creates the future"
        return await asyncio.shield(self._died)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        self._commands.put(None)
        self._wake.set()
        self._go.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    async def generate(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        request_id: str | None = None,
        arrival_time: float | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Submit a request and yield its outputs until it finishes.

        Raises InvalidRequestError or EngineOverloadedError before yielding anything when the
        request cannot be accepted, and EngineDeadError if the engine dies meanwhile.
        """
        stream = await self.add_request(prompt, params, request_id, arrival_time)
        async for out in stream:
            yield out

    async def add_request(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        request_id: str | None = None,
        arrival_time: float | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Validate and queue a request; returns the stream of its outputs (see `generate`)."""
        if self._dead is not None:
            raise self._dead
        if not self._started:
            self.start()
        request_id = request_id or f"req-{next(self._ids)}"
        if request_id in self._streams:
            raise InvalidRequestError(f"request id {request_id!r} is already in use", param="request_id")
        if isinstance(prompt, str):
            token_ids = await asyncio.to_thread(self.engine.encode, prompt)
        else:
            token_ids = list(prompt)
        self.engine.validate(token_ids, params)
        if self._dead is not None:
            # It died while the prompt was tokenized: its error went to the streams there were then.
            # From here to the registration below nothing awaits, so a death after this check is
            # routed (on this loop) after the stream exists.
            raise self._dead
        limit = self._info.max_queue_len
        with self._lock:
            waiting = self._num_waiting + self._num_pending
            if limit is not None and waiting + params.n > limit:
                raise EngineOverloadedError(waiting, limit)
            self._num_pending += params.n
        stream: asyncio.Queue[RequestOutput | BaseException] = asyncio.Queue()
        self._streams[request_id] = stream
        text = prompt if isinstance(prompt, str) else None
        self._commands.put(_Add(request_id, text, token_ids, params, arrival_time))
        self._wake.set()
        return self._consume(request_id, stream)

    async def _consume(
        self, request_id: str, stream: asyncio.Queue[RequestOutput | BaseException]
    ) -> AsyncIterator[RequestOutput]:
        finished = False
        try:
            while not finished:
                item = await stream.get()
                while not isinstance(item, BaseException) and not item.finished and not stream.empty():
                    nxt = stream.get_nowait()
                    item = nxt if isinstance(nxt, BaseException) else _merge(item, nxt)
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
        finally:
            self._streams.pop(request_id, None)
            if not finished:
                self.abort(request_id)

    def abort(self, request_id: str) -> None:
        """Abort a request; its blocks are freed before the engine's next step. Safe from any thread."""
        self._commands.put(_Abort(request_id))
        self._wake.set()

    def _run(self) -> None:
        busy = False
        try:
            while not self._stopping:
                self._drain_commands()
                if self.engine.has_unfinished_requests():
                    busy = True
                    outputs = self.engine.step()
                    self._refresh_stats()
                    if outputs:
                        self._publish(outputs)
                else:
                    if busy:  # just fell idle: every block must be back
                        self.engine.audit()
                        busy = False
                    self._refresh_stats()
                    self._wake.wait(_IDLE_WAIT_S)
                    self._wake.clear()
        except BaseException as e:  # the loop must report any failure to every waiting stream
            log.exception("engine loop died")
            self._dead = EngineDeadError(f"the engine stopped after an internal error: {e!r}")
            assert self._loop is not None, "engine thread started without an event loop"
            with contextlib.suppress(RuntimeError):  # the event loop has closed: no stream is left to tell
                self._loop.call_soon_threadsafe(self._announce_death, self._dead)

    def _refresh_stats(self) -> None:
        stats = self.engine.stats()
        with self._lock:
            self._num_waiting = stats.num_waiting
        self.stats = stats

    def _drain_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            if command is None:
                return
            if isinstance(command, _Abort):
                out = self.engine.abort(command.request_id)
                if out is not None:
                    self._publish([out])
                continue
            with self._lock:
                self._num_pending -= command.params.n
                self._num_waiting += command.params.n
            try:
                self.engine.add_request(
                    command.request_id,
                    command.token_ids,
                    command.params,
                    command.arrival_time,
                    prompt_text=command.prompt,
                    admitted=True,
                )
            except InvalidRequestError as e:
                with self._lock:
                    self._num_waiting -= command.params.n
                self._publish_error(e, command.request_id)

    def _publish(self, outputs: list[RequestOutput]) -> None:
        assert self._loop is not None, "engine thread started without an event loop"
        self._loop.call_soon_threadsafe(self._route, outputs)

    def _publish_error(self, error: BaseException, request_id: str | None = None) -> None:
        assert self._loop is not None, "engine thread started without an event loop"
        self._loop.call_soon_threadsafe(self._route_error, error, request_id)

    def _route(self, outputs: list[RequestOutput]) -> None:
        for out in outputs:
            stream = self._streams.get(out.request_id)
            if stream is not None:
                stream.put_nowait(out)

    def _announce_death(self, error: EngineDeadError) -> None:
        self._route_error(error, None)
        if self._died is not None and not self._died.done():
            self._died.set_result(error)

    def _route_error(self, error: BaseException, request_id: str | None) -> None:
        targets = [request_id] if request_id is not None else list(self._streams)
        for rid in targets:
            stream = self._streams.get(rid)
            if stream is not None:
                stream.put_nowait(error)


def _describe(engine: LLMEngine) -> EngineInfo:
    config = engine.config
    return EngineInfo(
        model_name=engine.model_name,
        model_path=engine.model_source.path,
        architectures=tuple(getattr(engine.hf_config, "architectures", None) or ()),
        dtype=str(engine.model.dtype).removeprefix("torch."),
        device=str(engine.device),
        cpu_kernels=str(kernel_status()) if engine.device.type == "cpu" else None,
        max_model_len=engine.max_model_len,
        uses_default_chat_template=engine.uses_default_chat_template,
        quantization=engine.quantization,
        weight_bytes=engine.weight_bytes,
        packed_copy_bytes=engine.packed_copy_bytes,
        kv_cache_tokens=engine.kv_cache_tokens,
        num_kv_blocks=engine.num_kv_blocks,
        block_size=config.cache.block_size,
        kv_bytes_per_token=engine.kv_bytes_per_token,
        max_num_seqs=config.scheduler.max_num_seqs,
        max_num_batched_tokens=engine.max_num_batched_tokens,
        max_queue_len=config.scheduler.max_queue_len,
    )


def _merge(older: RequestOutput, newer: RequestOutput) -> RequestOutput:
    """One output carrying both updates' deltas (the newer one's cumulative state)."""
    outputs = []
    for old, new in zip(older.outputs, newer.outputs, strict=True):
        outputs.append(
            replace(
                new,
                delta_text=old.delta_text + new.delta_text,
                delta_token_ids=old.delta_token_ids + new.delta_token_ids,
                delta_logprobs=old.delta_logprobs + new.delta_logprobs,
            )
        )
    return replace(newer, outputs=outputs)
