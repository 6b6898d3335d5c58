"""Gateway configuration: the YAML file of `seekserve gateway --config FILE`, validated with pydantic.

    listen:   {host: 127.0.0.1, port: 4000}
    backends: [{name: a, url: http://10.0.0.1:8000/v1, api_key: ${A_KEY}, models: [r1], weight: 1,
                max_concurrency: 64, timeout_s: 600}]
    models:   {r1: {fallback: [r1-distill-7b], routing: prefix}}
    retry:    {attempts: 3, base_s: 0.1, max_s: 2.0}
    cache:    {backend: memory, ttl_s: 600}
    keys:     [{key_sha256: 9f86d0..., models: [r1], rpm: 600, tpm: 200000, priority: 1}]
    search:   {web_search: auto, provider: searxng, searxng_url: http://127.0.0.1:8080}

`${NAME}` anywhere in the file is replaced by the environment variable NAME before parsing (an
unset one is an error; `${NAME:-default}` gives a default). Unknown keys are errors. Every section
has defaults, so `seekserve gateway --upstream URL` builds the same object with one backend.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seekserve.errors import ConfigError
from seekserve.search.config import SearchConfig

__all__ = [
    "BackendConfig",
    "BreakerConfig",
    "CacheConfig",
    "CacheKind",
    "EngineKind",
    "GatewayConfig",
    "HealthConfig",
    "KeyConfig",
    "LimitsConfig",
    "ListenConfig",
    "ModelConfig",
    "QueueConfig",
    "RetryConfig",
    "RoutingKind",
    "SearchSection",
    "TimeoutConfig",
    "from_upstreams",
    "interpolate_env",
    "load_config",
    "redacted_url",
    "validated",
]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_MAX_VALUES = 100_000
"""Values a config may hold once YAML aliases are expanded (a real one holds hundreds)."""

PositiveS = Annotated[float, Field(gt=0)]
_Model = TypeVar("_Model", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoutingKind(StrEnum):
    """How a model's backends are chosen for a request."""

    LEAST_LOADED = "least-loaded"
    """Least outstanding requests, power of two random choices (the default)."""
    PREFIX = "prefix"
    """The backend that last served the prompt's leading text, so its prefix cache hits."""
    SESSION = "session"
    """The backend that last served the request's `user`."""
    WEIGHTED = "weighted"
    """Random in proportion to the backends' `weight`."""
    ROUND_ROBIN = "round-robin"
    """Each available backend in turn."""


class EngineKind(StrEnum):
    """What serves behind a backend URL: decides how a broken stream is continued elsewhere."""

    AUTO = "auto"
    """Read from GET /v1/models (`owned_by`: seekserve, vllm, sglang); anything else is `openai`."""
    SEEKSERVE = "seekserve"
    VLLM = "vllm"
    SGLANG = "sglang"
    OPENAI = "openai"
    """A remote OpenAI-compatible API: its streams are relayed but cannot be continued elsewhere."""


class CacheKind(StrEnum):
    MEMORY = "memory"
    REDIS = "redis"
    MEMCACHED = "memcached"


class ListenConfig(_Section):
    host: str = "127.0.0.1"
    """Address to listen on; 0.0.0.0 listens on every interface (configure `keys` then)."""
    port: int = Field(default=4000, ge=0, le=65535)
    """TCP port; 0 picks a free one."""


class BackendConfig(_Section):
    """One upstream engine: `seekserve serve`, vLLM, SGLang or any OpenAI-compatible API."""

    name: str = Field(min_length=1)
    """Label in metrics, logs and the `x-seekserve-backend` header; unique."""
    url: str
    """OpenAI base URL as the openai SDK takes it: http://host:port/v1."""
    api_key: str | None = Field(default=None, repr=False)
    """Sent upstream as `Authorization: Bearer`; use ${ENV} in the file rather than the key itself."""
    models: tuple[str, ...] = ()
    """Models it serves; empty means ask its GET /v1/models at start and at each health check."""
    weight: float = Field(default=1.0, gt=0)
    """Share under `weighted` routing."""
    max_concurrency: int = Field(default=64, ge=1)
    """Requests in flight at once; past it the backend counts as saturated."""
    timeout_s: float = Field(default=600.0, gt=0)
    """Longest one upstream request may take, stream included."""
    engine: EngineKind = EngineKind.AUTO
    """seekserve and vLLM streams continue exactly (token ids), SGLang's as text, remote APIs' not at all."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"url {url!r} is not an http(s) URL: give the OpenAI base URL, http://host:port/v1"
            )
        return url.rstrip("/")

    @property
    def root_url(self) -> str:
        """The server's root (the base URL without its trailing /v1): /health and /metrics live there."""
        return self.url[: -len("/v1")] if self.url.endswith("/v1") else self.url


class ModelConfig(_Section):
    fallback: tuple[str, ...] = ()
    """Models to try in order when this one cannot answer (exhausted retries, open circuits, overload)."""
    routing: RoutingKind = RoutingKind.LEAST_LOADED


class RetryConfig(_Section):
    attempts: int = Field(default=3, ge=1, le=20)
    """Tries per model, the first included; each retry goes to another backend when one is free."""
    base_s: PositiveS = 0.05
    """Backoff before retry k is uniform in [0, min(max_s, base_s * 2**k)] (full jitter)."""
    max_s: PositiveS = 2.0
    budget_ratio: float = Field(default=0.2, ge=0)
    """Retries allowed per request sent, over time (a retry budget): 0.2 caps retries at 20 % extra load."""
    budget_min_per_s: float = Field(default=5.0, ge=0)
    """Retries always allowed per second, so a quiet gateway still retries."""


class BreakerConfig(_Section):
    """Per-backend circuit breaker: closed → open → half-open (one probe) → closed or open again."""

    consecutive_failures: int = Field(default=5, ge=1)
    """Open after this many failures in a row."""
    error_ratio: float = Field(default=0.5, gt=0, le=1)
    """Or when this share of the last `window` requests failed..."""
    window: int = Field(default=20, ge=1)
    min_requests: int = Field(default=10, ge=1)
    """...once the window holds at least this many."""
    cooldown_s: PositiveS = 10.0
    """Time open before one probe request is let through; doubles on each failed probe."""
    max_cooldown_s: PositiveS = 120.0


class HealthConfig(_Section):
    interval_s: PositiveS = 5.0
    """Active checks: GET /health (and /metrics for load, /v1/models for discovery) this often."""
    timeout_s: PositiveS = 2.0
    unhealthy_after: int = Field(default=2, ge=1)
    """Failed checks in a row before a backend is taken out of rotation."""


class TimeoutConfig(_Section):
    connect_s: PositiveS = 3.0
    first_byte_s: PositiveS = 120.0
    """Longest wait for the response headers (the backend's queue and prefill)."""
    inter_token_s: PositiveS = 30.0
    """Longest silence inside a stream before the backend counts as stalled and the stream moves on."""


class CacheConfig(_Section):
    backend: CacheKind | None = None
    """None: no response cache."""
    url: str | None = None
    """redis://host:6379/0 or memcached://host:11211; required for those two."""
    ttl_s: PositiveS = 600.0
    max_entries: int = Field(default=10_000, ge=1)
    """In-memory LRU size."""
    max_entry_bytes: int = Field(default=1 << 20, ge=1024)
    """Responses larger than this are not cached."""

    @model_validator(mode="after")
    def _check_url(self) -> CacheConfig:
        if self.backend in (CacheKind.REDIS, CacheKind.MEMCACHED) and not self.url:
            raise ValueError(
                f"cache.backend {self.backend.value} needs cache.url (redis://host:6379/0 or memcached://host:11211)"
            )
        return self


class KeyConfig(_Section):
    key_sha256: str
    """Hex SHA-256 of the API key (`printf %s "$KEY" | sha256sum`); the key itself is never stored."""
    name: str | None = None
    """Label in logs and metrics; defaults to the first 8 hex digits of the hash."""
    models: tuple[str, ...] = ()
    """Models the key may use; empty means all."""
    rpm: int | None = Field(default=None, ge=1)
    """Requests per minute; None: unlimited."""
    tpm: int | None = Field(default=None, ge=1)
    """Tokens (prompt + completion) per minute, counted as a stream runs; None: unlimited."""
    priority: int = Field(default=1, ge=0, le=9)
    """Higher is served first when backends are saturated; the lowest is shed first."""

    @field_validator("key_sha256")
    @classmethod
    def _check_hash(cls, value: str) -> str:
        value = value.lower()
        if not _SHA256_HEX.match(value):
            raise ValueError('key_sha256 must be 64 hex digits: printf %s "$KEY" | sha256sum')
        return value

    @property
    def label(self) -> str:
        return self.name or self.key_sha256[:8]


class LimitsConfig(_Section):
    url: str | None = None
    """redis://... to share rate-limit state across gateway replicas; None keeps it in this process."""
    fail_open: bool = True
    """While that Redis cannot be reached: True lets requests through unlimited (logged); False
    answers 503 to the requests of keys that have an rpm or tpm limit, until Redis answers again."""


class QueueConfig(_Section):
    max_waiting: int = Field(default=256, ge=0)
    """Requests held while every backend of their model is saturated; past it the lowest priority is shed."""
    max_wait_s: PositiveS = 30.0
    """Longest a request waits for a free backend before 429."""


class SearchSection(_Section):
    """Web-search grounding of chat requests at the gateway, for any backend (docs/search.md): the
    keys of `seekserve serve`'s --web-search and --search-* flags."""

    web_search: Literal["off", "auto", "on"] = "off"
    provider: str = "local"
    search_dir: str | None = None
    searxng_url: str | None = None
    api_url: str | None = None
    allow_hosts: tuple[str, ...] = ()
    total_budget_s: float = 3.0
    max_results: int = 5
    max_context_tokens: int = 2000
    cache_ttl_s: float = 0.0
    queries: str = "last"
    max_queries: int = 3
    query_model: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchSection:
        self.search_config()  # ConfigError (a ValueError) names the key and the fix
        return self

    def search_config(self) -> SearchConfig:
        return SearchConfig(
            provider=self.provider,  # type: ignore[arg-type]  # converted and checked by SearchConfig
            search_dir=None if self.search_dir is None else Path(self.search_dir),
            searxng_url=self.searxng_url,
            api_url=self.api_url,
            allow_hosts=self.allow_hosts,
            total_budget_s=self.total_budget_s,
            max_results=self.max_results,
            max_context_tokens=self.max_context_tokens,
            cache_ttl_s=self.cache_ttl_s,
            queries=self.queries,  # type: ignore[arg-type]  # converted and checked by SearchConfig
            max_queries=self.max_queries,
            query_model=self.query_model,
        )


class GatewayConfig(_Section):
    listen: ListenConfig = Field(default_factory=ListenConfig)
    backends: tuple[BackendConfig, ...] = Field(min_length=1)
    models: dict[str, ModelConfig] = {}
    retry: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    keys: tuple[KeyConfig, ...] = ()
    """API keys; empty leaves the gateway open (as `seekserve serve` without --api-key)."""
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    prefix_chars: int = Field(default=512, ge=16)
    """Prefix routing keys on this many leading characters of the prompt."""
    prefix_max_entries: int = Field(default=100_000, ge=1)
    """Prefix and session maps are LRUs of this size, so they never grow without bound."""
    prefix_imbalance: int = Field(default=8, ge=1)
    """Prefix/session affinity spills to the least loaded backend past this many extra in-flight requests."""
    access_log: bool = True
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """Largest completion request body accepted; larger ones get 413 before they are read whole."""
    search: SearchSection = Field(default_factory=SearchSection)

    @model_validator(mode="after")
    def _check_names(self) -> GatewayConfig:
        names = [b.name for b in self.backends]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"backend names must be unique: {', '.join(duplicates)} appear more than once")
        for model, spec in self.models.items():
            if model in spec.fallback:
                raise ValueError(f"model {model!r} lists itself in its fallback chain")
        hashes = [k.key_sha256 for k in self.keys]
        if len(set(hashes)) != len(hashes):
            raise ValueError("keys: the same key_sha256 appears twice")
        return self

    def model(self, name: str) -> ModelConfig:
        """The settings of model `name` (defaults when the file does not list it)."""
        return self.models.get(name, _DEFAULT_MODEL)


_DEFAULT_MODEL = ModelConfig()


def redacted_url(url: str) -> str:
    """`url` with its password replaced by `***`, for logs and errors (redis://:secret@host -> redis://:***@host)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def interpolate_env(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace `${NAME}` and `${NAME:-default}` with environment values.

    An unset NAME without a default is an error."""
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"${{{name}}} is used in the gateway config but {name} is not set: "
            f"export it or write ${{{name}:-default}}"
        )

    return _ENV_REF.sub(replace, text)


def _validated(data: Any, source: str) -> GatewayConfig:
    return validated(GatewayConfig, data, source)


def validated(model: type[_Model], data: Any, source: str) -> _Model:
    """`model` validated from `data`, or a ConfigError naming `source` and every problem by its path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg'].removeprefix('Value error, ')}"
            for err in errors
            if not _only_echoes_an_item(err["type"], err["loc"], errors)
        )
        raise ConfigError(f"{source}: {problems}") from exc


def _only_echoes_an_item(kind: str, loc: tuple[int | str, ...], errors: list[Any]) -> bool:
    """pydantic also calls `backends` too short (0 items) when one of its items failed: the item's own
    error says what is wrong, so that one is left out."""
    return kind == "too_short" and any(
        len(e["loc"]) > len(loc) and e["loc"][: len(loc)] == loc for e in errors
    )


def load_config(path: Path, environ: dict[str, str] | None = None) -> GatewayConfig:
    """Read, interpolate and validate a gateway YAML file.

    YAML is read with `safe_load` (no tags that build Python objects); a document that nests
    deeper than the parser recurses, or whose aliases expand to more than _MAX_VALUES values (a
    "billion laughs" file), is refused before validation walks it.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read gateway config {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})"
        ) from exc
    try:
        data = yaml.safe_load(interpolate_env(text, environ))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path} nests deeper than a gateway config can: flatten it") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (listen:, backends:, ...)")
    if _num_values(data, _MAX_VALUES) > _MAX_VALUES:
        raise ConfigError(
            f"{path} holds more than {_MAX_VALUES} values once its aliases (*name) are expanded: "
            "write the config out without repeating aliases"
        )
    return _validated(data, str(path))


def _num_values(data: Any, limit: int) -> int:
    """How many values `data` holds with shared parts counted each time they appear; stops past `limit`."""
    count, stack = 0, [data]
    while stack and count <= limit:
        value = stack.pop()
        count += 1
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count


def from_upstreams(
    urls: list[str], host: str = "127.0.0.1", port: int = 4000, **sections: Any
) -> GatewayConfig:
    """The config of `seekserve gateway --upstream URL ...`: one backend per URL, models discovered."""
    backends = [{"name": f"upstream{i}", "url": url} for i, url in enumerate(urls)]
    return _validated(
        {"listen": {"host": host, "port": port}, "backends": backends, **sections}, "--upstream"
    )
