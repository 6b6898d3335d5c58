"""One client request through the gateway: pick a backend, retry, fall back, relay, continue.

    for model in [requested, *fallback chain]:
        for attempt in 1..retry.attempts:            backoff with full jitter, within the retry budget
            backend = router.choose(available backends of model, untried first)
            send; wait for the headers (and, streaming, the first event)
            ok → relay to the client          a broken stream → stream.py continues it elsewhere
            retryable failure → next attempt  a client error (4xx) → passed on as is
        every backend open or unhealthy → next model at once; all saturated → next model, or the
        admission queue when the chain is at its end

Nothing is sent to the client before the first upstream event, so every failure up to then is
retried from scratch and an exhausted request gets a real HTTP status, not a cut stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from seekserve.gateway.admission import Shed
from seekserve.gateway.backends import Backend
from seekserve.gateway.config import EngineKind, KeyConfig
from seekserve.gateway.metrics import GatewayMetrics
from seekserve.gateway.retry import retry_after_s
from seekserve.gateway.routing import RouteKey, route_key
from seekserve.gateway.state import GatewayState
from seekserve.gateway.stream import StreamState, continuation_request, error_event, malformed
from seekserve.gateway.upstream import (
    StreamBroken,
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
    read_body,
    send,
    sse_events,
)

__all__ = ["Exhausted", "Opened", "Proxy", "RequestContext"]

_TOKEN_ID_ENGINES = (EngineKind.SEEKSERVE, EngineKind.VLLM)


class Exhausted(Exception):
    """No backend of any model in the chain could answer; `status` is what the client gets."""

    def __init__(self, message: str, status: int = 502, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass
class RequestContext:
    path: str
    """/chat/completions or /completions (relative to the backends' /v1)."""
    body: dict[str, Any]
    raw: bytes
    """The client's body as received; sent unchanged when the gateway adds nothing."""
    key: KeyConfig | None
    arrival: float = field(default_factory=time.monotonic)
    stream: bool = False
    route: RouteKey | None = None


@dataclass
class Opened:
    """A backend that answered: its whole body, or its first events and the iterator of the rest."""

    backend: Backend
    model: str
    first: bytes
    """The whole body (not streaming)."""
    first_events: list[bytes]
    """The first batch of events (streaming)."""
    events: AsyncIterator[list[bytes]] | None
    ttft_s: float
    path: str = ""
    """The upstream path of a continuation (/completions for a chat continued on token ids)."""


class Proxy:
    def __init__(self, state: GatewayState, metrics: GatewayMetrics) -> None:
        self.state = state
        self.metrics = metrics

    async def open(self, ctx: RequestContext) -> Opened:
        """A backend's answer to `ctx`, trying the fallback chain; raises Exhausted or UpstreamStatus
        (a non-retryable 4xx the client should see as is)."""
        state = self.state
        state.budget.record_request()
        model = ctx.body["model"]
        chain = [model, *state.config.model(model).fallback]
        failures: list[Exhausted] = []
        for i, name in enumerate(chain):
            if i:
                self.metrics.fallback(model, name)
            try:
                return await self._open_model(ctx, name, last_in_chain=i == len(chain) - 1)
            except Exhausted as exc:
                failures.append(exc)
        last = failures[-1]
        if len(failures) == 1:
            raise last
        # the client asked for `model`: say why it and each fallback failed, not only the last one
        message = "; then ".join(str(f) for f in failures)
        raise Exhausted(message, last.status, last.retry_after_s)

    async def _open_model(self, ctx: RequestContext, model: str, last_in_chain: bool) -> Opened:
        state = self.state
        if not state.pool.serving(model):
            raise Exhausted(f"model {model!r} is not served by any backend", status=404)
        tried: set[str] = set()
        failure: UpstreamError | None = None
        failed_on: str | None = None
        for attempt in range(state.retry.attempts):
            if attempt and not await self._backoff(attempt, failure):
                break
            backend = await self._pick(ctx, model, tried, last_in_chain)
            if backend is None:
                break
            if failed_on is not None:  # a retry goes out: counted against the backend that failed
                self.metrics.retry(model, failed_on, _reason(failure))
            try:  # no await between the pick and _try's in_flight += 1: the slot is taken at once
                return await self._try(ctx, backend, model)
            except UpstreamStatus as exc:
                if not exc.retryable:
                    raise
                failure = exc
            except UpstreamError as exc:
                failure = exc
            tried.add(backend.name)
            failed_on = backend.name
        detail = (
            f": last error {failure}"
            if failure
            else ": no backend available (each is unhealthy, saturated or has its circuit open)"
        )
        if isinstance(failure, UpstreamStatus):
            status, retry_after = failure.status, retry_after_s(failure.retry_after)
        elif failure is None:  # nothing was sent: the gateway itself holds the model's backends back
            status, retry_after = 503, self._available_in_s(model)
        else:
            status, retry_after = 502, None
        raise Exhausted(f"model {model!r} could not be served{detail}", status, retry_after)

    def _available_in_s(self, model: str) -> float:
        """When a backend of `model` may take requests again: the first open circuit's cooldown end,
        else (every backend unhealthy) the next round of health checks; at least a second."""
        state = self.state
        cooldowns = [b.breaker.cooldown_remaining_s() for b in state.pool.serving(model)]
        waits = [s for s in cooldowns if s > 0] or [state.config.health.interval_s]
        return max(1.0, min(waits))

    async def _backoff(self, attempt: int, failure: UpstreamError | None) -> bool:
        """Wait before retry `attempt`, if the retry budget allows one. A backend's Retry-After holds
        that backend's circuit open (see `_try`) rather than delaying the retry, which goes elsewhere."""
        state = self.state
        if not state.budget.try_retry():
            return False
        await asyncio.sleep(state.retry.backoff_s(attempt - 1))
        return True

    async def _pick(
        self, ctx: RequestContext, model: str, tried: set[str], last_in_chain: bool
    ) -> Backend | None:
        """An available backend of `model`, untried ones first; waits in the admission queue when every
        backend is saturated and there is no fallback left; None when none can take the request."""
        state = self.state
        refused: set[str] = set()  # breakers that said no during this pick
        kind = state.config.model(model).routing
        route = self._route(ctx, model)
        while True:
            candidates = state.pool.candidates(model, frozenset(tried | refused)) or state.pool.candidates(
                model, frozenset(refused)
            )
            backend = state.router.choose(candidates, route, kind)
            if backend is not None:
                if backend.breaker.allow():
                    return backend
                refused.add(backend.name)
                continue
            serving = state.pool.serving(model)
            saturated = [b for b in serving if b.healthy and b.breaker.may_send() and b.saturated]
            if not saturated or not last_in_chain:
                return None
            priority = ctx.key.priority if ctx.key else 1
            try:
                await state.admission.wait(priority, lambda: bool(state.pool.candidates(model)))
            except Shed as exc:
                self.metrics.shed(priority)
                raise Exhausted(
                    f"every backend of {model!r} is busy: {exc}", 429, exc.retry_after_s
                ) from None

    async def _try(self, ctx: RequestContext, backend: Backend, model: str) -> Opened:
        state = self.state
        body = _upstream_body(ctx, backend, model)
        backend.in_flight += 1
        try:
            response = await send(state.session, backend, ctx.path, body, state.config.timeouts)
            if not ctx.stream:
                data = await read_body(response, backend)
                ttft = time.monotonic() - ctx.arrival
                opened = Opened(backend, model, data, [], None, ttft)
            else:
                events = sse_events(response, backend, state.config.timeouts)
                try:
                    first = await anext(events)
                except StopAsyncIteration:
                    raise StreamBroken(backend.name, "stream ended before its first event") from None
                except StreamBroken as exc:
                    raise UpstreamTimeout(backend.name, exc.detail) from None
                ttft = time.monotonic() - ctx.arrival
                opened = Opened(backend, model, b"", first, events, ttft)
        except UpstreamStatus as exc:
            self.release(backend, failed=exc.retryable or exc.status >= 500)
            if exc.status in (429, 503) and exc.retry_after:
                hold = retry_after_s(exc.retry_after)
                if hold:
                    backend.breaker.hold(hold)
            raise
        except UpstreamError:
            self.release(backend, failed=True)
            raise
        except asyncio.CancelledError:  # the client left: nothing learnt about the backend
            self.release(backend, failed=None)
            raise
        state.router.record(self._route(ctx, model), backend, state.config.model(model).routing)
        if ctx.stream:
            # The backend answered: that closes a half-open circuit now, not when the stream ends.
            backend.breaker.record_success()
            self.metrics.first_token(model, backend.name, opened.ttft_s)
        else:
            self.release(backend, failed=False)
        return opened

    def _route(self, ctx: RequestContext, model: str) -> RouteKey:
        """The routing key of `ctx` for `model` (a fallback model keys its own affinity maps)."""
        if ctx.route is None:
            ctx.route = route_key(ctx.body, model, self.state.config.prefix_chars)
        route = ctx.route
        return route if route.model == model else RouteKey(model, route.prefix, route.user)

    def release(self, backend: Backend, failed: bool | None) -> None:
        """The request no longer occupies `backend`; tell its breaker how it went (None: nothing to
        tell, the outcome was reported already or is unknown) and wake the queue."""
        backend.in_flight -= 1
        if failed:
            backend.breaker.record_failure()
        elif failed is not None:
            backend.breaker.record_success()
        self.state.admission.notify()

    async def continue_stream(
        self, ctx: RequestContext, stream: StreamState, model: str, exclude: set[str]
    ) -> Opened:
        """Open a continuation of a broken stream on another backend of `model` (never one in `exclude`)."""
        state = self.state
        body = ctx.body if ctx.body.get("model") == model else {**ctx.body, "model": model}
        failure: UpstreamError | None = None
        route = self._route(ctx, model)
        for _ in range(state.retry.attempts):
            candidates = state.pool.candidates(model, frozenset(exclude))
            backend = state.router.choose(candidates, route, state.config.model(model).routing)
            if backend is None:
                break
            built = continuation_request(stream, body, backend.engine)
            if built is None or not backend.breaker.allow():
                exclude.add(backend.name)
                continue
            path, new = built
            sub = RequestContext(path, new, json.dumps(new).encode(), ctx.key, stream=True, route=route)
            stream.mark_continued()
            try:
                opened = await self._try(sub, backend, model)
            except UpstreamError as exc:
                failure = exc
                exclude.add(backend.name)
                continue
            opened.path = path
            return opened
        raise Exhausted(f"no backend could continue the stream: {failure or 'none of this model can'}")

    async def relay(self, ctx: RequestContext, opened: Opened, stream: StreamState) -> AsyncIterator[bytes]:
        """The client's SSE bytes: `opened`'s events, rewritten (stream.py), continued on another backend
        when it breaks, ended by `[DONE]` or, when nothing can continue it, an error event."""
        current: Opened | None = opened
        exclude = {opened.backend.name}
        model = opened.model
        try:
            while current is not None:
                from_completions = current.path == "/completions"
                try:
                    async for data in self._events(current, stream, from_completions):
                        yield data
                except StreamBroken as exc:
                    failed, current = current, None
                    self.release(failed.backend, failed=True)
                    exclude.add(failed.backend.name)
                    if stream.finished:  # every choice had its finish_reason: only [DONE] was missing
                        usage = stream.missing_usage(ctx.body)  # and the usage chunk, when asked for
                        if usage is not None:
                            yield b"data: " + json.dumps(usage).encode() + b"\n\n"
                        yield b"data: [DONE]\n\n"
                        return
                    try:
                        current = await self.continue_stream(ctx, stream, model, exclude)
                    except Exhausted as gone:
                        self.metrics.continued(model, "failed")
                        yield error_event(f"the stream broke ({exc}) and {gone}")
                        return
                    self.metrics.continued(model, "continued")
                    continue
                held, current = current, None
                self.release(held.backend, failed=None)  # its success was reported at the first event
                yield b"data: [DONE]\n\n"
        finally:
            if current is not None:  # the client went away mid-stream
                if current.events is not None:
                    await current.events.aclose()  # type: ignore[attr-defined]
                self.release(current.backend, failed=None)

    async def _events(
        self, opened: Opened, stream: StreamState, from_completions: bool
    ) -> AsyncIterator[bytes]:
        assert opened.events is not None, "a streaming Opened has its event iterator"
        batch = opened.first_events
        while True:
            out = []
            broken: StreamBroken | None = None
            for payload in batch:
                try:
                    chunk = json.loads(payload)
                except (ValueError, RecursionError):
                    broken = StreamBroken(opened.backend.name, f"event is not JSON: {payload[:80]!r}")
                    break
                problem = malformed(chunk)
                if problem is not None:
                    broken = StreamBroken(opened.backend.name, f"event is not a completion chunk: {problem}")
                    break
                if "error" in chunk and not chunk.get("choices"):
                    broken = StreamBroken(opened.backend.name, f"error event: {str(chunk['error'])[:200]}")
                    break
                out.append(b"data: " + json.dumps(stream.rewrite(chunk, from_completions)).encode() + b"\n\n")
            if out:
                yield b"".join(out)  # what the state recorded is what the client gets, even before a break
            if broken is not None:
                raise broken
            try:
                batch = await anext(opened.events)
            except StopAsyncIteration:
                return


def _upstream_body(ctx: RequestContext, backend: Backend, model: str) -> bytes:
    """The body for `backend`: the client's bytes when nothing changes, else re-encoded with the served
    model name (fallback), token ids asked for (streams on seekserve and vLLM) and gateway fields removed."""
    body = ctx.body
    wants_ids = ctx.stream and backend.engine in _TOKEN_ID_ENGINES and not body.get("return_token_ids")
    if body.get("model") == model and not wants_ids and "cache" not in body:
        return ctx.raw
    new = {k: v for k, v in body.items() if k != "cache"}
    new["model"] = model
    if wants_ids:
        new["return_token_ids"] = True
    return json.dumps(new).encode()


def _reason(failure: UpstreamError | None) -> str:
    if isinstance(failure, UpstreamStatus):
        return str(failure.status)
    if isinstance(failure, UpstreamTimeout):
        return "timeout"
    if isinstance(failure, UpstreamUnreachable):
        return "unreachable"
    return "error"
