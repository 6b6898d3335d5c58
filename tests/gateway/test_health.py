from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from seekserve.bench.servers import free_port
from seekserve.gateway.backends import Backend, BackendPool
from seekserve.gateway.config import BackendConfig, BreakerConfig, EngineKind, HealthConfig
from seekserve.gateway.health import HealthChecker, Load, parse_load

SEEKSERVE_METRICS = """\
# HELP seekserve:num_requests_running Requests in the running batch.
# TYPE seekserve:num_requests_running gauge
seekserve:num_requests_running{model_name="r1"} 5.0
# HELP seekserve:num_requests_waiting Requests waiting to be scheduled.
# TYPE seekserve:num_requests_waiting gauge
seekserve:num_requests_waiting{model_name="r1"} 3.0
# HELP seekserve:kv_cache_usage_perc Share of KV cache blocks in use, 0 to 1.
# TYPE seekserve:kv_cache_usage_perc gauge
seekserve:kv_cache_usage_perc{model_name="r1"} 0.25
# HELP seekserve:num_preemptions_total Sequences preempted for lack of KV blocks.
# TYPE seekserve:num_preemptions_total counter
seekserve:num_preemptions_total{model_name="r1"} 7.0
"""

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="deepseek-ai/DeepSeek-R1"} 4.0
vllm:num_requests_running{engine="1",model_name="deepseek-ai/DeepSeek-R1"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="deepseek-ai/DeepSeek-R1"} 1.0
vllm:num_requests_waiting{engine="1",model_name="deepseek-ai/DeepSeek-R1"} 6.0
# HELP vllm:num_requests_waiting_by_reason Number of requests waiting, by reason.
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{engine="0",model_name="deepseek-ai/DeepSeek-R1",reason="capacity"} 9.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="deepseek-ai/DeepSeek-R1"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="deepseek-ai/DeepSeek-R1"} 0.25
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage (deprecated).
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="deepseek-ai/DeepSeek-R1"} 0.9
"""

SGLANG_METRICS = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="deepseek-ai/DeepSeek-V3",tp_rank="0"} 8.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="deepseek-ai/DeepSeek-V3",tp_rank="0"} 3.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="deepseek-ai/DeepSeek-V3",tp_rank="0"} 0.75
"""


def test_parse_load_of_each_engine() -> None:
    assert parse_load(SEEKSERVE_METRICS) == Load(waiting=3.0, running=5.0, kv_usage=0.25)
    assert parse_load(VLLM_METRICS) == Load(waiting=7.0, running=6.0, kv_usage=0.375)
    assert parse_load(SGLANG_METRICS) == Load(waiting=3.0, running=8.0, kv_usage=0.75)


def test_parse_load_edge_cases() -> None:
    old_vllm = 'vllm:gpu_cache_usage_perc{model_name="m"} 0.125\nvllm:num_requests_running 2\n'
    assert parse_load(old_vllm) == Load(waiting=None, running=2.0, kv_usage=0.125)
    assert parse_load("") == Load(None, None, None)
    assert parse_load("# seekserve:num_requests_waiting 4\nprocess_cpu_seconds_total 1.0\n") == Load(
        None, None, None
    )
    tricky = (
        'seekserve:num_requests_waiting{model_name="a } b c"} 2 1700000000000\r\n'
        "seekserve:num_requests_waiting 1e1\n"
        'seekserve:num_requests_running{model_name="x"} NaN\n'
        'seekserve:num_requests_running{model_name="y"} +Inf\n'
        "seekserve:num_requests_running_total 50\n"
        "seekserve:kv_cache_usage_perc garbage\n"
    )
    assert parse_load(tricky) == Load(waiting=12.0, running=None, kv_usage=None)


@dataclass
class FakeEngine:
    """An engine's service routes with switches; records (path, Authorization) of every request."""

    health_status: int = 200
    metrics: str | None = SEEKSERVE_METRICS
    models: list[str] = field(default_factory=lambda: ["r1", "r1-distill"])
    models_status: int = 200
    models_body: bytes | None = None
    hang: asyncio.Event | None = None
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, request.headers.get("Authorization")))
        if request.path == "/health":
            if self.hang is not None:
                await self.hang.wait()
            return web.Response(status=self.health_status, text="{}")
        if request.path == "/metrics":
            if self.metrics is None:
                return web.Response(status=404)
            return web.Response(text=self.metrics)
        if self.models_body is not None:
            return web.Response(status=self.models_status, body=self.models_body)
        data = [{"id": m, "object": "model", "owned_by": "seekserve"} for m in self.models]
        return web.json_response({"object": "list", "data": data}, status=self.models_status)

    def paths(self) -> list[str]:
        return sorted(path for path, _ in self.seen)


@asynccontextmanager
async def serving(engine: FakeEngine) -> AsyncIterator[str]:
    """Serve `engine` on a free loopback port; yields its OpenAI base URL, http://127.0.0.1:PORT/v1."""
    app = web.Application()
    for path in ("/health", "/metrics", "/v1/models"):
        app.router.add_get(path, engine.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def state(backend: Backend) -> tuple[bool, int, float | None, float | None, float | None]:
    """(healthy, consecutive_check_failures, waiting, running, kv_usage)"""
    return (
        backend.healthy,
        backend.consecutive_check_failures,
        backend.waiting,
        backend.running,
        backend.kv_usage,
    )


def make_pool(*backends: BackendConfig) -> BackendPool:
    return BackendPool.build(backends, BreakerConfig())


def run_checks(
    fake: FakeEngine,
    body: Callable[[HealthChecker, Backend], Awaitable[None]],
    config: HealthConfig | None = None,
    **backend: object,
) -> None:
    """Serve `fake`, build one backend `a` for it, and run `body(checker, backend)`."""

    async def main() -> None:
        async with serving(fake) as url, aiohttp.ClientSession() as session:
            pool = make_pool(BackendConfig.model_validate({"name": "a", "url": url, **backend}))
            checker = HealthChecker(lambda: pool, config or HealthConfig(), session)
            await body(checker, pool.backends["a"])

    asyncio.run(main())


def test_check_reads_load_discovers_models_and_sends_the_key() -> None:
    engine = FakeEngine()

    async def body(checker: HealthChecker, backend: Backend) -> None:
        backend.consecutive_check_failures = 1
        await checker.check_backend(backend)
        assert state(backend) == (True, 0, 3.0, 5.0, 0.25)
        assert backend.models == frozenset({"r1", "r1-distill"})
        assert engine.paths() == ["/health", "/metrics", "/v1/models"]
        assert {auth for _, auth in engine.seen} == {"Bearer sk-a"}

    run_checks(engine, body, api_key="sk-a")


def test_configured_models_and_engine_are_not_discovered_and_no_key_is_sent() -> None:
    engine = FakeEngine(metrics=VLLM_METRICS)

    async def body(checker: HealthChecker, backend: Backend) -> None:
        await checker.check_backend(backend)
        assert backend.models == frozenset({"r1"})
        assert state(backend) == (True, 0, 7.0, 6.0, 0.375)
        assert engine.paths() == ["/health", "/metrics"]
        assert {auth for _, auth in engine.seen} == {None}

    run_checks(engine, body, **{"models": ["r1"], "engine": "vllm"})


def test_engine_auto_reads_owned_by_but_keeps_configured_models() -> None:
    engine = FakeEngine(metrics=VLLM_METRICS)

    async def body(checker: HealthChecker, backend: Backend) -> None:
        assert backend.engine is EngineKind.OPENAI  # until the first check says otherwise
        await checker.check_backend(backend)
        assert backend.models == frozenset({"r1"})
        assert backend.engine is EngineKind.SEEKSERVE
        assert engine.paths() == ["/health", "/metrics", "/v1/models"]

    run_checks(engine, body, models=["r1"])


def test_missing_or_unreadable_metrics_clear_the_load() -> None:
    engine = FakeEngine(metrics=None)

    async def body(checker: HealthChecker, backend: Backend) -> None:
        backend.waiting, backend.running, backend.kv_usage = 1.0, 2.0, 0.5
        await checker.check_backend(backend)
        assert state(backend) == (True, 0, None, None, None)
        engine.metrics = "not prometheus \xff at all"
        await checker.check_backend(backend)
        assert state(backend) == (True, 0, None, None, None)

    run_checks(engine, body)


def test_hysteresis() -> None:
    engine = FakeEngine(health_status=503)

    async def body(checker: HealthChecker, backend: Backend) -> None:
        states = []
        for _ in range(3):
            await checker.check_backend(backend)
            states.append((backend.healthy, backend.consecutive_check_failures))
        engine.health_status = 200
        await checker.check_backend(backend)
        states.append((backend.healthy, backend.consecutive_check_failures))
        engine.health_status = 500
        await checker.check_backend(backend)
        states.append((backend.healthy, backend.consecutive_check_failures))
        assert states == [(True, 1), (True, 2), (False, 3), (True, 0), (True, 1)]

    run_checks(engine, body, HealthConfig(unhealthy_after=3))


def test_no_health_route_falls_back_to_models() -> None:
    engine = FakeEngine(health_status=404)

    async def body(checker: HealthChecker, backend: Backend) -> None:
        await checker.check_backend(backend)
        assert (backend.healthy, backend.consecutive_check_failures) == (True, 0)
        assert engine.paths() == ["/health", "/metrics", "/v1/models"]  # discovery answered both
        engine.models_status = 500
        await checker.check_backend(backend)
        assert (backend.healthy, backend.consecutive_check_failures) == (False, 1)
        assert backend.models == frozenset({"r1", "r1-distill"})  # kept from the last good answer

    run_checks(engine, body, HealthConfig(unhealthy_after=1))


def test_no_health_route_with_configured_models_asks_models() -> None:
    engine = FakeEngine(health_status=404)

    async def body(checker: HealthChecker, backend: Backend) -> None:
        await checker.check_backend(backend)
        assert (backend.healthy, backend.consecutive_check_failures) == (True, 0)
        assert engine.paths() == ["/health", "/metrics", "/v1/models"]
        assert backend.models == frozenset({"r0"})

    run_checks(engine, body, models=["r0"])


@pytest.mark.parametrize("models_body", [b"not json", b'{"data": {"id": "r1"}}', b'{"data": [{"id": 5}]}'])
def test_bad_model_list_keeps_the_models_and_the_backend_healthy(models_body: bytes) -> None:
    engine = FakeEngine(models_body=models_body)

    async def body(checker: HealthChecker, backend: Backend) -> None:
        backend.models = frozenset({"old"})
        await checker.check_backend(backend)
        assert (backend.healthy, backend.models) == (True, frozenset({"old"}))

    run_checks(engine, body)


def test_timeout_is_a_failure() -> None:
    engine = FakeEngine(hang=asyncio.Event())

    async def body(checker: HealthChecker, backend: Backend) -> None:
        await checker.check_backend(backend)
        assert engine.hang is not None
        engine.hang.set()
        assert state(backend) == (False, 1, 3.0, 5.0, 0.25)

    run_checks(engine, body, HealthConfig(timeout_s=0.1, unhealthy_after=1))


def test_unreachable_backend_goes_unhealthy_after_n_checks() -> None:
    async def main() -> None:
        url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
        pool = make_pool(BackendConfig(name="down", url=url))
        backend = pool.backends["down"]
        backend.waiting = 4.0
        async with aiohttp.ClientSession() as session:
            checker = HealthChecker(lambda: pool, HealthConfig(unhealthy_after=3), session)
            states = []
            for _ in range(3):
                await checker.check_backend(backend)
                states.append(backend.healthy)
        assert states == [True, True, False]
        assert backend.consecutive_check_failures == 3
        assert (backend.waiting, backend.models) == (None, frozenset())

    asyncio.run(main())


def test_check_all_uses_the_current_pool() -> None:
    up = FakeEngine()

    async def main() -> None:
        async with serving(up) as url, aiohttp.ClientSession() as session:
            down = f"http://127.0.0.1:{free_port()}/v1"
            first = make_pool(BackendConfig(name="up", url=url), BackendConfig(name="down", url=down))
            second = make_pool(BackendConfig(name="up2", url=url, models=["x"], engine=EngineKind.VLLM))
            pools = [first]
            checker = HealthChecker(lambda: pools[0], HealthConfig(unhealthy_after=1), session)
            await checker.check_all()
            assert (first.backends["up"].healthy, first.backends["down"].healthy) == (True, False)
            assert first.backends["up"].models == frozenset({"r1", "r1-distill"})
            pools[0] = second  # a config reload
            await checker.check_all()
            assert second.backends["up2"].kv_usage == 0.25
            assert len(up.seen) == 5  # 3 for `up`, then 2 for `up2` (models configured)

    asyncio.run(main())


def test_run_survives_a_failing_round_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="seekserve.gateway")
    engine = FakeEngine()

    async def main() -> None:
        async with serving(engine) as url, aiohttp.ClientSession() as session:
            pool = make_pool(BackendConfig(name="a", url=url))
            calls = []

            def provider() -> BackendPool:
                calls.append(1)
                if len(calls) == 1:
                    raise RuntimeError("reload in progress")
                return pool

            checker = HealthChecker(provider, HealthConfig(interval_s=0.01), session)
            task = checker.start()
            assert checker.start() is task
            for _ in range(500):
                if len(engine.seen) >= 6:
                    break
                await asyncio.sleep(0.01)
            await checker.stop()
            assert task.cancelled()
            assert len(calls) >= 3
            seen = len(engine.seen)
            await asyncio.sleep(0.05)
            assert len(engine.seen) == seen  # stopped: no more checks

    asyncio.run(main())
    failures = [r for r in caplog.records if r.getMessage() == "health check round failed"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and str(failures[0].exc_info[1]) == "reload in progress"
