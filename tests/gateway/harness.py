"""The gateway in the test's event loop, on a free loopback port, in front of fake or real engines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import uvicorn

from seekserve.gateway.app import GatewayApp
from seekserve.gateway.config import GatewayConfig
from seekserve.gateway.health import HealthChecker
from seekserve.gateway.state import GatewayState
from seekserve.gateway.upstream import open_session

__all__ = ["Running", "config_for", "read_sse", "running_gateway"]


def config_for(urls: list[str], **sections: Any) -> GatewayConfig:
    backends = sections.pop("backends", None) or [{"name": f"b{i}", "url": u} for i, u in enumerate(urls)]
    fast = {
        "retry": {"attempts": 3, "base_s": 0.001, "max_s": 0.01},
        "timeouts": {"inter_token_s": 2.0, "first_byte_s": 5.0},
    }
    return GatewayConfig.model_validate({**fast, "backends": backends, **sections})


@dataclass
class Running:
    app: GatewayApp
    port: int
    checker: HealthChecker
    client: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def post(
        self, path: str, body: dict[str, Any], **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        async with self.client.post(self.url + path, json=body, headers=headers) as response:
            return response.status, dict(response.headers), await response.read()


@asynccontextmanager
async def running_gateway(config: GatewayConfig) -> AsyncIterator[Running]:
    session = open_session(config.timeouts)
    app = GatewayApp(GatewayState.build(config, session))
    checker = HealthChecker(lambda: app.state.pool, config.health, session)
    await checker.check_all()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_level="warning",
            access_log=False,
            http="httptools",
        )
    )
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    client = aiohttp.ClientSession()
    try:
        yield Running(app, port, checker, client)
    finally:
        await client.close()
        server.should_exit = True
        await task
        await app.state.close()
        await session.close()


def read_sse(data: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The JSON events of an SSE body and whether it ended with [DONE]."""
    events, done = [], False
    for line in data.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
        else:
            events.append(json.loads(payload))
    return events, done


def stream_text(events: list[dict[str, Any]]) -> str:
    parts = []
    for event in events:
        for choice in event.get("choices") or ():
            parts.append(choice.get("text") or (choice.get("delta") or {}).get("content") or "")
    return "".join(parts)
