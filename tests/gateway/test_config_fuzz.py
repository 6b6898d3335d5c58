"""Hostile gateway config files: whatever the bytes, loading gives a GatewayConfig or a ConfigError.

Random bytes, random YAML documents, the documented example with characters overwritten, and the
classic attacks on YAML loaders: tags that build Python objects, an alias bomb, deep nesting.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import budget
from gateway.test_config import docs_example
from seekserve.errors import ConfigError
from seekserve.gateway.config import GatewayConfig, load_config

ENV = {"DEEPSEEK_API_KEY": "sk-doc"}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-fuzz") / "gateway.yaml"


def load(path: Path, data: bytes) -> GatewayConfig | None:
    """The config `data` makes, or None when it is refused with a ConfigError naming the file."""
    path.write_bytes(data)
    try:
        return load_config(path, environ=ENV)
    except ConfigError as e:
        assert str(path) in str(e) or "${" in str(e), e
        return None


@budget(150)
@given(data=st.binary(max_size=200))
def test_random_bytes(scratch: Path, data: bytes) -> None:
    load(scratch, data)


SCALARS = st.none() | st.booleans() | st.integers(-5, 70000) | st.floats() | st.text(max_size=8)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
SECTIONS = st.sampled_from(
    ["listen", "backends", "models", "retry", "breaker", "health", "timeouts", "cache", "keys", "limits",
     "queue", "search", "max_body_bytes", "prefix_chars", "access_log", "bogus"]
)  # fmt: skip


@budget(150)
@given(document=st.dictionaries(SECTIONS, VALUES, max_size=5))
def test_random_documents(scratch: Path, document: dict[str, object]) -> None:
    load(scratch, yaml.safe_dump(document).encode())


EDITS = [b":", b"-", b" ", b"{", b"]", b"'", b"\n", b"&a", b"*a", b"9", b"\xff"]


@budget(150)
@given(data=st.data())
def test_the_documented_example_with_characters_overwritten(scratch: Path, data: st.DataObject) -> None:
    text = bytearray(docs_example().encode())
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(0, len(text) - 1), label="at")
        text[at : at + 1] = data.draw(
            st.sampled_from([b":", b"-", b" ", b"{", b"]", b"'", b"\n", b"&a", b"*a", b"9", b"\xff"])
        )
    load(scratch, bytes(text))


_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
ATTACKS = {
    "python object tag": (
        "backends: !!python/object/apply:os.system ['touch {marker}']", "is not valid YAML"),
    "python name tag": ("backends: [!!python/name:os.system {}]", "is not valid YAML"),
    "alias bomb": (_BOMB + "backends: *i\n", "holds more than 100000 values once its aliases"),
    "nesting 10k deep": (
        "backends: " + "[" * 10_000 + "]" * 10_000, "nests deeper than a gateway config can"),
    "not UTF-8": ("backends: [{name: \udcff}]", "is not UTF-8 text (byte 18 is 0xff)"),
    "a list at the top": ("- backends", "the top level must be a mapping"),
}  # fmt: skip


@pytest.mark.parametrize("name", ATTACKS)
def test_attacks_on_yaml_loaders_are_refused(scratch: Path, tmp_path: Path, name: str) -> None:
    text, words = ATTACKS[name]
    marker = tmp_path / "ran"
    scratch.write_bytes(text.replace("{marker}", str(marker)).encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError, match=r"^" + str(scratch).replace(".", r"\.")) as caught:
        load_config(scratch, environ=ENV)
    assert words in str(caught.value)
    assert not marker.exists()
