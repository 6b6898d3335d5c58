"""The CPU kernels against the torch reference paths, both as built for this CPU and as built
without AVX-512 (the portable code other CPUs run), and the build cache."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from seekserve.layers.attention import AttentionMetadata, PagedAttention
from seekserve.layers.cpu_kernels import CpuKernels, KernelSet, cpu_kernels, kernel_status
from seekserve.layers.kernel_build import find_compiler

# Skipped only without a compiler: with one, a kernel that fails to build fails these tests.
pytestmark = pytest.mark.skipif(
    find_compiler() is None, reason="no C++ compiler: install g++ to build the CPU kernels"
)
_X86 = platform.machine().lower() in ("x86_64", "amd64")


def _cpu_has_avx512() -> bool:
    try:
        return any(
            line.startswith("flags") and " avx512f " in f"{line} "
            for line in Path("/proc/cpuinfo").read_text().splitlines()
        )
    except OSError:
        return False


@pytest.fixture(scope="module", params=["native", "portable"])
def kernels(request: pytest.FixtureRequest) -> Iterator[CpuKernels]:
    """The library `cpu_kernels()` gives (so the layers' own kernels_for too) while the tests that
    take it run: built for this CPU, then with SEEKSERVE_CPU_KERNELS=portable (no AVX-512)."""
    portable = request.param == "portable"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEEKSERVE_CPU_KERNELS", "portable" if portable else "1")
        cpu_kernels.cache_clear()
        try:
            loaded = cpu_kernels()
            assert loaded is not None, f"the {request.param} build failed: {kernel_status()}"
            if portable or not _X86:
                assert not loaded.has_avx512 and kernel_status().kernel_set == KernelSet.PORTABLE
            else:
                assert loaded.has_avx512 == _cpu_has_avx512()
                status = kernel_status()
                assert status.kernel_set == (KernelSet.AVX512 if loaded.has_avx512 else KernelSet.PORTABLE)
                assert ("VNNI" in status.detail) == (loaded.has_vnni and loaded.has_avx512)
            yield loaded
        finally:
            cpu_kernels.cache_clear()


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
    kernels: CpuKernels,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    dtype: torch.dtype,
    window: int | None,
) -> None:
    q, k_cache, v_cache, meta = decode_case(num_heads, num_kv_heads, head_dim, dtype, [1, 7, 23, 4, 16])
    scale = head_dim**-0.5
    reference = PagedAttention.attend(q, q, q, k_cache, v_cache, meta, scale, window)
    meta.kernels = kernels
    got = PagedAttention.attend(q, q, q, k_cache, v_cache, meta, scale, window)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got, reference, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("lens", "window"), [([300], None), ([300], 200), ([140], None), ([290, 1], None)])
def test_a_long_sequence_split_between_threads_matches_the_torch_path(
    kernels: CpuKernels, dtype: torch.dtype, lens: list[int], window: int | None
) -> None:
    """Fewer (sequence, KV head) tasks than threads: each sequence's keys are attended in parts
    and the parts merged by their softmax maxima and sums (a part may be empty)."""
    q, k_cache, v_cache, meta = decode_case(4, 1, 64, dtype, lens, block_size=16)
    reference = PagedAttention.attend(q, q, q, k_cache, v_cache, meta, 0.125, window)
    meta.kernels = kernels
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 262144), (3, 1000), (64, 517), (5, 7)])
def test_argmax_matches_torch_first_maximum_included(
    kernels: CpuKernels, dtype: torch.dtype, shape: tuple[int, int]
) -> None:
    logits = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[1])).to(dtype)
    logits[0, 3] = logits[0, shape[1] - 2] = 100.0  # a tie: the first index wins
    got = kernels.argmax(logits)
    assert got.tolist() == logits.argmax(dim=-1).tolist()
    assert got[0] == 3


def _rows(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("unit_offset", [False, True])
@pytest.mark.parametrize("rows", [1, 40])
def test_rms_norm_kernel_matches_the_torch_norm(
    kernels: CpuKernels, dtype: torch.dtype, unit_offset: bool, rows: int
) -> None:
    from seekserve.layers.modules import RMSNorm

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
    kernels: CpuKernels,
    dtype: torch.dtype,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    rotary_dim: int,
    with_norms: bool,
) -> None:
    from seekserve.layers.modules import RMSNorm, apply_rotary

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
    q, k = kernels.qk_prepare(qkv, shape, norms, 1e-6, cos, sin, slots, k_cache, v_cache)
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 3e-2, "rtol": 3e-2}
    torch.testing.assert_close(q, q_ref, **tolerance)
    torch.testing.assert_close(k, k_ref, **tolerance)
    torch.testing.assert_close(k_cache[slots], k, atol=0, rtol=0)
    torch.testing.assert_close(v_cache[slots], v_ref, atol=0, rtol=0)
    assert k_cache[[1, 2, 4]].abs().sum() == 0  # nothing written outside the slots


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("gelu", [False, True], ids=["silu", "gelu-tanh"])
@pytest.mark.parametrize("rows", [1, 40])
def test_gated_activation_matches_torch(
    kernels: CpuKernels, dtype: torch.dtype, gelu: bool, rows: int
) -> None:
    wide = _rows((rows, 2 * 72 + 6), dtype, 4) * 6.0
    gate_up = wide[:, 3:147]  # strided rows
    gate, up = gate_up[:, :72], gate_up[:, 72:]
    act = F.gelu(gate, approximate="tanh") if gelu else F.silu(gate)
    expected = act * up
    got = kernels.gated_act(gate_up, gelu)
    if dtype == torch.float32:
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)  # torch loses 1 + tanh(u) near -1
    else:  # torch's rounding points: only a last-bit flip where float32 exp differs by an ulp
        assert (got != expected).float().mean() <= 0.01
        torch.testing.assert_close(got, expected, atol=1e-2, rtol=8e-3)
    extreme = torch.tensor([[-200.0, -30.0, 0.0, 30.0, 200.0] + [0.0] * 11 + [1.0] * 16], dtype=dtype)
    expected = (F.gelu(extreme[:, :16], approximate="tanh") if gelu else F.silu(extreme[:, :16])) * extreme[
        :, 16:
    ]
    torch.testing.assert_close(kernels.gated_act(extreme, gelu), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_next", [True, False], ids=["post-and-next-norm", "post-norm-only"])
def test_residual_norm_matches_gemmas_norm_add_norm(
    kernels: CpuKernels, dtype: torch.dtype, with_next: bool
) -> None:
    from seekserve.layers.modules import RMSNorm

    post, after = (RMSNorm(72, 1e-6, dtype, unit_offset=True) for _ in range(2))
    post.weight.data.copy_(_rows((72,), dtype, 8))
    after.weight.data.copy_(_rows((72,), dtype, 9))
    y, h = _rows((6, 72), dtype, 10), _rows((6, 72), dtype, 11)
    h_ref = h + post(y)
    expected = after(h_ref) if with_next else post(y)
    got = kernels.residual_norm(y, h, post.weight, after.weight if with_next else None, 1e-6)
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(h, h_ref, atol=tolerance, rtol=tolerance)  # h updated in place
    torch.testing.assert_close(got, expected, atol=tolerance, rtol=tolerance)


def test_int4_matmul_without_vnni_raises_instead_of_returning_garbage(kernels: CpuKernels) -> None:
    """The portable build has no int4 kernel: a call raises (not an assert, which python -O drops)."""
    if kernels.has_int4_matmul:
        pytest.skip("this build has the int4 kernel (tests/quant/test_int4.py checks it)")
    x = torch.randn(2, 64)
    packed = torch.zeros(64, 32, dtype=torch.uint8)
    scales_zeros = torch.ones(2, 64, 2)
    with pytest.raises(RuntimeError, match="int4_matmul needs AVX-512 VNNI and VBMI"):
        kernels.int4_matmul(x, packed, scales_zeros, 32)


def test_greedy_head_vnni_without_vnni_raises_instead_of_returning_garbage(kernels: CpuKernels) -> None:
    if kernels.has_vnni:
        pytest.skip("this build has the VNNI screen (tests/engine/test_greedy_head.py checks it)")
    weight = torch.randn(64, 32, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="greedy_head_vnni needs a library built with AVX-512 VNNI"):
        kernels.greedy_head_vnni(torch.randn(1, 32, dtype=torch.bfloat16), weight, weight, weight, weight)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_head_float_screen_gives_the_argmax(kernels: CpuKernels, dtype: torch.dtype) -> None:
    """The float screen, which builds without AVX-512 too, against the full logits' argmax."""
    gen = torch.Generator().manual_seed(3)
    weight = torch.randn(1000, 64, generator=gen).to(dtype)
    hidden = torch.randn(5, 64, generator=gen).to(dtype)
    q, scale = kernels.quantize_rows(weight)
    found = kernels.greedy_head(hidden, weight, q, scale.float())
    assert found.tokens.tolist() == (hidden.float() @ weight.float().T).argmax(-1).tolist()


def _candidate_rows(dtype: torch.dtype) -> torch.Tensor:
    """Rows of 262,144 logits: peaked, flat, heavy ties, -inf entries, and a row with 300 equal
    maxima (more than the candidates)."""
    gen = torch.Generator().manual_seed(21)
    vocab = 262_144
    rows = [torch.randn(vocab, generator=gen) * 3, torch.randn(vocab, generator=gen) * 0.3]
    rows.append(torch.randint(0, 6, (vocab,), generator=gen).float())
    masked = torch.randn(vocab, generator=gen) * 2
    masked[torch.randperm(vocab, generator=gen)[: vocab // 2]] = float("-inf")
    masked[:40] = float("-inf")
    rows.append(masked)
    ties = torch.randn(vocab, generator=gen)
    ties[torch.randperm(vocab, generator=gen)[:300]] = 9.0
    rows.append(ties)
    return torch.stack(rows).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("width", [1, 64, 512])
def test_sampling_candidates_are_the_canonical_prefix_with_softmax_probabilities(
    kernels: CpuKernels, dtype: torch.dtype, width: int
) -> None:
    logits = _candidate_rows(dtype)
    temperature = torch.tensor([0.6, 1.0, 0.7, 1.3, 0.05])
    got = kernels.sampling_candidates(logits, temperature, width)
    scaled = logits.float() / temperature[:, None]
    values, order = scaled.sort(dim=-1, descending=True, stable=True)  # ties: lower token id first
    assert got.num_candidates.tolist() == [width] * len(logits)
    assert torch.equal(got.token_ids, order[:, :width])
    assert torch.equal(got.scaled, values[:, :width])  # bit for bit torch's float32 division
    exact = torch.log_softmax(scaled.double(), dim=-1)
    torch.testing.assert_close(got.lse.double(), torch.logsumexp(scaled.double(), dim=-1), rtol=1e-6, atol=0)
    wanted = exact.gather(-1, order[:, :width]).exp()
    torch.testing.assert_close(got.probs.double(), wanted, rtol=2e-6, atol=1e-37)  # float32 subnormals
    by_torch = scaled.softmax(dim=-1).gather(-1, order[:, :width])  # float32 sums: off by ~1e-5
    torch.testing.assert_close(got.probs, by_torch, rtol=1e-4, atol=1e-37)


def test_sampling_candidates_take_strided_rows_and_report_rows_without_a_finite_maximum(
    kernels: CpuKernels,
) -> None:
    wide = torch.randn(4, 3000, generator=torch.Generator().manual_seed(22))
    logits = wide[:, 100:2100]  # strided rows
    logits[1, 7] = float("nan")
    logits[2] = float("-inf")
    logits[3, 5] = float("inf")
    got = kernels.sampling_candidates(logits, torch.ones(4), 16)
    assert got.num_candidates.tolist() == [16, 0, 0, 0]
    values, order = logits[0].sort(descending=True, stable=True)
    assert got.token_ids[0].tolist() == order[:16].tolist()
    assert torch.equal(got.scaled[0], values[:16])
