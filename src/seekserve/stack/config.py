"""`StackConfig`: what `seekserve stack up` starts on one machine (deploy/local/stack.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from seekserve.errors import ConfigError

__all__ = ["StackConfig", "Switch", "load_stack_config"]


class Switch(StrEnum):
    """Whether a helper service (Redis, Prometheus) is started."""

    AUTO = "auto"
    """When its binary is on PATH; otherwise one line says it was left out."""
    ON = "on"
    """Always; a missing binary is an error."""
    OFF = "off"


@dataclass(frozen=True)
class StackConfig:
    model: str | None = None
    """What both engines serve (`seekserve serve --model`); None: the packaged default model."""
    served_model_name: str | None = None
    """The name clients send; None: seekserve serve's default for the model."""
    num_engines: int = 2
    """`seekserve serve` processes behind the gateway."""
    engine_args: tuple[str, ...] = ()
    """More arguments for every engine, e.g. ("--num-threads", "1")."""
    host: str = "127.0.0.1"
    """Where every process listens."""
    gateway_port: int = 4000
    """The gateway's port; 0 picks a free one (as do the other ports)."""
    engine_port: int = 8001
    """The first engine's port; engine i listens on engine_port + i (all free ones when 0)."""
    redis: Switch = Switch.AUTO
    """redis-server for the gateway's response cache and rate limits (else an in-memory cache)."""
    redis_port: int = 6379
    prometheus: Switch = Switch.AUTO
    """Prometheus scraping the engines and the gateway, with deploy/prometheus's rules."""
    prometheus_port: int = 9090
    scrape_interval_s: float = 15.0
    rule_files: tuple[Path, ...] = ()
    """Prometheus rule files to load (deploy/prometheus's recording and alerting rules)."""
    ready_timeout_s: float = 600.0
    """Longest wait for every process to answer its health check (model loads included)."""
    run_dir: Path = field(default_factory=lambda: Path("seekserve-stack"))
    """Logs, generated configs, Prometheus' data and stack.json (pids and URLs)."""

    def __post_init__(self) -> None:
        if not 1 <= self.num_engines <= 16:
            raise ConfigError(
                f"num_engines {self.num_engines} is outside 1..16: give how many engines to start"
            )
        for name in ("gateway_port", "engine_port", "redis_port", "prometheus_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535 - self.num_engines:
                raise ConfigError(f"{name} {port} is not a TCP port (0 picks a free one)")
        if self.scrape_interval_s <= 0 or self.ready_timeout_s <= 0:
            raise ConfigError("scrape_interval_s and ready_timeout_s must be positive numbers of seconds")


def load_stack_config(path: Path | None, **overrides: Any) -> StackConfig:
    """The file's settings (paths relative to the file), then `overrides` (None values ignored)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read stack config {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping (model:, num_engines:, ...)")
        data = loaded
    known = {f.name for f in fields(StackConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; known: {', '.join(sorted(known))}")
    base = path.parent if path is not None else Path.cwd()
    if data.get("run_dir") is not None:
        data["run_dir"] = (base / str(data["run_dir"])).resolve()
    data["rule_files"] = tuple((base / str(p)).resolve() for p in data.get("rule_files") or ())
    for key in ("redis", "prometheus"):
        if key in data:
            value = data[key]
            # YAML reads a bare on/off as a boolean
            text = ("on" if value else "off") if isinstance(value, bool) else str(value)
            try:
                data[key] = Switch(text)
            except ValueError as exc:
                raise ConfigError(f"{path}: {key} is {value!r}; give auto, on or off") from exc
    if "engine_args" in data:
        data["engine_args"] = tuple(str(a) for a in data["engine_args"])
    config = StackConfig(**data)
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
