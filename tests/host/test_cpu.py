from __future__ import annotations

import shutil
from pathlib import Path

from host.fake_host import cpuinfo, make_host, make_tree
from seekserve.host import Status
from seekserve.host.cpu import cores, isa, numa, numa_policy


def test_cores_counts_logical_physical_and_usable(tmp_path: Path) -> None:
    result = cores.run(make_host(make_tree(tmp_path)))
    assert (result.status, result.value) == (Status.OK, "8 usable (affinity 0-7), 8 logical, 4 physical")
    assert result.fix is None


def test_cores_warns_under_a_cgroup_quota_of_two_cpus(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"sys/fs/cgroup/cpu.max": "200000 100000\n"})
    result = cores.run(make_host(tree))
    assert result.status is Status.WARN
    assert result.value == "8 usable (affinity 0-7), 8 logical, 4 physical, cgroup quota 2 CPUs"
    assert result.fix is not None and "--cpus 4" in result.fix


def test_cores_warns_when_the_affinity_allows_two_cpus(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"proc/self/status": "Cpus_allowed_list:\t2,5\n"})
    result = cores.run(make_host(tree))
    assert (result.status, result.value) == (Status.WARN, "2 usable (affinity 2,5), 8 logical, 4 physical")


def test_cores_reads_a_cgroup_v1_quota(tmp_path: Path) -> None:
    tree = make_tree(
        tmp_path,
        {
            "sys/fs/cgroup/cpu.max": None,
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "150000\n",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cores.run(make_host(tree)).value.endswith("cgroup quota 1.5 CPUs")


def test_isa_names_avx512_and_amx_extensions(tmp_path: Path) -> None:
    flags = "fpu avx2 avx512f avx512_vnni avx512_bf16 avx512vbmi amx_tile amx_int8 amx_bf16"
    tree = make_tree(tmp_path, {"proc/cpuinfo": cpuinfo(flags=flags)})
    result = isa.run(make_host(tree))
    assert (result.status, result.value) == (Status.OK, "AVX-512 (VNNI, BF16, VBMI), AMX (int8, bf16)")


def test_isa_warns_without_avx512(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"proc/cpuinfo": cpuinfo(flags="fpu sse4_2 avx2 fma")})
    result = isa.run(make_host(tree))
    assert result.status is Status.WARN
    assert result.value == "AVX2; no AVX-512: the CPU kernels run their portable set"
    assert result.fix is not None and "AVX-512 VNNI" in result.fix


def test_isa_reads_arm64_features(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"proc/cpuinfo": "processor\t: 0\nFeatures\t: fp asimd sve\n"})
    result = isa.run(make_host(tree))
    assert (result.status, result.value) == (
        Status.WARN,
        "ASIMD; no AVX-512: the CPU kernels run their portable set",
    )


def test_isa_skips_without_flags(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"proc/cpuinfo": "processor\t: 0\n"})
    assert isa.run(make_host(tree)).status is Status.SKIP


def test_numa_lists_nodes_with_cpus_and_memory(tmp_path: Path) -> None:
    result = numa.run(make_host(make_tree(tmp_path)))
    assert (result.status, result.value) == (
        Status.OK,
        "2 nodes (node0: 4 CPUs, 64.0 GiB; node1: 4 CPUs, 64.0 GiB)",
    )


def test_numa_skips_without_the_node_folder(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    shutil.rmtree(tree / "sys/devices/system/node")
    result = numa.run(make_host(tree))
    assert (result.status, result.value) == (
        Status.SKIP,
        "/sys/devices/system/node is absent: the kernel shows no NUMA nodes",
    )


def test_numa_policy_interleaved_over_two_nodes_is_ok(tmp_path: Path) -> None:
    result = numa_policy.run(make_host(make_tree(tmp_path)))
    assert (result.status, result.value) == (Status.OK, "interleave:0-1 (memory nodes allowed: 0-1); 2 nodes")


def test_numa_policy_default_over_two_nodes_warns_with_numactl(tmp_path: Path) -> None:
    maps = "55d0c0000000 default heap anon=100\n7ffd00000000 local stack anon=3\n"
    result = numa_policy.run(make_host(make_tree(tmp_path, {"proc/self/numa_maps": maps})))
    assert (result.status, result.value) == (
        Status.WARN,
        "default, local (memory nodes allowed: 0-1); 2 nodes",
    )
    assert result.fix is not None and result.fix.startswith("numactl --interleave=all seekserve serve")


def test_numa_policy_on_one_node_needs_nothing(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"proc/self/numa_maps": "55d0c0000000 default heap anon=1\n"})
    shutil.rmtree(tree / "sys/devices/system/node/node1")
    result = numa_policy.run(make_host(tree))
    assert (result.status, result.value) == (
        Status.OK,
        "default (memory nodes allowed: 0-1); one node, nothing to place",
    )
