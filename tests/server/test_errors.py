from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from server.conftest import MAX_BODY_BYTES
from server.live import LiveServer, assert_openai_error, post

USER = [{"role": "user", "content": "Hi"}]
CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    ("path", "body", "param", "words"),
    [
        (CHAT, b'{"messages": [', None, "not valid JSON"),
        (CHAT, b"[1, 2]", None, "valid dictionary"),
        (CHAT, b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
         "temperature", "finite"),
        (CHAT, {}, "messages", "Field required"),
        (CHAT, {"messages": "hi"}, "messages", "valid list"),
        (CHAT, {"messages": []}, "messages", "at least 1"),
        (CHAT, {"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role", "'system'"),
        (CHAT, {"messages": USER, "temperature": "hot"}, "temperature", "valid number"),
        (CHAT, {"messages": USER, "temperature": 3}, "temperature", "less than or equal to 2"),
        (CHAT, {"messages": USER, "n": 1.5}, "n", "valid integer"),
        (CHAT, {"messages": USER, "n": 0}, "n", "greater than or equal to 1"),
        (CHAT, {"messages": USER, "top_p": 0}, "top_p", "greater than 0"),
        (CHAT, {"messages": USER, "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        (CHAT, {"messages": USER, "presence_penalty": 5}, "presence_penalty", "less than"),
        (CHAT, {"messages": USER, "logprobs": True, "top_logprobs": 21}, "top_logprobs", "20"),
        (CHAT, {"messages": USER, "top_logprobs": 2}, None, "needs logprobs=true"),
        (CHAT, {"messages": USER, "stop": [1, 2]}, "stop", "valid string"),
        (CHAT, {"messages": USER, "max_tokens": 4, "min_tokens": 5}, "min_tokens",
         "must not exceed max_tokens=4"),
        (CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
         "messages.0.content", "'image_url' are not supported"),
        (CHAT, {"messages": USER, "tools": [{"type": "function"}]}, None, "tool calling"),
        (CHAT, {"messages": USER, "response_format": {"type": "json_object"}}, None,
         "'json_object' is not supported"),
        ("/v1/completions", {"prompt": []}, "prompt", None),
        ("/v1/completions", {"prompt": [-1]}, "prompt", None),
        ("/v1/completions", {"prompt": [99999]}, "prompt", "outside the vocabulary [0, 384)"),
        ("/v1/completions", {"prompt": "x", "suffix": "y"}, None, "suffix"),
        ("/v1/completions", {"prompt": "x", "echo": True, "logprobs": 1}, None, "echo with logprobs"),
        ("/v1/completions", {"prompt": "x", "logit_bias": {"5": 1}}, None, "logit_bias"),
    ],
)  # fmt: skip
def test_invalid_requests_get_400_naming_the_field(
    server: LiveServer, path: str, body: Any, param: str | None, words: str | None
) -> None:
    status, answer = post(server, path, body)
    assert status == 400, answer
    error = assert_openai_error(answer, "invalid_request_error")
    if param is not None:
        assert error["param"] is not None and error["param"].startswith(param), error
    if words is not None:
        assert words in error["message"], error


def test_unknown_fields_are_ignored(server: LiveServer) -> None:
    status, answer = post(
        server, "/v1/chat/completions", {"messages": USER, "max_tokens": 2, "frobnicate": 1}
    )
    assert status == 200 and answer["usage"]["completion_tokens"] <= 2


def test_prompt_longer_than_the_context_gives_both_lengths(server: LiveServer) -> None:
    status, answer = post(server, "/v1/completions", {"prompt": list(range(10, 210))})
    assert status == 400
    error = assert_openai_error(answer, "invalid_request_error", "context_length_exceeded")
    assert "200 tokens" in error["message"] and "128" in error["message"]
    with pytest.raises(openai.BadRequestError, match=r"prompt has \d+ and max_tokens asks for 500 more"):
        server.client().chat.completions.create(model="tiny", messages=USER, max_tokens=500)


def test_api_key_is_required_on_v1_only(server: LiveServer) -> None:
    wrong_key = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="wrong", max_retries=0)
    with wrong_key, pytest.raises(openai.AuthenticationError) as wrong:
        wrong_key.models.list()
    assert_openai_error(wrong.value.response.json(), "invalid_request_error", "invalid_api_key")
    assert wrong.value.response.headers["WWW-Authenticate"] == "Bearer"
    with server.http() as http:
        missing = http.post("/v1/chat/completions", json={"messages": USER}, headers={"Authorization": ""})
        assert missing.status_code == 401 and "needs an API key" in missing.json()["error"]["message"]
        lower = http.get("/v1/models", headers={"Authorization": f"bearer {server.api_key}"})
        assert lower.status_code == 200
        for open_path in ("/health", "/metrics", "/version", "/openapi.json"):
            assert http.get(open_path, headers={"Authorization": ""}).status_code == 200


def test_unknown_model_path_and_method(server: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        server.client().chat.completions.create(model="gpt-4", messages=USER)
    error = assert_openai_error(unknown.value.response.json(), "invalid_request_error", "model_not_found")
    assert error["param"] == "model" and "'tiny'" in error["message"]
    with server.http() as http:
        assert http.get("/v1/models/gpt-4").status_code == 404
        path = http.post("/v1/embeddings", json={})
        assert path.status_code == 404
        assert_openai_error(path.json(), "invalid_request_error", "not_found")
        method = http.get("/v1/chat/completions")
        assert method.status_code == 405
        assert_openai_error(method.json(), "invalid_request_error", "method_not_allowed")


def test_bodies_over_the_limit_get_413(server: LiveServer) -> None:
    big = {"messages": [{"role": "user", "content": "x" * MAX_BODY_BYTES}]}
    status, answer = post(server, "/v1/chat/completions", big)
    assert status == 413
    error = assert_openai_error(answer, "invalid_request_error", "request_too_large")
    assert str(MAX_BODY_BYTES) in error["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the server must count
        yield b'{"prompt": "'
        for _ in range(MAX_BODY_BYTES // 4096 + 1):
            yield b"y" * 4096
        yield b'"}'

    with server.http() as http:
        response = http.post(
            "/v1/completions", content=chunked(), headers={"Content-Type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_bad_requests_do_not_disturb_a_running_stream(server: LiveServer) -> None:
    client = server.client()
    stream = client.completions.create(
        model="tiny",
        prompt="Once",
        max_tokens=40,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    text = ""
    for i, chunk in enumerate(stream):
        text += chunk.choices[0].text
        if i < 3:
            assert post(server, "/v1/completions", b"{oops")[0] == 400
            assert post(server, "/v1/completions", {"prompt": list(range(10, 210))})[0] == 400
    whole = client.completions.create(
        model="tiny", prompt="Once", max_tokens=40, temperature=0, extra_body={"ignore_eos": True}
    )
    assert text == whole.choices[0].text
    assert whole.usage is not None and whole.usage.completion_tokens == 40
    server.wait_idle()
