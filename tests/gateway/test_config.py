"""The gateway config file: the documented example, `${NAME}` interpolation, `--upstream` configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seekserve.errors import ConfigError
from seekserve.gateway.config import (
    CacheKind,
    EngineKind,
    GatewayConfig,
    ModelConfig,
    RoutingKind,
    from_upstreams,
    interpolate_env,
    load_config,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"


def docs_example() -> str:
    """The first ```yaml block of docs/gateway.md."""
    match = re.search(r"^```yaml\n(.*?)^```", DOCS.read_text(), re.MULTILINE | re.DOTALL)
    assert match is not None, f"{DOCS} has no ```yaml block"
    return match.group(1)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_the_documented_example_validates(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, docs_example()), environ={"DEEPSEEK_API_KEY": "sk-doc"})
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 4000)
    assert [(b.name, b.url, b.models) for b in config.backends] == [
        ("r1-a", "http://10.0.0.1:8000/v1", ("deepseek-r1",)),
        ("r1-b", "http://10.0.0.2:8000/v1", ("deepseek-r1",)),
        ("distill", "http://10.0.0.3:8000/v1", ("r1-distill-7b",)),
        ("deepseek-api", "https://api.deepseek.com/v1", ("deepseek-reasoner",)),
    ]
    api = config.backends[3]
    assert (api.api_key, api.engine, api.weight, api.timeout_s) == ("sk-doc", EngineKind.OPENAI, 0.5, 900.0)
    assert config.backends[2].engine is EngineKind.SEEKSERVE
    assert config.backends[0].engine is EngineKind.AUTO and config.backends[0].max_concurrency == 64
    assert config.backends[0].root_url == "http://10.0.0.1:8000"
    assert config.models == {
        "deepseek-r1": ModelConfig(routing=RoutingKind.PREFIX, fallback=("r1-distill-7b",)),
        "r1-distill-7b": ModelConfig(routing=RoutingKind.LEAST_LOADED),
    }
    assert config.model("not-listed") == ModelConfig()
    assert (config.retry.attempts, config.retry.budget_ratio) == (3, 0.2)
    assert (config.breaker.consecutive_failures, config.breaker.cooldown_s) == (5, 10.0)
    assert (config.health.interval_s, config.timeouts.inter_token_s) == (5.0, 30.0)
    assert (config.cache.backend, config.cache.url) == (CacheKind.REDIS, "redis://127.0.0.1:6379/0")
    assert config.limits.url == "redis://127.0.0.1:6379/0"
    assert (config.queue.max_waiting, config.queue.max_wait_s) == (256, 30.0)
    assert [(k.label, k.models, k.rpm, k.tpm, k.priority) for k in config.keys] == [
        ("team-a", (), 600, 200000, 2),
        ("batch", ("r1-distill-7b",), 60, None, 0),
    ]


def test_the_documented_example_needs_its_env_var(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, docs_example()), environ={})
    assert str(caught.value) == (
        "${DEEPSEEK_API_KEY} is used in the gateway config but DEEPSEEK_API_KEY is not set: "
        "export it or write ${DEEPSEEK_API_KEY:-default}"
    )


def test_env_defaults() -> None:
    text = "a=${A:-one} b=${B:-} c=${C:-x:-y} d=${D}"
    assert interpolate_env(text, {"D": "four"}) == "a=one b= c=x:-y d=four"
    assert interpolate_env(text, {"A": "1", "B": "2", "C": "3", "D": "4"}) == "a=1 b=2 c=3 d=4"
    assert interpolate_env(text, {"A": "", "D": "4"}) == "a= b= c=x:-y d=4", "set but empty is set"
    assert interpolate_env("$A ${} ${1X}", {}) == "$A ${} ${1X}", "not references: left as written"


def test_env_default_in_a_file(tmp_path: Path) -> None:
    text = (
        'listen: {port: ${GW_PORT:-4100}}\nbackends: [{name: a, url: "${GW_URL:-http://127.0.0.1:9/v1}"}]\n'
    )
    path = write(tmp_path, text)
    config = load_config(path, environ={})
    assert (config.listen.port, config.backends[0].url) == (4100, "http://127.0.0.1:9/v1")
    config = load_config(path, environ={"GW_PORT": "4200", "GW_URL": "https://x.example/v1/"})
    assert (config.listen.port, config.backends[0].url) == (4200, "https://x.example/v1")


def test_from_upstreams_builds_one_backend_per_url() -> None:
    config = from_upstreams(["http://10.0.0.1:8000/v1/", "https://api.example/v1"], host="0.0.0.0", port=4100)
    assert [(b.name, b.url, b.models, b.engine) for b in config.backends] == [
        ("upstream0", "http://10.0.0.1:8000/v1", (), EngineKind.AUTO),
        ("upstream1", "https://api.example/v1", (), EngineKind.AUTO),
    ]
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 4100)
    defaults = GatewayConfig(backends=config.backends, listen=config.listen)
    assert config == defaults, "every other section keeps its defaults"
    cached = from_upstreams(["http://10.0.0.1:8000/v1"], cache={"backend": "memory"})
    assert cached.cache.backend is CacheKind.MEMORY and (cached.listen.host, cached.listen.port) == (
        "127.0.0.1",
        4000,
    )


def test_from_upstreams_refuses_what_is_not_an_url() -> None:
    with pytest.raises(ConfigError) as caught:
        from_upstreams(["http://ok:1/v1", "10.0.0.1:8000"])
    assert str(caught.value) == (
        "--upstream: backends.1.url: url '10.0.0.1:8000' is not an http(s) URL: "
        "give the OpenAI base URL, http://host:port/v1"
    )
    with pytest.raises(ConfigError) as caught:
        from_upstreams([])
    assert (
        str(caught.value) == "--upstream: backends: Tuple should have at least 1 item after validation, not 0"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "backends: [{name: a, url: 'http://h/v1', wieght: 2}]",
            "backends.0.wieght: Extra inputs are not permitted",
        ),
        (
            "backends: [{name: a, url: 'http://h/v1'}]\nmodels: {m: {fallback: [m]}}",
            "(top): model 'm' lists itself in its fallback chain",
        ),
        (
            "backends: [{name: a, url: 'http://h/v1'}]\ncache: {backend: redis}",
            "cache: cache.backend redis needs cache.url (redis://host:6379/0 or memcached://host:11211)",
        ),
        (
            "backends: [{name: a, url: 'http://h/v1'}]\nkeys: [{key_sha256: abc}]",
            'keys.0.key_sha256: key_sha256 must be 64 hex digits: printf %s "$KEY" | sha256sum',
        ),
    ],
    ids=["typo", "self-fallback", "cache-url", "key-hash"],
)
def test_invalid_files_name_the_field(text: str, message: str, tmp_path: Path) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == f"{path}: {message}"


def test_unreadable_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cannot read gateway config .*absent\.yaml: No such file"):
        load_config(tmp_path / "absent.yaml")
    path = write(tmp_path, "backends: [unclosed")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))} is not valid YAML: "):
        load_config(path, environ={})
