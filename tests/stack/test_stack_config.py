"""The stack's YAML: paths relative to the file, overrides from the command line, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from seekserve.stack.config import StackConfig, Switch, load_stack_config

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_stack_file_loads_with_paths_relative_to_it() -> None:
    config = load_stack_config(REPO / "deploy" / "local" / "stack.yaml", model="/models/tiny")
    assert config.model == "/models/tiny"
    assert (config.num_engines, config.gateway_port, config.engine_port) == (2, 4000, 8001)
    assert (config.redis, config.prometheus) == (Switch.AUTO, Switch.AUTO)
    assert config.rule_files == tuple(
        REPO / "deploy" / "prometheus" / f for f in ("recording_rules.yml", "alert_rules.yml")
    )
    assert config.run_dir == REPO / "seekserve-stack"
    assert all(path.is_file() for path in config.rule_files)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("num_enginez: 2", "unknown keys ['num_enginez']"),
        ("redis: maybe", "redis is 'maybe'; give auto, on or off"),
        ("num_engines: 0", "num_engines 0 is outside 1..16"),
        ("gateway_port: 70000", "gateway_port 70000 is not a TCP port"),
        ("- a list", "the top level must be a mapping"),
    ],
)
def test_bad_settings_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_stack_config(path)


def test_yaml_booleans_mean_on_and_off(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text("redis: off\nprometheus: on\n")
    config = load_stack_config(path)
    assert (config.redis, config.prometheus) == (Switch.OFF, Switch.ON)
    assert load_stack_config(None) == StackConfig()
