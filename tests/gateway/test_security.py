"""Who may call what on `seekserve gateway`, how large a body may be, and what its logs never hold.

ROUTES is the table docs/reliability.md publishes: every route the gateway serves (its
/openapi.json lists the same ones) and whether it needs a key once `keys` are configured. A real
gateway process at --log-level debug runs in front of a fake engine; each route is called without
a key, with a wrong one and with the right one, and afterwards neither the client keys, the
backend's key, the Redis password nor prompt text appears in anything it wrote. (Keys are looked
up by hash and compared with hmac.compare_digest: tests/gateway/test_keys.py.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from gateway.fake_upstream import FakeEngine
from gateway.processes import GatewayProcess, engines_in_thread, gateway_config, gateway_processes
from seekserve.gateway.config import BackendConfig
from server.live import assert_openai_error

ROUTES: list[tuple[str, str, bool]] = [
    ("POST", "/v1/chat/completions", True),
    ("POST", "/v1/completions", True),
    ("GET", "/v1/models", True),
    ("GET", "/health", False),
    ("GET", "/metrics", False),
    ("GET", "/openapi.json", False),
    ("GET", "/chat", False),
    ("GET", "/chat/{asset}", False),
    ("GET", "/", False),
]
EXAMPLE_PATHS = {"/chat/{asset}": "/chat/chat.css"}
KEY, LIMITED_KEY = "gw-key-3141592653", "gw-limited-key-2718281828"
WRONG_KEYS = ["x", KEY[:-1], KEY + "0", "k" * 300]
BACKEND_KEY, REDIS_PASSWORD = "backend-key-1618033988", "redis-password-1414213562"
PROMPT_MARK = "zebra-quartz-umbrella"
MAX_BODY_BYTES = 4096
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": "fake", "messages": [{"role": "user", "content": PROMPT_MARK}], "max_tokens": 2,
    },
    "/v1/completions": {"model": "fake", "prompt": PROMPT_MARK, "max_tokens": 2, "stream": True},
}  # fmt: skip


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def closed_port() -> int:
    """A loopback port nothing listens on: Redis there fails at once (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    engine = FakeEngine("a")
    config = gateway_config(
        [{"name": "a", "url": engine.url, "api_key": "${BACKEND_KEY}"}],
        models={"other": {}},
        keys=[
            {"name": "team", "key_sha256": sha256(KEY), "rpm": 6000},
            {"name": "limited", "key_sha256": sha256(LIMITED_KEY), "models": ["other"]},
        ],
        limits={"url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed_port()}/0"},
        max_body_bytes=MAX_BODY_BYTES,
    )
    directory = tmp_path_factory.mktemp("gateway-security")
    with (
        engines_in_thread(engine),
        gateway_processes([config], directory, "debug", {"BACKEND_KEY": BACKEND_KEY}) as (process,),
    ):
        yield process


async def request(
    url: str, method: str, path: str, key: str | None = None, body: Any = None, **headers: str
) -> tuple[int, Mapping[str, str], bytes]:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, url + path, json=body, headers=headers) as response,
    ):
        return response.status, CIMultiDict(response.headers), await response.read()


def call(
    gateway: GatewayProcess, method: str, path: str, key: str | None
) -> tuple[int, dict[str, str], bytes]:
    return asyncio.run(request(gateway.url, method, EXAMPLE_PATHS.get(path, path), key, BODIES.get(path)))


def test_the_route_table_is_what_the_openapi_document_lists(gateway: GatewayProcess) -> None:
    status, _, body = call(gateway, "GET", "/openapi.json", None)
    document = json.loads(body)
    listed = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert status == 200 and listed == {(method, path) for method, path, _ in ROUTES}
    keyed = {path for path, item in document["paths"].items() if "security" in next(iter(item.values()))}
    assert keyed == {path for _, path, needs_key in ROUTES if needs_key}
    for path in ("/docs", "/v1/embeddings", "/v1/models/fake", "/admin"):
        status, _, body = call(gateway, "GET", path, KEY)
        assert status == 404
        assert_openai_error(json.loads(body), "invalid_request_error", "not_found")


@pytest.mark.parametrize(("method", "path", "needs_key"), ROUTES)
def test_each_route_with_and_without_a_key(
    gateway: GatewayProcess, method: str, path: str, needs_key: bool
) -> None:
    status, _, _ = call(gateway, method, path, KEY)
    assert status == 200
    for key in (None, *WRONG_KEYS):
        status, headers, body = call(gateway, method, path, key)
        if not needs_key:
            assert status == 200, (path, key)
            continue
        assert status == 401, (path, key)
        assert headers["WWW-Authenticate"] == "Bearer"
        error = assert_openai_error(json.loads(body), "invalid_request_error", "invalid_api_key")
        assert (key or KEY) not in error["message"]


def test_a_key_sees_and_uses_only_its_models(gateway: GatewayProcess) -> None:
    def models(key: str | None) -> list[str]:
        status, _, body = call(gateway, "GET", "/v1/models", key)
        assert status == 200
        return [m["id"] for m in json.loads(body)["data"]]

    def document_models(key: str | None) -> list[str] | None:
        _, _, body = call(gateway, "GET", "/openapi.json", key)
        schema = json.loads(body)["paths"]["/v1/completions"]["post"]["requestBody"]["content"]
        return schema["application/json"]["schema"]["properties"]["model"].get("enum")

    assert models(KEY) == ["fake", "other"] and models(LIMITED_KEY) == ["other"]
    assert document_models(KEY) == ["fake", "other"] and document_models(None) is None
    status, _, body = call(gateway, "POST", "/v1/chat/completions", LIMITED_KEY)
    assert status == 403
    assert_openai_error(json.loads(body), "permission_error", "model_not_allowed")


def test_keys_secrets_and_prompts_never_reach_the_logs(gateway: GatewayProcess) -> None:
    for key in (KEY, LIMITED_KEY, "wrong-" + KEY):
        for path in BODIES:
            call(gateway, "POST", path, key)
    log, access = gateway.log(), gateway.access_log()
    assert "rate-limit Redis redis://:***@127.0.0.1:" in log  # the Redis warning, its password hidden
    assert sum(f'"path":"{path}"' in access for path in BODIES) == len(BODIES)
    statuses = [json.loads(line)["status"] for line in access.splitlines()]
    assert {200, 401, 403} <= set(statuses)
    for secret in (KEY, LIMITED_KEY, BACKEND_KEY, REDIS_PASSWORD, PROMPT_MARK):
        assert secret not in log and secret not in access, secret


def test_bodies_over_max_body_bytes_get_413(gateway: GatewayProcess) -> None:
    def post_raw(body: bytes, chunked: bool) -> tuple[int, dict[str, Any]]:
        async def send() -> tuple[int, bytes]:
            async def chunks() -> Any:
                yield body

            headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
            async with (
                aiohttp.ClientSession() as client,
                client.post(
                    gateway.url + "/v1/completions", data=chunks() if chunked else body, headers=headers
                ) as response,
            ):
                return response.status, await response.read()

        status, answer = asyncio.run(send())
        return status, json.loads(answer)

    prompt = {"model": "fake", "max_tokens": 1, "prompt": ""}
    padding = MAX_BODY_BYTES - len(json.dumps(prompt))
    exact = json.dumps({**prompt, "prompt": "w" * padding}).encode()
    assert len(exact) == MAX_BODY_BYTES
    assert post_raw(exact, chunked=False)[0] == 200
    for chunked in (False, True):  # told by Content-Length, or counted as it arrives
        status, answer = post_raw(json.dumps({**prompt, "prompt": "w" * (padding + 1)}).encode(), chunked)
        assert status == 413, answer
        error = assert_openai_error(answer, "invalid_request_error", "request_too_large")
        assert f"over {MAX_BODY_BYTES} bytes (max_body_bytes)" in error["message"]


def test_the_request_id_echoed_is_at_most_128_characters(gateway: GatewayProcess) -> None:
    _, headers, _ = asyncio.run(request(gateway.url, "GET", "/health", **{"X-Request-Id": "r" * 5000}))
    assert headers["X-Request-Id"] == "r" * 128


def test_a_backend_config_never_shows_its_key() -> None:
    backend = BackendConfig(name="a", url="http://h/v1", api_key="shown-nowhere")
    assert "shown-nowhere" not in repr(backend) and "shown-nowhere" not in str(backend)
