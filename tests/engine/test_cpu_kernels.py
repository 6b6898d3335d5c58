"""The CPU decode-attention kernel against the torch reference path, and its build cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seekserve.engine import cpu_kernels as cpu_kernels_module
from seekserve.engine.attention import AttentionMetadata, PagedAttention
from seekserve.engine.cpu_kernels import cpu_kernels

KERNELS = cpu_kernels()
pytestmark = pytest.mark.skipif(
    KERNELS is None, reason="no C++ compiler: install g++ to build the CPU kernels"
)


def decode_case(
    num_heads: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype, lens: list[int], block_size: int = 4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, AttentionMetadata]:
    gen = torch.Generator().manual_seed(sum(lens) + head_dim)
    max_blocks = max(-(-n // block_size) for n in lens)
    num_blocks = len(lens) * max_blocks + 3
    order = torch.randperm(num_blocks, generator=gen)  # blocks scattered through the cache
    tables = torch.zeros(len(lens), max_blocks, dtype=torch.int64)
    for i, n in enumerate(lens):
        nb = -(-n // block_size)
        tables[i, :nb] = order[i * max_blocks : i * max_blocks + nb]
    k_cache = torch.randn(num_blocks * block_size, num_kv_heads, head_dim, generator=gen).to(dtype)
    v_cache = torch.randn(num_blocks * block_size, num_kv_heads, head_dim, generator=gen).to(dtype)
    # q as the model makes it: a strided view of a fused q/k/v projection.
    fused = torch.randn(len(lens), (num_heads + 2 * num_kv_heads) * head_dim, generator=gen).to(dtype)
    q = fused[:, : num_heads * head_dim].view(len(lens), num_heads, head_dim)
    meta = AttentionMetadata(
        slot_mapping=torch.zeros(len(lens), dtype=torch.int64),
        num_decodes=len(lens),
        decode_seq_lens=lens,
        decode_block_tables=tables,
        prefills=[],
        block_size=block_size,
    )
    return q, k_cache, v_cache, meta


@pytest.mark.parametrize(
    ("num_heads", "num_kv_heads", "head_dim"),
    [(4, 1, 256), (14, 2, 64), (8, 8, 32), (9, 1, 48), (6, 2, 40)],
    ids=["gemma-gqa4", "qwen-gqa7", "mha", "group9", "head-dim-40-generic"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("window", [None, 5])
def test_kernel_matches_the_torch_path(
    num_heads: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype, window: int | None
) -> None:
    assert KERNELS is not None
    q, k_cache, v_cache, meta = decode_case(num_heads, num_kv_heads, head_dim, dtype, [1, 7, 23, 4, 16])
    scale = head_dim**-0.5
    reference = PagedAttention.attend(q, q, q, k_cache, v_cache, meta, scale, window)
    meta.kernels = KERNELS
    got = PagedAttention.attend(q, q, q, k_cache, v_cache, meta, scale, window)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got, reference, atol=tolerance, rtol=tolerance)


def test_library_is_built_once_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEEKSERVE_HOME", str(tmp_path))
    cpu_kernels.cache_clear()
    try:
        assert cpu_kernels() is not None
        built = list((tmp_path / "kernels").glob("*/libseekserve_cpu.so"))
        assert len(built) == 1
        stamp = built[0].stat().st_mtime_ns
        cpu_kernels.cache_clear()
        assert cpu_kernels() is not None
        assert built[0].stat().st_mtime_ns == stamp
    finally:
        cpu_kernels.cache_clear()


def test_turned_off_or_without_a_compiler_the_torch_path_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_kernels.cache_clear()
    try:
        monkeypatch.setenv("SEEKSERVE_CPU_KERNELS", "0")
        assert cpu_kernels() is None
        cpu_kernels.cache_clear()
        monkeypatch.setenv("SEEKSERVE_CPU_KERNELS", "1")
        monkeypatch.setattr(cpu_kernels_module.shutil, "which", lambda name: None)
        assert cpu_kernels() is None
    finally:
        cpu_kernels.cache_clear()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 262144), (3, 1000), (64, 517), (5, 7)])
def test_argmax_matches_torch_first_maximum_included(dtype: torch.dtype, shape: tuple[int, int]) -> None:
    assert KERNELS is not None
    logits = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[1])).to(dtype)
    logits[0, 3] = logits[0, shape[1] - 2] = 100.0  # a tie: the first index wins
    got = KERNELS.argmax(logits)
    assert got.tolist() == logits.argmax(dim=-1).tolist()
    assert got[0] == 3
