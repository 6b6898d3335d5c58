from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from seekserve import __version__
from seekserve.errors import ConfigError
from seekserve.server import ServerConfig
from server.live import LiveServer


def metric(text: str, name: str, **labels: str) -> float:
    wanted = {"model_name": "tiny", **labels}
    for line in text.splitlines():
        match = re.fullmatch(r"([^{\s]+)\{([^}]*)\} (\S+)", line)
        if match and match.group(1) == name:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            if found == wanted:
                return float(match.group(3))
    raise AssertionError(f"{name}{wanted} not in /metrics")


def test_metrics_expose_engine_gauges_and_count_requests(server: LiveServer) -> None:
    with server.http() as http:
        before = http.get("/metrics").text
        assert metric(before, "seekserve:num_requests_running") == 0.0
        assert metric(before, "seekserve:num_requests_waiting") == 0.0
        assert metric(before, "seekserve:kv_cache_usage_perc") == 0.0
        answer = http.post("/v1/completions", json={"prompt": [5, 6, 7], "max_tokens": 3, "ignore_eos": True})
        assert answer.status_code == 200
        assert http.post("/v1/completions", json={"prompt": [5], "n": 0}).status_code == 400
        response = http.get("/metrics")
    after = response.text
    assert response.headers["content-type"].startswith("text/plain")
    for name, grew_by in (
        ("seekserve:prompt_tokens_total", 3),
        ("seekserve:generation_tokens_total", 3),
        ("seekserve:time_to_first_token_seconds_count", 1),
        ("seekserve:e2e_request_latency_seconds_count", 1),
    ):
        assert metric(after, name) - _or_zero(before, name) == grew_by, name
    assert metric(after, "seekserve:request_success_total", finished_reason="length") >= 1
    assert metric(after, "seekserve:request_errors_total", type="invalid_request") >= 1


def _or_zero(text: str, name: str) -> float:
    try:
        return metric(text, name)
    except AssertionError:
        return 0.0


def test_access_log_has_one_json_line_per_request_without_prompts(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="seekserve.access")
    secret = "my secret prompt"
    with server.http() as http:
        ok = http.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": secret}], "max_tokens": 4, "user": "u-1"},
            headers={"X-Request-Id": "trace-42"},
        )
        bad = http.post("/v1/chat/completions", json={"messages": []})
    assert ok.headers["x-request-id"] == "trace-42" and bad.headers["x-request-id"].startswith("req-")

    def entries() -> list[dict[str, Any]]:  # written once the last byte is out, so just after the reply
        return [json.loads(r.getMessage()) for r in caplog.records if r.name == "seekserve.access"]

    server.wait_until(lambda: len(entries()) == 2)
    assert secret not in caplog.text
    first, second = entries()
    assert first["request_id"] == "trace-42" and first["id"] == ok.json()["id"]
    assert (first["method"], first["path"], first["status"], first["user"]) == (
        "POST", "/v1/chat/completions", 200, "u-1",
    )  # fmt: skip
    assert first["prompt_tokens"] == ok.json()["usage"]["prompt_tokens"]
    assert first["completion_tokens"] == ok.json()["usage"]["completion_tokens"]
    assert 0 < first["ttft_s"] <= first["duration_s"] and first["finish_reasons"]
    assert (second["status"], second["error"]) == (400, "invalid_request_error")


def test_openapi_schema_documents_400_and_the_bearer_key(server: LiveServer) -> None:
    with server.http() as http:
        schema = http.get("/openapi.json").json()
        assert http.get("/version").json() == {"version": __version__}
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    assert "422" not in chat["responses"] and "400" in chat["responses"]
    assert chat["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"port": 70000}, "port=70000 is invalid"),
        ({"request_timeout_s": 0}, "request_timeout_s=0 is invalid"),
        ({"max_body_bytes": 10}, "max_body_bytes=10 is too small"),
        ({"api_key": " "}, "api_key is empty"),
        ({"reasoning_parser": "qwen3"}, "reasoning_parser='qwen3' is not supported"),
    ],
)
def test_server_config_rejects_bad_values(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        ServerConfig(served_model_name="m", **options)
