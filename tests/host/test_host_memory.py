from __future__ import annotations

import shutil
from pathlib import Path

from host.fake_host import GIB_KB, make_host, make_tree, meminfo
from seekserve.host import Status
from seekserve.host.checks import Write
from seekserve.host.memory import ecc, swap, thp, total

_THP = "/sys/kernel/mm/transparent_hugepage"


def test_total_reads_meminfo(tmp_path: Path) -> None:
    result = total.run(make_host(make_tree(tmp_path)))
    assert (result.status, result.value) == (Status.OK, "128.0 GiB total, 120.0 GiB available")


def test_total_warns_when_the_model_is_larger_than_the_cgroup_limit(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "root", {"sys/fs/cgroup/memory.max": str(4 << 30)})
    model = tmp_path / "model"
    model.mkdir()
    with (model / "model.safetensors").open("wb") as f:
        f.truncate(6 << 30)  # sparse: six GiB that take no disk
    result = total.run(make_host(tree, model_path=model))
    assert result.status is Status.WARN
    assert result.value == "128.0 GiB total, 120.0 GiB available, cgroup limit 4.0 GiB; model 6.0 GiB"
    assert result.fix is not None and "more than 6.0 GiB" in result.fix


def test_total_is_ok_when_the_model_fits(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"x" * 1024)
    result = total.run(make_host(make_tree(tmp_path / "root"), model_path=model))
    assert (result.status, result.value) == (Status.OK, "128.0 GiB total, 120.0 GiB available; model 1.0 KiB")


def test_ecc_without_edac_is_skipped(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    shutil.rmtree(tree / "sys/devices/system/edac")
    result = ecc.run(make_host(tree))
    assert result.status is Status.SKIP
    assert result.value.startswith("not visible: no EDAC memory controller")


def test_ecc_with_clean_controllers_is_ok(tmp_path: Path) -> None:
    result = ecc.run(make_host(make_tree(tmp_path)))
    assert (result.status, result.value) == (
        Status.OK,
        "ECC on: 2 memory controllers, 0 corrected, 0 uncorrected errors",
    )


def test_ecc_corrected_errors_warn_and_uncorrected_fail(tmp_path: Path) -> None:
    warn = ecc.run(make_host(make_tree(tmp_path / "a", {"sys/devices/system/edac/mc/mc1/ce_count": "3\n"})))
    assert (warn.status, warn.value) == (
        Status.WARN,
        "ECC on: 2 memory controllers, 3 corrected, 0 uncorrected errors",
    )
    fail = ecc.run(make_host(make_tree(tmp_path / "b", {"sys/devices/system/edac/mc/mc0/ue_count": "1\n"})))
    assert fail.status is Status.FAIL
    assert fail.fix is not None and "dimm_ue_count" in fail.fix


def test_thp_madvise_is_ok(tmp_path: Path) -> None:
    result = thp.run(make_host(make_tree(tmp_path)))
    assert (result.status, result.value, result.writes) == (Status.OK, "enabled madvise, defrag madvise", ())


def test_thp_always_warns_with_the_writes_that_fix_it(tmp_path: Path) -> None:
    tree = make_tree(
        tmp_path,
        {
            "sys/kernel/mm/transparent_hugepage/enabled": "[always] madvise never\n",
            "sys/kernel/mm/transparent_hugepage/defrag": "[always] defer defer+madvise madvise never\n",
        },
    )
    result = thp.run(make_host(tree))
    assert (result.status, result.value) == (Status.WARN, "enabled always, defrag always")
    assert result.writes == (Write(f"{_THP}/enabled", "madvise"), Write(f"{_THP}/defrag", "madvise"))
    assert result.fix is not None
    assert result.fix.startswith(f"echo madvise | sudo tee {_THP}/enabled {_THP}/defrag")


def test_thp_unparseable_mode_is_skipped_saying_why(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"sys/kernel/mm/transparent_hugepage/enabled": "madvise\n"})
    result = thp.run(make_host(tree))
    assert (result.status, result.value) == (
        Status.SKIP,
        "could not be read: no [selected] choice in 'madvise'",
    )


def test_thp_absent_is_skipped(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    shutil.rmtree(tree / "sys/kernel/mm/transparent_hugepage")
    assert thp.run(make_host(tree)).status is Status.SKIP


def test_swap_none_is_ok(tmp_path: Path) -> None:
    result = swap.run(make_host(make_tree(tmp_path)))
    assert (result.status, result.value) == (Status.OK, "no swap")


def test_swap_with_high_swappiness_warns_and_fixes_the_sysctl(tmp_path: Path) -> None:
    tree = make_tree(
        tmp_path,
        {"proc/meminfo": meminfo(swap_kb=8 * GIB_KB), "proc/sys/vm/swappiness": "60\n"},
    )
    result = swap.run(make_host(tree))
    assert (result.status, result.value) == (Status.WARN, "8.0 GiB swap, 0 B used, swappiness 60")
    assert result.fix == "sudo sysctl -w vm.swappiness=1"
    assert result.writes == (Write("/proc/sys/vm/swappiness", "1", "vm.swappiness"),)


def test_swap_with_low_swappiness_is_ok(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"proc/meminfo": meminfo(swap_kb=GIB_KB)})
    result = swap.run(make_host(tree))
    assert (result.status, result.value) == (Status.OK, "1.0 GiB swap, 0 B used, swappiness 1")
