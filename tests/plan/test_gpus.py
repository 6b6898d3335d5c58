"""GPU kinds and clusters as the command line writes them."""

from __future__ import annotations

import pytest

from seekserve.errors import ConfigError
from seekserve.plan.gpus import GPU_KINDS, gpu_kind, parse_cluster

MIB = 1 << 20


@pytest.mark.parametrize(
    ("text", "kind", "nodes", "per_node", "name"),
    [
        ("8xH100", "H100", 1, 8, "8xH100"),
        ("2x8xH100", "H100", 2, 8, "2x8xH100"),
        ("16xH100", "H100", 2, 8, "2x8xH100"),
        ("32xh200", "H200", 4, 8, "4x8xH200"),
        ("H200", "H200", 1, 1, "1xH200"),
        (" 4 × a100 ", "A100-80G", 1, 4, "4xA100-80G"),
        ("1x4090", "RTX4090", 1, 1, "1xRTX4090"),
        ("3x4xL40S", "L40S", 3, 4, "3x4xL40S"),
    ],
)
def test_parse_cluster(text: str, kind: str, nodes: int, per_node: int, name: str) -> None:
    cluster = parse_cluster(text)
    assert (cluster.kind.name, cluster.num_nodes, cluster.gpus_per_node) == (kind, nodes, per_node)
    assert cluster.name == name
    assert cluster.num_gpus == nodes * per_node


def test_memory_is_what_the_driver_reports() -> None:
    assert GPU_KINDS["H100"].memory_bytes == 81559 * MIB == 85_520_809_984
    assert GPU_KINDS["H200"].memory_bytes == 143771 * MIB
    assert GPU_KINDS["MI300X"].memory_bytes == 192 << 30
    assert not GPU_KINDS["A100-80G"].fp8 and GPU_KINDS["H100"].fp8
    assert not GPU_KINDS["L40S"].fast_peer_links and GPU_KINDS["H200"].fast_peer_links


def test_a_kind_given_by_its_memory() -> None:
    assert gpu_kind("96GB").memory_bytes == 96 * 10**9
    assert parse_cluster("8x141GiB").kind.memory_bytes == 141 << 30


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12xH100", "12 GPUs do not make whole nodes of 8; write NODESxPER_NODExKIND"),
        ("8xB300", "unknown GPU kind 'B300': use one of H100, H100-PCIE, H200"),
        ("0xH100", "the count must be at least 1"),
        ("2x9xH100", "9 GPUs per node: a node holds 1 to 8 GPUs"),
        ("eight H100", "cannot read GPUs 'eight H100'"),
    ],
)
def test_bad_clusters_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_cluster(text)
