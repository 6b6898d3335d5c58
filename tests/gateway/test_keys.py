from __future__ import annotations

import hashlib

import pytest

from seekserve.gateway import keys as keys_module
from seekserve.gateway.config import KeyConfig
from seekserve.gateway.keys import KeyStore


def make_key(secret: str, **fields: object) -> KeyConfig:
    return KeyConfig.model_validate({"key_sha256": hashlib.sha256(secret.encode()).hexdigest(), **fields})


def make_store() -> tuple[KeyStore, KeyConfig, KeyConfig]:
    alpha = make_key("sk-alpha", name="alpha", models=["r1"])
    beta = make_key("sk-beta")
    return KeyStore([alpha, beta]), alpha, beta


def test_known_keys_authenticate_by_their_hash() -> None:
    store, alpha, beta = make_store()
    assert not store.open
    assert len(store) == 2
    assert store.authenticate("Bearer sk-alpha") is alpha
    assert store.authenticate("Bearer sk-beta") is beta


@pytest.mark.parametrize("header", ["bearer sk-alpha", "BEARER sk-alpha", "Bearer   sk-alpha  "])
def test_scheme_is_case_insensitive_and_spaces_around_the_key_are_ignored(header: str) -> None:
    store, alpha, _ = make_store()
    assert store.authenticate(header) is alpha


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "sk-alpha",
        "Basic sk-alpha",
        "Token sk-alpha",
        "Bearer sk-alph",
        "Bearer sk-alpha2",
        "Bearer SK-ALPHA",
        "Bearer sk-gamma",
        "Bearer " + hashlib.sha256(b"sk-alpha").hexdigest(),  # the hash itself is not a key
        "Bearer sk-\udcff",
    ],
)
def test_missing_malformed_or_unknown_keys_are_refused(header: str | None) -> None:
    store, _, _ = make_store()
    assert store.authenticate(header) is None


def test_the_stored_hash_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    store, alpha, _ = make_store()
    calls: list[tuple[str, str]] = []
    answer = True

    def compare_digest(a: str, b: str) -> bool:
        calls.append((a, b))
        return answer

    monkeypatch.setattr(keys_module.hmac, "compare_digest", compare_digest)
    assert store.authenticate("Bearer sk-alpha") is alpha
    assert calls == [(alpha.key_sha256, alpha.key_sha256)]
    answer = False  # the comparison decides, not the dict lookup alone
    assert store.authenticate("Bearer sk-alpha") is None
    assert len(calls) == 2
    assert store.authenticate("Bearer sk-unknown") is None
    assert len(calls) == 2  # an unknown hash has nothing to compare against


def test_no_keys_leaves_the_gateway_open() -> None:
    store = KeyStore([])
    assert store.open
    assert len(store) == 0
    assert store.authenticate("Bearer anything") is None
    assert store.authenticate(None) is None
    assert store.allows(None, "r1")


def test_allowed_models() -> None:
    store, alpha, beta = make_store()
    assert store.allows(alpha, "r1")
    assert not store.allows(alpha, "r1-distill-7b")
    assert not store.allows(alpha, "")
    assert store.allows(beta, "r1")
    assert store.allows(beta, "anything")
    assert store.allows(None, "anything")


def test_duplicate_hashes_are_refused() -> None:
    with pytest.raises(ValueError, match="1 keys share a key_sha256"):
        KeyStore([make_key("sk-alpha"), make_key("sk-alpha", name="again")])


def test_uppercase_configured_hash_matches() -> None:
    digest = hashlib.sha256(b"sk-upper").hexdigest().upper()
    key = KeyConfig(key_sha256=digest)
    assert KeyStore([key]).authenticate("Bearer sk-upper") is key
