"""Run the gateway: the HTTP server, the health checker, and reloads on SIGHUP.

The first round of health checks runs before the port opens, so models are known (discovered
from the backends' /v1/models) when the first request arrives; so does web search's warm-up (the
extractor imported, the local provider's index built), so the first searching request does not
pay for it. On SIGHUP the config file is read
again; a file that fails to validate is logged and the running configuration stays.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import uvicorn

from seekserve.errors import ConfigError
from seekserve.gateway.app import GatewayApp
from seekserve.gateway.config import GatewayConfig, load_config
from seekserve.gateway.health import HealthChecker
from seekserve.gateway.state import GatewayState
from seekserve.gateway.upstream import open_session

__all__ = ["serve"]

log = logging.getLogger("seekserve.gateway")

_DRAIN_S = 5.0


async def serve(config: GatewayConfig, config_path: Path | None, log_config: dict[str, object]) -> None:
    """Serve until SIGINT/SIGTERM."""
    session = open_session(config.timeouts)
    app = GatewayApp(GatewayState.build(config, session))
    checker = HealthChecker(lambda: app.state.pool, config.health, session)
    await checker.check_all()
    if app.state.search is not None:
        await app.state.search.start()
    checker.start()
    loop = asyncio.get_running_loop()
    if config_path is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload(app, config_path)))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.listen.host,
            port=config.listen.port,
            http="httptools",
            loop="none",
            lifespan="off",
            access_log=False,
            log_config=log_config,
            timeout_keep_alive=30,
            backlog=4096,
        )
    )
    try:
        await server.serve()
    finally:
        await checker.stop()
        await app.state.close()
        await session.close()


async def _reload(app: GatewayApp, path: Path) -> None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        log.error("reload of %s failed, the running configuration stays: %s", path, exc)
        return
    if config.listen != app.state.config.listen:
        log.warning("listen: changes need a restart; the gateway keeps %s", app.state.config.listen)
        config = config.model_copy(update={"listen": app.state.config.listen})
    old = app.reload(config)
    if app.state.search is not None and app.state.search is not old.search:
        await app.state.search.start()
    log.info("reloaded %s: %d backends, %d keys", path, len(config.backends), len(config.keys))
    await asyncio.sleep(_DRAIN_S)  # requests that started under the old state finish with it
    await old.close_replaced(app.state)
