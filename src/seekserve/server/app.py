"""The FastAPI application: routes, middleware, and the lifespan that loads and runs the engine.

    access log  ->  API key (/v1/*)  ->  body limit  ->  routes
                                                        /v1/chat/completions  chat.py
                                                        /v1/completions       completions.py
                                                        /v1/models, /health, /metrics, /version
                                                        /dashboard            dashboard.py
                                                        /chat, /              chat_page.py

The model loads in a worker thread after the server starts listening, so /health answers 503
("loading") at once and probes can tell a slow start from a dead process; /v1/* answers 503
until the engine is ready. The engine then runs in its own thread (`AsyncEngine`); the event
loop only parses, tokenizes off-loop, and streams, so /health and /metrics answer at full load.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from seekserve import __version__
from seekserve.engine.async_engine import AsyncEngine
from seekserve.errors import EngineDeadError
from seekserve.server import chat, chat_page, completions, dashboard
from seekserve.server.access_log import AccessLogMiddleware
from seekserve.server.auth import PROTECTED_PREFIX, ApiKeyMiddleware
from seekserve.server.config import ServerConfig
from seekserve.server.errors import install_error_handlers
from seekserve.server.limits import BodyLimitMiddleware
from seekserve.server.responses import ModelCard, ModelList
from seekserve.server.state import ServerState

__all__ = ["create_app"]

log = logging.getLogger(__name__)

EngineLoader = Callable[[], AsyncEngine]
ReadyHook = Callable[[AsyncEngine], None]
LoadErrorHook = Callable[[BaseException], None]
DeadHook = Callable[[EngineDeadError], None]


@dataclass(frozen=True)
class _Hooks:
    """What the app calls, on the event loop, as its engine comes and goes (see `create_app`)."""

    on_ready: ReadyHook | None
    on_load_error: LoadErrorHook | None
    on_engine_dead: DeadHook | None


def create_app(
    config: ServerConfig,
    load_engine: EngineLoader,
    on_ready: ReadyHook | None = None,
    on_load_error: LoadErrorHook | None = None,
    on_engine_dead: DeadHook | None = None,
) -> FastAPI:
    """The app serving `config.served_model_name` with the engine `load_engine()` builds.

    `load_engine` runs in a worker thread once the server is up; `on_ready(engine)` is called in
    the event loop when the engine runs, `on_load_error(error)` if loading failed (the app then
    answers 503 until stopped), `on_engine_dead(error)` if the engine dies later (every stream in
    flight has been sent the error by then; the app answers 503 until stopped).
    """
    state = ServerState(config)
    hooks = _Hooks(on_ready, on_load_error, on_engine_dead)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_load(state, load_engine, hooks))
        monitoring = None if state.monitor is None else asyncio.create_task(state.monitor.run())
        warming = None if state.search is None else asyncio.create_task(state.search.start())
        try:
            yield
        finally:
            loading.cancel()
            if warming is not None:
                warming.cancel()
                await asyncio.gather(warming, return_exceptions=True)
            if state.search is not None:
                await state.search.aclose()
            if monitoring is not None:
                monitoring.cancel()
                await asyncio.gather(monitoring, return_exceptions=True)
            if state.engine is not None:
                await asyncio.to_thread(state.engine.shutdown)

    app = FastAPI(
        title="seekserve",
        version=__version__,
        description="OpenAI-compatible API of a seekserve engine.",
        lifespan=lifespan,
    )
    app.state.server = state
    install_error_handlers(app)
    app.include_router(chat.router)
    app.include_router(completions.router)
    _add_service_routes(app, state)
    if state.metrics is not None:
        app.include_router(dashboard.router)
    app.include_router(chat_page.router)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=config.max_body_bytes)
    if config.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=config.api_key)
    app.add_middleware(AccessLogMiddleware, metrics=state.metrics)  # outermost: sees every answer
    app.openapi = lambda: _openapi(app, secured=config.api_key is not None)  # type: ignore[method-assign]
    return app


async def _load(state: ServerState, load_engine: EngineLoader, hooks: _Hooks) -> None:
    """Load and start the engine, then watch it until it dies (cancelled at shutdown)."""
    try:
        engine = await asyncio.to_thread(load_engine)
    except Exception as e:  # any failure to load is reported, and /health says so
        state.load_error = e
        if hooks.on_load_error is not None:
            hooks.on_load_error(e)
        else:
            log.error("the model failed to load: %s", e)
        return
    engine.start()
    state.attach(engine)
    if hooks.on_ready is not None:
        hooks.on_ready(engine)
    if hooks.on_engine_dead is not None:
        hooks.on_engine_dead(await engine.wait_dead())


def _add_service_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health", responses={503: {"description": "Loading, or the engine has died"}})
    async def health() -> JSONResponse:
        """200 once the model is loaded and the engine loop is alive; 503 before, and after a fatal error."""
        engine = state.engine
        if engine is not None and engine.is_healthy:
            return JSONResponse({"status": "ok"})
        if engine is None and state.load_error is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        error = state.load_error or (engine.dead_error if engine is not None else None)
        return JSONResponse({"status": "error", "error": str(error)}, status_code=503)

    metrics = state.metrics
    if metrics is not None:

        @app.get("/metrics", response_class=Response)
        async def render_metrics() -> Response:
            """Prometheus text exposition."""
            return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": __version__}

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> ModelList:
        """The model this server serves."""
        return ModelList(data=[_model_card(state)])

    @app.get("/v1/models/{model:path}", response_model=ModelCard)
    async def retrieve_model(model: str) -> ModelCard:
        state.check_model(model)
        return _model_card(state)


def _model_card(state: ServerState) -> ModelCard:
    info = state.ready_engine().info
    return ModelCard(
        id=state.config.served_model_name,
        created=state.created,
        max_model_len=info.max_model_len,
        chat_template="default" if info.uses_default_chat_template else "model",
    )


def _openapi(app: FastAPI, secured: bool) -> dict[str, Any]:
    """FastAPI's schema, with its 422 answers replaced by the 400 this API gives for invalid bodies."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            operation.get("responses", {}).pop("422", None)
            if secured and path.startswith(PROTECTED_PREFIX):
                operation["security"] = [{"bearer": []}]
    components = schema.setdefault("components", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    if secured:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    app.openapi_schema = schema
    return schema
