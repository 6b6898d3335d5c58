"""The gateway's OpenAPI document, served at GET /openapi.json: its public routes and their answers.

The gateway forwards request bodies to its backends as they are, so the body schemas name only
what the gateway itself reads (`model`, `messages` or `prompt`, `stream`) and the common sampling
fields, and let anything else through (`additionalProperties`): the backend validates the rest.
`model` is an enum of the models the caller may use, so schema-driven clients and fuzzers reach
the backends; without a valid key on a keyed gateway the list is left out.
"""

from __future__ import annotations

from typing import Any

from seekserve import __version__

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}
_OBJECT = {"type": "object"}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "Invalid body (the backend's own 400 is passed on as it came)",
        401: "Missing or unknown API key",
        403: "The key may not use this model",
        404: "No backend serves this model, or no such route",
        413: "The body is over max_body_bytes",
        429: "Rate limited, or every backend is busy (with Retry-After)",
        502: "No backend could answer",
        503: "The backend answered 503",
    }
    return {
        str(s): {"description": meaning[s], "content": {"application/json": {"schema": _ERROR}}}
        for s in statuses
    }


_SAMPLING: dict[str, Any] = {
    "stream": {"type": "boolean"},
    "max_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "n": {"type": "integer", "minimum": 1, "maximum": 128},
    "seed": {"type": "integer"},
    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 16}]},
    "user": {"type": "string"},
    "cache": {"type": "boolean", "description": "false: neither read nor fill the gateway's cache"},
}
_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant"]},
        "content": {"type": "string"},
    },
}
_COMPLETION_ANSWER = {
    "description": "The answer, whole (application/json) or as server-sent events ending in [DONE]",
    "content": {"application/json": {"schema": _OBJECT}, "text/event-stream": {"schema": {"type": "string"}}},
}


def _body(model: dict[str, Any], required: str, field: dict[str, Any]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["model", required],
        "properties": {"model": model, required: field, **_SAMPLING},
        "additionalProperties": True,
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _completion_routes(model: dict[str, Any]) -> dict[str, Any]:
    statuses = (400, 401, 403, 404, 413, 429, 502, 503)
    prompt = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
    messages = {"type": "array", "items": _MESSAGE, "minItems": 1}
    return {
        "/v1/chat/completions": {
            "post": {
                "summary": "Answer a conversation, through a backend serving `model`",
                "operationId": "createChatCompletion",
                "requestBody": _body(model, "messages", messages),
                "responses": {"200": _COMPLETION_ANSWER, **_errors(*statuses)},
            }
        },
        "/v1/completions": {
            "post": {
                "summary": "Continue a prompt, through a backend serving `model`",
                "operationId": "createCompletion",
                "requestBody": _body(model, "prompt", prompt),
                "responses": {"200": _COMPLETION_ANSWER, **_errors(*statuses)},
            }
        },
    }


def _service_routes() -> dict[str, Any]:
    def get(summary: str, operation: str, responses: dict[str, Any]) -> dict[str, Any]:
        return {"get": {"summary": summary, "operationId": operation, "responses": responses}}

    json_object = {"content": {"application/json": {"schema": _OBJECT}}}
    html = {"content": {"text/html": {"schema": {"type": "string"}}}}
    models = get(
        "The models the caller may use", "listModels", {"200": {"description": "A list", **json_object}}
    )
    models["get"]["responses"].update(_errors(401))
    return {
        "/v1/models": models,
        "/health": get(
            "200 while a backend can answer, else 503; each backend's state",
            "health",
            {
                "200": {"description": "ok", **json_object},
                "503": {"description": "unavailable", **json_object},
            },
        ),
        "/metrics": get(
            "Prometheus text exposition",
            "metrics",
            {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
        ),
        "/openapi.json": get(
            "This document", "openapi", {"200": {"description": "OpenAPI 3.1", **json_object}}
        ),
        "/chat": get("The chat page", "chatPage", {"200": {"description": "HTML", **html}}),
        "/": get("A redirect to the chat page", "root", {"307": {"description": "to /chat"}}),
        "/chat/{asset}": {
            "get": {
                "summary": "A file of the chat page (its scripts, styles, icon)",
                "operationId": "chatAsset",
                "parameters": [
                    {"name": "asset", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "The file"}, **_errors(404)},
            }
        },
    }


def openapi_document(models: list[str] | None, keyed: bool) -> dict[str, Any]:
    """The document for a caller that may use `models` (None: not told, a keyed gateway without a key)."""
    model: dict[str, Any] = {"type": "string"}
    if models:
        model["enum"] = models
    components: dict[str, Any] = {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["message", "type", "param", "code"],
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                            "code": {"type": ["string", "null"]},
                        },
                    }
                },
            }
        }
    }
    paths = {**_completion_routes(model), **_service_routes()}
    if keyed:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, item in paths.items():
            if path.startswith("/v1/"):
                for operation in item.values():
                    operation["security"] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "seekserve gateway",
            "version": __version__,
            "description": "One OpenAI-compatible endpoint in front of many engines (docs/gateway.md).",
        },
        "paths": paths,
        "components": components,
    }
