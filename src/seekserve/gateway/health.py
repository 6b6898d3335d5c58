"""Active health checks: every `health.interval_s`, each backend is probed and its `Backend` updated.

Per backend and round, concurrently, each GET with `health.timeout_s` and the backend's API key:

    {root}/health     2xx: the check passes; 404 (no such route): passes if GET {url}/models answers 200
    {root}/metrics    Prometheus text → waiting, running, kv_usage (None when absent or unreadable)
    {url}/models      only when the config lists no models: the ids become `backend.models`

`root` is the server root and `url` the OpenAI base URL (…/v1). A backend leaves rotation after
`unhealthy_after` failed checks in a row (a refused connection and a timeout are failures) and
returns after one passed check. Network, HTTP and parse errors are logged, never raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Callable
from typing import NamedTuple

import aiohttp

from seekserve.gateway.backends import Backend, BackendPool
from seekserve.gateway.config import EngineKind, HealthConfig

__all__ = ["HealthChecker", "Load", "parse_load"]

log = logging.getLogger("seekserve.gateway")

_PROBE_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError)
"""What a probe may fail with: connection and protocol errors, timeouts, undecodable bodies."""

_WAITING = ("seekserve:num_requests_waiting", "vllm:num_requests_waiting", "sglang:num_queue_reqs")
_RUNNING = ("seekserve:num_requests_running", "vllm:num_requests_running", "sglang:num_running_reqs")
_KV_USAGE = (
    "seekserve:kv_cache_usage_perc",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",  # vLLM's name before 0.10; some versions expose both
    "sglang:token_usage",
)
# One sample line: the name, optional labels up to the line's last `}` (label values may hold spaces
# and braces, sample values never do), then the value; a timestamp after it is ignored.
_SAMPLE = re.compile(
    r"^(" + "|".join(re.escape(n) for n in (*_WAITING, *_RUNNING, *_KV_USAGE)) + r")"
    r"(?:\{[^\n]*\})?[ \t]+([^ \t\n]+)",
    re.MULTILINE,
)


class Load(NamedTuple):
    """A backend's load from one /metrics scrape; None where the engine exposes no such series."""

    waiting: float | None
    """Requests queued, summed over label sets (models, data-parallel ranks)."""
    running: float | None
    kv_usage: float | None
    """KV cache in use, 0..1, averaged over label sets."""


_NO_LOAD = Load(None, None, None)
_KNOWN_ENGINES = (EngineKind.SEEKSERVE, EngineKind.VLLM, EngineKind.SGLANG)


def parse_load(text: str) -> Load:
    """Read seekserve's, vLLM's or SGLang's load gauges from Prometheus text exposition.

    Lines other than samples of the known names (comments, other series) are skipped, and so are
    samples whose value is not a finite number. Where an engine exposes several names for one field
    (vLLM's old and new KV usage), the first in `_KV_USAGE` order that is present wins.
    """
    samples: dict[str, list[float]] = {}
    for match in _SAMPLE.finditer(text):
        try:
            value = float(match.group(2))
        except ValueError:
            continue
        if math.isfinite(value):
            samples.setdefault(match.group(1), []).append(value)
    if not samples:
        return _NO_LOAD
    waiting = _first(samples, _WAITING)
    running = _first(samples, _RUNNING)
    kv_usage = _first(samples, _KV_USAGE)
    return Load(
        waiting=None if waiting is None else math.fsum(waiting),
        running=None if running is None else math.fsum(running),
        kv_usage=None if kv_usage is None else math.fsum(kv_usage) / len(kv_usage),
    )


def _first(samples: dict[str, list[float]], names: tuple[str, ...]) -> list[float] | None:
    for name in names:
        values = samples.get(name)
        if values:
            return values
    return None


def _model_list(body: bytes) -> tuple[frozenset[str], EngineKind]:
    """The ids of an OpenAI model list and the engine its `owned_by` names (openai when none known)."""
    payload = json.loads(body)
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise ValueError('a model list is {"data": [{"id": ...}]}, got no "data" list')
    ids: set[str] = set()
    for item in data:
        model_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(model_id, str):
            raise ValueError(f'every entry of a model list needs a string "id", got {item!r}')
        ids.add(model_id)
    owners = {item.get("owned_by") for item in data}
    engine = next((kind for kind in _KNOWN_ENGINES if kind.value in owners), EngineKind.OPENAI)
    return frozenset(ids), engine


class _Answer(NamedTuple):
    status: int
    body: bytes


class HealthChecker:
    """Probes the backends of `pool_provider()` (called each round, so a config reload takes effect).

    Owns `healthy`, `consecutive_check_failures`, `waiting`, `running`, `kv_usage` and, for backends
    configured without models, `models` of each `Backend`. Uses `session` and never closes it.
    """

    def __init__(
        self,
        pool_provider: Callable[[], BackendPool],
        config: HealthConfig,
        session: aiohttp.ClientSession,
    ) -> None:
        self._pool_provider = pool_provider
        self.config = config
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._task: asyncio.Task[None] | None = None

    async def check_backend(self, backend: Backend) -> None:
        """One check of `backend`: health, load and (when not configured) models. Never raises for
        network, HTTP or parse errors."""
        config = backend.config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        discover = not config.models or config.engine is EngineKind.AUTO
        health, metrics, models = await asyncio.gather(
            self._get(backend, f"{config.root_url}/health", headers),
            self._get(backend, f"{config.root_url}/metrics", headers),
            self._get(backend, f"{config.url}/models", headers) if discover else _nothing(),
        )
        self._update_load(backend, metrics)
        if discover and models is not None and models.status == 200:
            self._update_models(backend, models.body)
        passed = health is not None and 200 <= health.status < 300
        if health is not None and health.status == 404:  # an OpenAI-compatible server without /health
            if not discover:
                models = await self._get(backend, f"{config.url}/models", headers)
            passed = models is not None and models.status == 200
        self._record(backend, passed, health)

    async def check_all(self) -> None:
        """Check every backend of the current pool concurrently; an unexpected error in one backend's
        check is logged and does not stop the others."""
        backends = list(self._pool_provider())
        results = await asyncio.gather(*(self.check_backend(b) for b in backends), return_exceptions=True)
        for backend, result in zip(backends, results, strict=True):
            if isinstance(result, Exception):
                log.error("health check of backend %s failed unexpectedly", backend.name, exc_info=result)

    async def run(self) -> None:
        """Check all backends, sleep `interval_s`, forever; only cancellation ends it."""
        while True:
            try:
                await self.check_all()
            except Exception:  # a round's bug must not end health checking; the next round retries
                log.exception("health check round failed")
            await asyncio.sleep(self.config.interval_s)

    def start(self) -> asyncio.Task[None]:
        """Run `run()` as a task on the running loop; returns the task already running if there is one."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="seekserve-health")
        return self._task

    async def stop(self) -> None:
        """Cancel the task of `start()` and wait for it to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _get(self, backend: Backend, url: str, headers: dict[str, str]) -> _Answer | None:
        """GET `url`: its status and body, or None (logged) when it could not be fetched."""
        try:
            async with self._session.get(
                url, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                return _Answer(response.status, await response.read())
        except _PROBE_ERRORS as exc:
            log.debug("health check of backend %s: GET %s failed: %r", backend.name, url, exc)
            return None

    def _update_load(self, backend: Backend, metrics: _Answer | None) -> None:
        load = _NO_LOAD
        if metrics is not None and metrics.status == 200:
            load = parse_load(metrics.body.decode("utf-8", errors="replace"))
        backend.waiting, backend.running, backend.kv_usage = load

    def _update_models(self, backend: Backend, body: bytes) -> None:
        try:
            models, engine = _model_list(body)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            log.warning(
                "backend %s: GET %s/models gave no model list: %s", backend.name, backend.config.url, exc
            )
            return
        if not backend.config.models:
            backend.models = models
        if backend.config.engine is EngineKind.AUTO:
            backend.engine = engine

    def _record(self, backend: Backend, passed: bool, health: _Answer | None) -> None:
        if passed:
            if not backend.healthy:
                log.info("backend %s is healthy again", backend.name)
            backend.healthy = True
            backend.consecutive_check_failures = 0
            return
        backend.consecutive_check_failures += 1
        if backend.healthy and backend.consecutive_check_failures >= self.config.unhealthy_after:
            backend.healthy = False
            reason = "unreachable" if health is None else f"/health answered {health.status}"
            log.warning(
                "backend %s taken out of rotation: %s, %d failed checks in a row",
                backend.name,
                reason,
                backend.consecutive_check_failures,
            )


async def _nothing() -> None:
    return None
