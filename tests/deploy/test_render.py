"""deploy/rendered/ is what the values give; `seekserve deploy render` prints, writes and checks it;
bad values are errors that say what to change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from deploy.kube import DEPLOY, VARIANTS, objects
from seekserve.cli import cli
from seekserve.deploy.render import stale_files
from seekserve.deploy.values import load_values
from seekserve.errors import ConfigError


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_committed_manifests_are_what_the_values_render(variant: str) -> None:
    stale = stale_files(DEPLOY, variant)
    assert not stale, (
        f"deploy/rendered differs from the values in {stale}: run `seekserve deploy render --all --write`"
    )


def test_the_committed_files_parse_to_the_rendered_objects() -> None:
    folder = DEPLOY / "rendered" / "r1-vllm-multinode"
    read = [o for path in sorted(folder.glob("*.yaml")) for o in yaml.safe_load_all(path.read_text()) if o]
    assert read == list(objects("r1-vllm-multinode"))


def _copy_deploy(tmp_path: Path) -> Path:
    copy = tmp_path / "deploy"
    for part in ("k8s", "prometheus", "grafana", "rendered"):
        shutil.copytree(DEPLOY / part, copy / part)
    return copy


def test_check_fails_on_a_stale_file_and_write_repairs_it(tmp_path: Path) -> None:
    copy = _copy_deploy(tmp_path)
    gateway = copy / "rendered" / "small-cpu" / "40-gateway.yaml"
    gateway.write_text(gateway.read_text().replace("replicas: 3", "replicas: 4"))
    (copy / "rendered" / "small-cpu" / "99-extra.yaml").write_text("---\n")
    runner = CliRunner()
    checked = runner.invoke(cli, ["deploy", "render", "--all", "--check", "--deploy-dir", str(copy)])
    assert checked.exit_code == 1
    assert "small-cpu/40-gateway.yaml, small-cpu/99-extra.yaml" in checked.output
    wrote = runner.invoke(cli, ["deploy", "render", "small-cpu", "--write", "--deploy-dir", str(copy)])
    assert wrote.exit_code == 0, wrote.output
    assert not (copy / "rendered" / "small-cpu" / "99-extra.yaml").exists()
    again = runner.invoke(cli, ["deploy", "render", "--all", "--check", "--deploy-dir", str(copy)])
    assert again.exit_code == 0, again.output


def test_render_prints_a_variant_with_a_values_file_over_it(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("namespace: llm\ngateway: {replicas: 5}\n")
    args = ["deploy", "render", "r1-vllm", "-f", str(mine), "--deploy-dir", str(DEPLOY)]
    printed = CliRunner().invoke(cli, args)
    assert printed.exit_code == 0, printed.output
    docs = [d for d in yaml.safe_load_all(printed.output) if d]
    gateway = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "seekserve-gateway"
    )
    assert gateway["spec"]["replicas"] == 5
    assert {d["metadata"].get("namespace", d["metadata"]["name"]) for d in docs} == {"llm"}
    assert any(d["kind"] == "Deployment" and d["metadata"]["name"] == "seekserve-engine-r1" for d in docs)


def test_an_unknown_variant_names_the_known_ones() -> None:
    result = CliRunner().invoke(cli, ["deploy", "render", "r2", "--deploy-dir", str(DEPLOY)])
    assert result.exit_code == 1
    assert "no variant 'r2'" in result.output and "r1-vllm-multinode" in result.output


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gateway: {replicaz: 2}", "gateway.replicaz: Extra inputs are not permitted"),
        ("engines: [{name: r1, served_model_name: r1, model: a/b, runtime: vllm, gpus_per_node: 8, "
         "parallel: {tensor: 4}}]", "tensor 4 x pipeline 1 must equal its 8 GPUs"),
        ("engines: [{name: big, served_model_name: m, runtime: seekserve, nodes: 2}]",
         "need runtime vllm or sglang"),
        ("engines: [{name: a, served_model_name: m, fallback: [nope]}]", "fallback ['nope'] is no engine"),
        ("engines: [{name: a, served_model_name: m, autoscaling: {min_replicas: 3, max_replicas: 2}}]",
         "max_replicas 2 is below min_replicas 3"),
        ("gateway: {keys: [{name: t, key_sha256_env: T_SHA}]}", "set gateway.secret_name"),
        ("autoscaling: {mode: hpa}\n"
         "engines: [{name: a, served_model_name: m, autoscaling: {scale_to_zero: true}}]",
         "scale_to_zero needs autoscaling.mode keda"),
    ],
)  # fmt: skip
def test_bad_values_say_what_to_change(tmp_path: Path, override: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(override + "\n")
    with pytest.raises(ConfigError) as failed:
        load_values(DEPLOY / "k8s" / "values.yaml", path)
    assert message in str(failed.value)
