"""seekserve errors at the HTTP edge: statuses and OpenAI's error JSON.

{"error": {"message": "...", "type": "invalid_request_error", "param": "temperature", "code": null}}

400 invalid_request_error      bad parameters, malformed JSON, prompt longer than the context
401 invalid_request_error      missing or wrong API key (code invalid_api_key)
404 invalid_request_error      unknown model (code model_not_found) or path
408 timeout_error              the request ran past --request-timeout-s
499 request_aborted            the client went away first (only seen in the access log)
413 invalid_request_error      body over --max-body-bytes
429 overloaded_error           waiting queue full (with Retry-After)
503 service_unavailable_error  model still loading, or the engine died
500 server_error               anything else: a bug, logged with its traceback
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from seekserve.errors import (
    AuthenticationError,
    EngineDeadError,
    EngineNotReadyError,
    EngineOverloadedError,
    InvalidRequestError,
    ModelNotFoundError,
    PromptTooLongError,
    RequestAbortedError,
    RequestTimeoutError,
    RequestTooLargeError,
)
from seekserve.server.access_log import access_record
from seekserve.server.responses import ErrorBody, ErrorResponse

__all__ = [
    "ErrorKind",
    "error_body",
    "error_kind",
    "error_label",
    "error_response",
    "install_error_handlers",
    "validation_message",
]

_LOADING_RETRY_AFTER_S = 5
_MAX_LISTED_ERRORS = 3


@dataclass(frozen=True)
class ErrorKind:
    status: int
    type: str
    code: str | None = None


_INVALID = "invalid_request_error"
_KINDS: tuple[tuple[type[Exception], ErrorKind], ...] = (
    (PromptTooLongError, ErrorKind(400, _INVALID, "context_length_exceeded")),
    (ModelNotFoundError, ErrorKind(404, _INVALID, "model_not_found")),
    (RequestTooLargeError, ErrorKind(413, _INVALID, "request_too_large")),
    (InvalidRequestError, ErrorKind(400, _INVALID)),
    (AuthenticationError, ErrorKind(401, _INVALID, "invalid_api_key")),
    (RequestTimeoutError, ErrorKind(408, "timeout_error", "request_timeout")),
    (RequestAbortedError, ErrorKind(499, "request_aborted", "client_closed_request")),
    (EngineOverloadedError, ErrorKind(429, "overloaded_error", "server_overloaded")),
    (EngineNotReadyError, ErrorKind(503, "service_unavailable_error", "model_loading")),
    (EngineDeadError, ErrorKind(503, "service_unavailable_error", "engine_dead")),
)
_INTERNAL = ErrorKind(500, "server_error", "internal_error")
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})
_FASTAPI_UNPARSED = "There was an error parsing the body"
"""FastAPI's message for a body its JSON parser raised on with anything but a JSONDecodeError."""


def error_kind(error: BaseException) -> ErrorKind:
    """The status, type and code of an error; anything unexpected is a 500."""
    for cls, kind in _KINDS:
        if isinstance(error, cls):
            return kind
    return _INTERNAL


def error_label(error: BaseException) -> str:
    """The short name of an error for logs and metrics: its code, else its type."""
    kind = error_kind(error)
    return kind.code or kind.type


def error_body(error: BaseException) -> ErrorResponse:
    kind = error_kind(error)
    message = str(error) if kind is not _INTERNAL else "internal server error; the server log has the details"
    param = getattr(error, "param", None)
    return ErrorResponse(error=ErrorBody(message=message, type=kind.type, param=param, code=kind.code))


def error_response(error: BaseException) -> JSONResponse:
    """The HTTP response for an error, with Retry-After or WWW-Authenticate where they apply."""
    kind = error_kind(error)
    headers: dict[str, str] = {}
    if isinstance(error, EngineOverloadedError):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    elif isinstance(error, EngineNotReadyError):
        headers["Retry-After"] = str(_LOADING_RETRY_AFTER_S)
    elif isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(error).model_dump(), status_code=kind.status, headers=headers)


def validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """(message, param) for pydantic's errors about a request body."""
    errors = _relevant(errors)
    described = []
    for err in errors[:_MAX_LISTED_ERRORS]:
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            return f"the request body is not valid JSON ({detail}): send a JSON object", None
        loc = _field_path(err.get("loc", ()))
        text = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        value = err.get("input")
        if err.get("type") != "missing" and isinstance(value, str | int | float | bool) and value != "":
            text += f" (got {value!r:.80})"
        described.append(f"{loc}: {text}" if loc else text)
    more = len(errors) - _MAX_LISTED_ERRORS
    message = "; ".join(described) + (f"; and {more} more" if more > 0 else "")
    param = _field_path(errors[0].get("loc", ())) if errors else ""
    return f"invalid request: {message}", param or None


def _field_path(loc: Sequence[Any]) -> str:
    """The dotted path of a field in the body, without the names pydantic gives a union's members."""
    return ".".join(str(part) for part in loc if part != "body" and not _is_union_member(part))


def _is_union_member(part: Any) -> bool:
    """`str`, `list[str]`, `function-after[...]`: pydantic's labels of union members, never field names."""
    return isinstance(part, str) and ("[" in part or "-" in part or part in _TYPE_LABELS)


def _relevant(errors: Sequence[Any]) -> list[Any]:
    """Where a value failed every member of a union (`stop`: a string or a list of at most 16), drop the
    members it was not even the type of and keep what is wrong with it as the member it is; one line
    per field and message."""
    paths = Counter(_field_path(err.get("loc", ())) for err in errors)
    kept = [
        err
        for err in errors
        if paths[_field_path(err.get("loc", ()))] == 1 or not str(err.get("type", "")).endswith("_type")
    ]
    unique: dict[tuple[str, str], Any] = {}
    for err in kept or errors:
        unique.setdefault((_field_path(err.get("loc", ())), str(err.get("msg"))), err)
    return list(unique.values())


def _openai_json(status: int, message: str, type_: str, param: str | None, code: str | None) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=message, type=type_, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in OpenAI's JSON shape instead of FastAPI's `{"detail": ...}`."""

    async def on_seekserve_error(request: Request, error: Exception) -> JSONResponse:
        access_record(request).error = error_label(error)
        return error_response(error)

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError), "handler registered for RequestValidationError"
        message, param = validation_message(error.errors())
        access_record(request).error = _INVALID
        return _openai_json(400, message, _INVALID, param, None)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException), "handler registered for HTTPException"
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        if message == _FASTAPI_UNPARSED:  # JSON that Python's parser gives up on, or bytes that are not UTF-8
            message = (
                "the request body cannot be read as JSON (it is not UTF-8, nests too deeply, or holds an "
                "integer of more than 4300 digits): send a JSON object encoded in UTF-8"
            )
        if error.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path} (see /docs for the API)"
        kind = "server_error" if error.status_code >= 500 else _INVALID
        code = _HTTP_CODES.get(error.status_code)
        access_record(request).error = code or kind
        return _openai_json(error.status_code, message, kind, None, code)

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        access_record(request).error = error_label(error)
        return error_response(error)  # Starlette re-raises it afterwards, so the server logs the traceback

    for cls, _ in _KINDS:
        app.add_exception_handler(cls, on_seekserve_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
