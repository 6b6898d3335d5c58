"""API key check for /v1/*: `Authorization: Bearer KEY`, before the body is read."""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from seekserve.errors import AuthenticationError
from seekserve.server.errors import error_label, error_response

__all__ = ["PROTECTED_PREFIX", "ApiKeyMiddleware"]

PROTECTED_PREFIX = "/v1/"
"""Paths that need the key; /health, /metrics, /version and the docs stay open for probes and scrapers."""


class ApiKeyMiddleware:
    """Answers 401 to /v1/* requests without the server's API key.

    The key sent and the server's are compared by their SHA-256 with `hmac.compare_digest`: the time
    taken depends neither on where they first differ nor on the length of either. Neither is logged.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._expected = hashlib.sha256(api_key.encode()).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        given = _bearer_token(scope)
        if given is not None and hmac.compare_digest(hashlib.sha256(given).digest(), self._expected):
            await self.app(scope, receive, send)
            return
        if given is None:
            error = AuthenticationError(
                "this server needs an API key: send it as the header 'Authorization: Bearer <key>'"
            )
        else:
            error = AuthenticationError("the API key is not valid for this server: check the key you sent")
        state = scope.get("state")
        if isinstance(state, dict) and state.get("access") is not None:
            state["access"].error = error_label(error)
        await error_response(error)(scope, receive, send)


def _bearer_token(scope: Scope) -> bytes | None:
    header = next((v for k, v in scope.get("headers") or [] if k == b"authorization"), None)
    if header is None:
        return None
    scheme, _, token = header.strip().partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else None
