"""A real uvicorn server on a free loopback port, run in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import uvicorn

from seekserve.engine.async_engine import AsyncEngine
from seekserve.server import ServerConfig, create_app
from seekserve.server.state import ServerState

API_KEY = "test-key"
ENGINE_OPTIONS: dict[str, Any] = dict(
    dtype="float32", max_model_len=128, block_size=8, num_kv_blocks=160, max_num_seqs=64
)


@dataclass
class LiveServer:
    server: uvicorn.Server
    thread: threading.Thread
    port: int
    state: ServerState
    api_key: str | None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def engine(self) -> AsyncEngine:
        assert self.state.engine is not None, "the engine has not loaded"
        return self.state.engine

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers(), timeout=30, **kwargs)

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=self.api_key or "none", max_retries=0)

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.base_url}/v1", api_key=self.api_key or "none", max_retries=0
        )

    def wait_until(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout_s} s")
            time.sleep(0.01)

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Until no request runs or waits and every KV block is free again."""
        engine = self.engine
        manager = engine.engine.block_manager

        def idle() -> bool:
            stats = engine.stats
            return (
                stats.num_running == 0
                and stats.num_waiting == 0
                and manager.num_free_blocks == engine.engine.num_kv_blocks
            )

        self.wait_until(idle, timeout_s)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def engine_loader(model_dir: Path, **options: Any) -> Callable[[], AsyncEngine]:
    merged = {**ENGINE_OPTIONS, **options}
    return lambda: AsyncEngine.from_options(model=str(model_dir), **merged)


def slow_down(
    engine: AsyncEngine, delay_s: float, set_attr: Callable[[Any, str, Any], None] = setattr
) -> None:
    """Make the engine sleep `delay_s` before every step, as a slow device would (`set_attr` may be
    pytest's monkeypatch.setattr, to undo it after a test)."""
    execute = engine.engine.runner.execute

    def slow_execute(*args: Any, **kwargs: Any) -> Any:
        time.sleep(delay_s)
        return execute(*args, **kwargs)

    set_attr(engine.engine.runner, "execute", slow_execute)


def slowed(load: Callable[[], AsyncEngine], delay_s: float) -> Callable[[], AsyncEngine]:
    """A loader whose engine sleeps before every step, as a slow device would."""

    def load_slow() -> AsyncEngine:
        engine = load()
        slow_down(engine, delay_s)
        return engine

    return load_slow


def start_server(
    load_engine: Callable[[], AsyncEngine],
    wait_ready: bool = True,
    on_load_error: Callable[[BaseException], None] | None = None,
    **config: Any,
) -> LiveServer:
    """Start a server for the engine `load_engine` builds; by default wait until /health is 200."""
    config.setdefault("served_model_name", "tiny")
    server_config = ServerConfig(**config)
    app = create_app(server_config, load_engine, on_load_error=on_load_error)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, name=f"server-{port}", daemon=True)
    thread.start()
    live = LiveServer(uv, thread, port, app.state.server, server_config.api_key)
    live.wait_until(lambda: uv.started, 30)
    if wait_ready:
        live.wait_until(lambda: httpx.get(f"{live.base_url}/health").status_code == 200, 60)
    return live


def post(server: LiveServer, path: str, body: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with server.http() as http:
        if isinstance(body, bytes):
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
            response = http.post(path, content=body, **kwargs)
        else:
            response = http.post(path, json=body, **kwargs)
    return response.status_code, response.json()


def assert_openai_error(body: dict[str, Any], type_: str, code: str | None = None) -> dict[str, Any]:
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_ and error["code"] == code and error["message"]
    return error
