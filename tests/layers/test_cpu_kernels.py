"""The CPU decode-attention kernel against the torch reference path, and its build cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from seekserve.layers import cpu_kernels as cpu_kernels_module
from seekserve.layers.attention import AttentionMetadata, PagedAttention
from seekserve.layers.cpu_kernels import cpu_kernels

KERNELS = cpu_kernels()
# Skipped only without a compiler: with one, a kernel that fails to build fails these tests.
pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None,
    reason="no C++ compiler: install g++ to build the CPU kernels",
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("lens", "window"), [([300], None), ([300], 200), ([140], None), ([290, 1], None)])
def test_a_long_sequence_split_between_threads_matches_the_torch_path(
    dtype: torch.dtype, lens: list[int], window: int | None
) -> None:
    """Fewer (sequence, KV head) tasks than threads: each sequence's keys are attended in parts
    and the parts merged by their softmax maxima and sums (a part may be empty)."""
    assert KERNELS is not None
    q, k_cache, v_cache, meta = decode_case(4, 1, 64, dtype, lens, block_size=16)
    reference = PagedAttention.attend(q, q, q, k_cache, v_cache, meta, 0.125, window)
    meta.kernels = KERNELS
    got = PagedAttention.attend(q, q, q, k_cache, v_cache, meta, 0.125, window)
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


def _rows(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("unit_offset", [False, True])
@pytest.mark.parametrize("rows", [1, 40])
def test_rms_norm_kernel_matches_the_torch_norm(dtype: torch.dtype, unit_offset: bool, rows: int) -> None:
    from seekserve.layers.modules import RMSNorm

    assert KERNELS is not None
    norm = RMSNorm(72, 1e-6, dtype, unit_offset=unit_offset)
    norm.weight.data.copy_(_rows((72,), dtype, 1))
    wide = _rows((rows, 100), dtype, 2)
    x = wide[:, 10:82]  # strided rows, as a split of a fused projection gives
    residual = _rows((rows, 72), dtype, 3)
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
    expected = (h * (1.0 + norm.weight.float())).to(dtype) if unit_offset else norm.weight * h.to(dtype)
    torch.testing.assert_close(norm(x), expected, **tolerance)
    out, new_residual = norm.add_forward(x, residual.clone())
    torch.testing.assert_close(new_residual, x + residual, atol=0, rtol=0)
    torch.testing.assert_close(out, norm(x + residual), **tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("num_heads", "num_kv_heads", "head_dim", "rotary_dim", "with_norms"),
    [(4, 1, 32, 32, True), (6, 2, 16, 16, False), (4, 2, 32, 16, False)],
    ids=["gemma-norms", "llama", "partial-rotary"],
)
def test_qk_prepare_matches_norm_rotary_and_cache_writes(
    dtype: torch.dtype, num_heads: int, num_kv_heads: int, head_dim: int, rotary_dim: int, with_norms: bool
) -> None:
    from seekserve.layers.modules import RMSNorm, apply_rotary

    assert KERNELS is not None
    rows, width = 5, (num_heads + 2 * num_kv_heads) * head_dim
    qkv = _rows((rows, width + 8), dtype, 4)[:, :width]  # strided rows
    angles = _rows((rows, 1, rotary_dim // 2), torch.float32, 5)
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    norms = None
    q_ref = qkv[:, : num_heads * head_dim].reshape(rows, num_heads, head_dim)
    k_ref = qkv[:, num_heads * head_dim : (num_heads + num_kv_heads) * head_dim].reshape(
        rows, num_kv_heads, head_dim
    )
    v_ref = qkv[:, (num_heads + num_kv_heads) * head_dim :].reshape(rows, num_kv_heads, head_dim)
    if with_norms:
        q_norm, k_norm = (RMSNorm(head_dim, 1e-6, dtype, unit_offset=True) for _ in range(2))
        q_norm.weight.data.copy_(_rows((head_dim,), dtype, 6))
        k_norm.weight.data.copy_(_rows((head_dim,), dtype, 7))
        norms = (q_norm.weight, k_norm.weight)
        q_ref, k_ref = q_norm(q_ref), k_norm(k_ref)
    q_ref, k_ref = apply_rotary(q_ref, cos, sin), apply_rotary(k_ref, cos, sin)
    slots = torch.tensor([7, 0, 3, 12, 5])
    k_cache = torch.zeros(16, num_kv_heads, head_dim, dtype=dtype)
    v_cache = torch.zeros(16, num_kv_heads, head_dim, dtype=dtype)
    shape = (num_heads, num_kv_heads, head_dim)
    q, k = KERNELS.qk_prepare(qkv, shape, norms, 1e-6, cos, sin, slots, k_cache, v_cache)
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 3e-2, "rtol": 3e-2}
    torch.testing.assert_close(q, q_ref, **tolerance)
    torch.testing.assert_close(k, k_ref, **tolerance)
    torch.testing.assert_close(k_cache[slots], k, atol=0, rtol=0)
    torch.testing.assert_close(v_cache[slots], v_ref, atol=0, rtol=0)
    assert k_cache[[1, 2, 4]].abs().sum() == 0  # nothing written outside the slots


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("gelu", [False, True], ids=["silu", "gelu-tanh"])
@pytest.mark.parametrize("rows", [1, 40])
def test_gated_activation_matches_torch(dtype: torch.dtype, gelu: bool, rows: int) -> None:
    assert KERNELS is not None
    wide = _rows((rows, 2 * 72 + 6), dtype, 4) * 6.0
    gate_up = wide[:, 3:147]  # strided rows
    gate, up = gate_up[:, :72], gate_up[:, 72:]
    act = F.gelu(gate, approximate="tanh") if gelu else F.silu(gate)
    expected = act * up
    got = KERNELS.gated_act(gate_up, gelu)
    if dtype == torch.float32:
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)  # torch loses 1 + tanh(u) near -1
    else:  # torch's rounding points: only a last-bit flip where float32 exp differs by an ulp
        assert (got != expected).float().mean() <= 0.01
        torch.testing.assert_close(got, expected, atol=1e-2, rtol=8e-3)
    extreme = torch.tensor([[-200.0, -30.0, 0.0, 30.0, 200.0] + [0.0] * 11 + [1.0] * 16], dtype=dtype)
    expected = (F.gelu(extreme[:, :16], approximate="tanh") if gelu else F.silu(extreme[:, :16])) * extreme[
        :, 16:
    ]
    torch.testing.assert_close(KERNELS.gated_act(extreme, gelu), expected)
