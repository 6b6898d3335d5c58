"""API keys of the gateway: who a request comes from and which models it may use.

Keys are configured by their SHA-256 (`keys: [{key_sha256: ...}]`), so the config file never holds
a key. A request's `Authorization: Bearer <key>` is hashed and looked up in a dict; the stored hash
is then compared with `hmac.compare_digest`, so the comparison takes the same time whatever the
bytes. With no keys configured the gateway is open: every request is let through, and the caller
checks `KeyStore.open` before treating a None from `authenticate` as a refusal.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from seekserve.gateway.config import KeyConfig

__all__ = ["KeyStore"]

_BEARER = "bearer"


class KeyStore:
    """The configured keys, by hash. Read-only after construction; a config reload builds a new one."""

    def __init__(self, keys: Sequence[KeyConfig]) -> None:
        self._by_hash: dict[str, KeyConfig] = {key.key_sha256: key for key in keys}
        if len(self._by_hash) != len(keys):
            raise ValueError(
                f"{len(keys) - len(self._by_hash)} keys share a key_sha256 with another: give each key once"
            )

    @property
    def open(self) -> bool:
        """True when no keys are configured: the gateway serves anyone."""
        return not self._by_hash

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, authorization: str | None) -> KeyConfig | None:
        """The key named by an `Authorization` header value, or None.

        The header must be `Bearer <key>` (the scheme in any case, spaces around the key ignored).
        None when the header is missing, malformed or names an unknown key, and always None when the
        gateway is open: callers refuse a None only when `open` is False.
        """
        if authorization is None or not self._by_hash:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != _BEARER:
            return None
        token = token.strip()
        if not token:
            return None
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        key = self._by_hash.get(digest)
        if key is None or not hmac.compare_digest(digest, key.key_sha256):
            return None
        return key

    def allows(self, key: KeyConfig | None, model: str) -> bool:
        """May `key` use `model`? None (an open gateway) and a key without `models` may use all."""
        return key is None or not key.models or model in key.models
