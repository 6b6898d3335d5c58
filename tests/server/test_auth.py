"""Who may call what on `seekserve serve`, and what its logs never hold.

ROUTES is the table docs/reliability.md publishes: every route the app has, and whether it needs
the API key. Each route is called without a key, with a wrong one and with the right one; the key
is compared in constant time; neither the key, a wrong key nor prompt text reaches any log (unless
the server was started with --log-prompts, which puts prompts in the access log and nothing more).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.live import API_KEY, LiveServer, assert_openai_error, engine_loader, start_server

# (method, path as the app declares it, needs the key)
ROUTES: list[tuple[str, str, bool]] = [
    ("POST", "/v1/chat/completions", True),
    ("POST", "/v1/completions", True),
    ("GET", "/v1/models", True),
    ("GET", "/v1/models/{model:path}", True),
    ("GET", "/health", False),
    ("GET", "/metrics", False),
    ("GET", "/version", False),
    ("GET", "/dashboard", False),
    ("GET", "/dashboard/data", False),
    ("GET", "/openapi.json", False),
    ("GET", "/docs", False),
    ("GET", "/docs/oauth2-redirect", False),
    ("GET", "/redoc", False),
    ("GET", "/chat", False),
    ("GET", "/chat/{name:path}", False),
    ("GET", "/", False),
]
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
    "/v1/completions": {"prompt": "Hi", "max_tokens": 1},
}
WRONG_KEYS = ["x", "test-kez", API_KEY + "-", "k" * 300]


def call(server: LiveServer, method: str, route: str, key: str | None) -> httpx.Response:
    path = route.replace("{model:path}", "tiny").replace("{name:path}", "chat.css")
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    with httpx.Client(base_url=server.base_url, timeout=30, follow_redirects=True) as http:
        return http.request(method, path, json=BODIES.get(path), headers=headers)


def declared(routes: Any) -> set[tuple[str, str]]:
    """(method, path) of every route, those of included routers too (they are added without a prefix)."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found |= declared(included.routes)
        else:
            found |= {(m, route.path) for m in getattr(route, "methods", ()) if m != "HEAD"}
    return found


def test_the_route_table_names_every_route_of_the_app(server: LiveServer) -> None:
    assert declared(server.server.config.app.routes) == {(method, path) for method, path, _ in ROUTES}


@pytest.mark.parametrize(("method", "route", "needs_key"), ROUTES)
def test_each_route_with_and_without_the_key(
    server: LiveServer, method: str, route: str, needs_key: bool
) -> None:
    assert call(server, method, route, API_KEY).status_code == 200
    for key in (None, *WRONG_KEYS):
        response = call(server, method, route, key)
        if not needs_key:
            assert response.status_code == 200, (route, key)
            continue
        assert response.status_code == 401, (route, key)
        assert response.headers["www-authenticate"] == "Bearer"
        error = assert_openai_error(response.json(), "invalid_request_error", "invalid_api_key")
        assert (key or API_KEY) not in error["message"]


def test_keys_are_compared_by_digest_in_constant_time(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every check, right or wrong and whatever its length, is one compare_digest of two SHA-256 digests."""
    compared: list[tuple[int, int, bool]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        result = real(a, b)
        compared.append((len(a), len(b), result))
        return result

    monkeypatch.setattr(hmac, "compare_digest", spy)
    for key in [API_KEY, *WRONG_KEYS]:
        call(server, "GET", "/v1/models", key)
    assert compared == [(32, 32, True)] + [(32, 32, False)] * len(WRONG_KEYS)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger, at DEBUG, with its arguments formatted in."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


PROMPT_MARK = "zebra-quartz-umbrella"


def ask(server: LiveServer, key: str) -> None:
    """A chat and a completion carrying PROMPT_MARK, sent with `key`."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.base_url, timeout=30, headers=headers) as http:
        http.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": PROMPT_MARK}], "max_tokens": 2},
        )
        http.post("/v1/completions", json={"prompt": PROMPT_MARK, "max_tokens": 2, "stream": True})


def test_keys_and_prompts_never_reach_the_logs(
    server: LiveServer, all_logs: pytest.LogCaptureFixture
) -> None:
    ask(server, API_KEY)
    ask(server, "wrong-key-" + "7" * 20)
    server.wait_until(lambda: logged_text(all_logs).count('"path": "/v1/') == 4)
    text = logged_text(all_logs)
    assert '"status": 401' in text and '"status": 200' in text  # the access log saw all four
    for secret in (API_KEY, "wrong-key-", PROMPT_MARK):
        assert secret not in text, secret


@pytest.fixture(scope="module")
def logging_prompts(llama_dir: Path) -> Iterator[LiveServer]:
    live = start_server(engine_loader(llama_dir), api_key="another-secret-key", log_prompts=True)
    yield live
    live.stop()


def test_log_prompts_puts_prompts_in_the_access_log_and_never_the_key(
    logging_prompts: LiveServer, all_logs: pytest.LogCaptureFixture
) -> None:
    ask(logging_prompts, "another-secret-key")
    logging_prompts.wait_until(lambda: logged_text(all_logs).count(PROMPT_MARK) >= 2)
    access = [r.getMessage() for r in all_logs.records if r.name == "seekserve.access"]
    assert sum(PROMPT_MARK in line for line in access) == 2
    assert "another-secret-key" not in logged_text(all_logs)


def test_the_config_never_shows_the_key() -> None:
    from seekserve.server import ServerConfig

    config = ServerConfig(served_model_name="m", api_key="shown-nowhere")
    assert "shown-nowhere" not in repr(config) and "shown-nowhere" not in str(config)
