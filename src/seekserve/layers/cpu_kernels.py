"""Hand-written CPU kernels (kernels/*.cpp), built with the system's C++ compiler on first use.

The library is compiled once per source, compiler and CPU into `$SEEKSERVE_HOME/kernels/<hash>/`
(a few seconds, see kernel_build.py: it includes no torch headers) and loaded with ctypes; its
functions take raw pointers and release the GIL while they run. With SEEKSERVE_CPU_KERNELS=0,
`cpu_kernels()` returns None and callers use their torch path. Without a compiler, or when the
build fails or times out, the same, after one warning naming the cause and the fix;
`kernel_status()` says which set runs (the serve banner prints it).
"""

from __future__ import annotations

import ctypes
import enum
import functools
import logging
import subprocess
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from seekserve.env import Environment
from seekserve.layers.kernel_build import build_library, find_compiler

__all__ = [
    "Candidates",
    "CpuKernels",
    "KernelSet",
    "KernelStatus",
    "Screened",
    "cpu_kernels",
    "kernel_status",
    "kernels_for",
]

log = logging.getLogger(__name__)

_BUILD_TIMEOUT_S = 300.0
"""How long the compiler may run before the build is given up (a build takes a few seconds)."""
_FIX = "install a C++ compiler (e.g. g++) or set SEEKSERVE_CPU_KERNELS=0 to skip the kernels"
_I64, _F32, _P = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
_DECODE_ARGS: list[type] = [_P, _I64, _P, _P, _P, _I64, _P, _I64, _I64, _I64, _I64, _I64, _I64, _F32, _P]
_ARGMAX_ARGS: list[type] = [_P, _I64, _I64, _P]
_GREEDY_HEAD_ARGS: list[type] = [_P, _I64, _P, _P, _P, _P, _P, _I64, _I64, _P, _P, _P, _I64, _P]
_QUANTIZE_ROWS_ARGS: list[type] = [_P, _I64, _I64, _P, _P]
_GREEDY_HEAD_VNNI_ARGS: list[type] = [_P, _I64, _P, _P, _P, _P, _I64, _I64, _P, _P, _P, _I64, _P]
_RMS_NORM_ARGS: list[type] = [_P, _I64, _P, _P, _I64, _I64, _F32, ctypes.c_int, _P]
_GATED_ACT_ARGS: list[type] = [_P, _I64, _I64, _I64, ctypes.c_int, _P]
_RESIDUAL_NORM_ARGS: list[type] = [_P, _P, _P, _P, _I64, _I64, _F32, _P]
_QK_PREPARE_ARGS: list[type] = [
    _P, _I64, _I64, _I64, _I64, _I64, _P, _P, _F32, _P, _P, _I64, _P, _P, _P, _P, _P,
]  # fmt: skip
_INT4_MATMUL_ARGS: list[type] = [_P, _I64, _I64, _I64, _P, _P, _I64, _I64, _P, _I64]
_INT4_DEQUANTIZE_ARGS: list[type] = [_P, _I64, _I64, _P, _I64, _I64, _I64, ctypes.c_int, _P, _I64]
_CANDIDATES_ARGS: list[type] = [_P, _I64, _I64, _I64, _P, _I64, _P, _P, _P, _P, _P]
_SUFFIX = {torch.float32: "f32", torch.bfloat16: "bf16"}
MAX_TIES = 16
"""Near ties per hidden row that the greedy head's kernel lists (more are only counted)."""


class Screened(NamedTuple):
    """What the greedy head's kernel found for each hidden row (see greedy_head.cpp's `rescore`)."""

    tokens: torch.Tensor
    """int64 [rows]: the maximum of the candidates' logits in the kernel's float32 summation order."""
    rows_rescored: torch.Tensor
    """int64 [rows]: vocabulary rows the screen could not rule out, rescored with the exact weight."""
    ties: torch.Tensor
    """int64 [rows, MAX_TIES]: the near ties, ascending: the rows whose rounded logit may equal or
    pass the maximum's in another summation order (the first num_ties[r] entries are valid)."""
    num_ties: torch.Tensor
    """int64 [rows]: 1 for a clear winner; MAX_TIES + 1 when the row must be decided over the whole
    vocabulary (more ties than listed, a maximum that is not finite, or no candidate)."""


class Candidates(NamedTuple):
    """Each row's `width` largest scaled logits in canonical order (see kernels/sampling.cpp)."""

    token_ids: torch.Tensor
    """int64 [rows, width]: scaled logit descending, ties by token id ascending."""
    scaled: torch.Tensor
    """float32 [rows, width]: logit / temperature, rounded as torch's float32 division rounds it."""
    probs: torch.Tensor
    """float32 [rows, width]: the candidates' probabilities under the whole row's softmax."""
    lse: torch.Tensor
    """float32 [rows]: the log-sum-exp of the row's scaled logits."""
    num_candidates: torch.Tensor
    """int64 [rows]: width, or 0 where the row has a NaN or its maximum is not finite (the other
    outputs of that row are unset)."""


class CpuKernels:
    """The loaded kernel library."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._decode = _bind(lib, "paged_decode", _DECODE_ARGS)
        self._argmax = _bind(lib, "argmax", _ARGMAX_ARGS)
        self._rms_norm = _bind(lib, "rms_norm", _RMS_NORM_ARGS)
        self._residual_norm = _bind(lib, "residual_norm", _RESIDUAL_NORM_ARGS)
        self._qk_prepare = _bind(lib, "qk_prepare", _QK_PREPARE_ARGS)
        self._gated_act = _bind(lib, "gated_act", _GATED_ACT_ARGS)
        self._greedy_head = _bind(lib, "greedy_head", _GREEDY_HEAD_ARGS)
        self._quantize_rows = _bind(lib, "quantize_rows", _QUANTIZE_ROWS_ARGS)
        self._greedy_head_vnni = _bind(lib, "greedy_head_vnni", _GREEDY_HEAD_VNNI_ARGS)
        self._pack_vnni = lib.greedy_head_pack_vnni
        self._pack_vnni.argtypes = [_P, _I64, _I64, _P, _P]
        self._pack_vnni.restype = None
        self._row_sums = lib.greedy_head_row_sums
        self._row_sums.argtypes = [_P, _I64, _I64, _P, _P]
        self._row_sums.restype = None
        self.has_vnni = bool(lib.greedy_head_has_vnni())
        """Whether the greedy head's integer-dot-product screen (AVX-512 VNNI) was compiled in."""
        self._int4_matmul = _bind(lib, "int4_matmul", _INT4_MATMUL_ARGS)
        self._int4_dequantize = _bind(lib, "int4_dequantize", _INT4_DEQUANTIZE_ARGS)
        self._candidates = _bind(lib, "sampling_candidates", _CANDIDATES_ARGS)
        self.has_int4_matmul = bool(lib.int4_matmul_available())
        """Whether `int4_matmul` (AVX-512 VNNI and VBMI) was compiled in."""
        self.has_avx512 = bool(lib.kernels_have_avx512())
        """Whether the AVX-512 code paths were compiled in (else the portable ones run)."""
        self.decode_layers = _bind(
            lib, "decode_layers", [_P, _I64, _P, _P, _I64, _P, _P, _P, _P, _P], ctypes.c_int
        )
        """All decoder layers of a decode step, by dtype (engine/fused_decode.py builds the arguments)."""

    def supports(self, dtype: torch.dtype) -> bool:
        return dtype in _SUFFIX

    def rms_norm(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        eps: float,
        unit_offset: bool,
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """RMS norm of the rows of x [rows, dim] (rows may be strided); with `residual`, first
        residual += x in place and normalise that. Rounds as layers.modules.RMSNorm does."""
        rows, dim = x.shape
        assert x.stride(1) == 1 and weight.is_contiguous(), "rows must be contiguous"
        assert residual is None or residual.is_contiguous(), "the residual must be contiguous"
        out = torch.empty((rows, dim), dtype=x.dtype)
        self._rms_norm[x.dtype](
            x.data_ptr(), x.stride(0), 0 if residual is None else residual.data_ptr(), weight.data_ptr(),
            rows, dim, eps, int(unit_offset), out.data_ptr(),
        )  # fmt: skip
        return out

    def residual_norm(
        self, y: torch.Tensor, h: torch.Tensor, w_post: torch.Tensor, w_next: torch.Tensor | None, eps: float
    ) -> torch.Tensor:
        """Gemma between sublayers: h += post_norm(y) in place; returns next_norm(h) (or post_norm(y)
        when w_next is None). All norms unit-offset; all tensors contiguous [rows, dim]."""
        rows, dim = y.shape
        assert y.is_contiguous() and h.is_contiguous(), "rows must be contiguous"
        out = torch.empty((rows, dim), dtype=y.dtype)
        self._residual_norm[y.dtype](
            y.data_ptr(), h.data_ptr(), w_post.data_ptr(), 0 if w_next is None else w_next.data_ptr(),
            rows, dim, eps, out.data_ptr(),
        )  # fmt: skip
        return out

    def gated_act(self, gate_up: torch.Tensor, gelu: bool) -> torch.Tensor:
        """act(gate) * up from the fused projection [rows, 2 * width] (rows may be strided), act =
        tanh-approximated gelu or silu, rounded as torch rounds `act(gate) * up`. [rows, width]."""
        rows, width = gate_up.shape[0], gate_up.shape[1] // 2
        assert gate_up.stride(1) == 1, "rows must be contiguous"
        out = torch.empty((rows, width), dtype=gate_up.dtype)
        self._gated_act[gate_up.dtype](
            gate_up.data_ptr(), gate_up.stride(0), rows, width, int(gelu), out.data_ptr()
        )
        return out

    def qk_prepare(
        self,
        qkv: torch.Tensor,
        shape: tuple[int, int, int],
        norms: tuple[torch.Tensor, torch.Tensor] | None,
        eps: float,
        cos: torch.Tensor,
        sin: torch.Tensor,
        slot_mapping: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """From the fused projection qkv [rows, (H + 2 KV) * D]: q and k normed per head (with
        `norms`, Gemma) and rotated, returned as [rows, H, D] and [rows, KV, D]; k and v written to
        their cache slots. cos/sin: [rows, 1, rotary_dim // 2] in qkv's dtype."""
        num_heads, num_kv_heads, head_dim = shape
        rows = qkv.shape[0]
        assert qkv.stride(1) == 1 and cos.is_contiguous() and sin.is_contiguous(), "inputs must be dense"
        q = torch.empty((rows, num_heads, head_dim), dtype=qkv.dtype)
        k = torch.empty((rows, num_kv_heads, head_dim), dtype=qkv.dtype)
        q_norm, k_norm = (n.data_ptr() for n in norms) if norms else (0, 0)
        self._qk_prepare[qkv.dtype](
            qkv.data_ptr(), qkv.stride(0), rows, num_heads, num_kv_heads, head_dim, q_norm, k_norm, eps,
            cos.data_ptr(), sin.data_ptr(), cos.shape[-1], slot_mapping.data_ptr(), q.data_ptr(),
            k.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(),
        )  # fmt: skip
        return q, k

    def int4_matmul(
        self, x: torch.Tensor, packed: torch.Tensor, scales_zeros: torch.Tensor, group: int
    ) -> torch.Tensor:
        """x [rows, K] @ W^T for int4 weights in torch's CPU packing of 64-row blocks (packed [N, K / 2],
        N a multiple of 64; scales_zeros [K / group, N, 2] in x's dtype); see int4_matmul.cpp. Needs
        `has_int4_matmul`. Returns [rows, N]."""
        rows, k = x.shape
        n = packed.shape[0]
        if not self.has_int4_matmul:  # not an assert: python -O would leave `out` unwritten
            raise RuntimeError(
                "int4_matmul needs AVX-512 VNNI and VBMI, which this build of the CPU kernels lacks; "
                "check has_int4_matmul first and use torch's int4 product otherwise"
            )
        assert x.stride(1) == 1 and packed.is_contiguous() and scales_zeros.is_contiguous(), (
            "inputs must be dense"
        )
        assert n % 64 == 0 and k % group == 0 and packed.shape[1] * 2 == k, "shapes must agree"
        assert scales_zeros.shape == (k // group, n, 2) and scales_zeros.dtype == x.dtype, "shapes must agree"
        out = torch.empty((rows, n), dtype=x.dtype)
        self._int4_matmul[x.dtype](
            x.data_ptr(), x.stride(0), rows, k, packed.data_ptr(), scales_zeros.data_ptr(), n, group,
            out.data_ptr(), n,
        )  # fmt: skip
        return out

    def int4_dequantize(
        self,
        packed: torch.Tensor,
        scales_zeros: torch.Tensor,
        group: int,
        block: tuple[int, bool],
        out: torch.Tensor,
    ) -> torch.Tensor:
        """Writes the int4 rows packed [rows, K / 2] (torch's CPU packing in blocks of `block` = (rows,
        split), see quant/int4_layout.py) into out [rows, K] (rows may be strided) as (q - 8) * scale +
        zero, rounded as torch's elementwise ops in out's dtype round it; see int4_dequantize.cpp.
        scales_zeros: [K / group, rows, 2] in out's dtype, rows dense (a slice of a matrix's). Returns out."""
        rows, k = out.shape
        block_rows, split = block
        assert packed.is_contiguous() and packed.shape == (rows, k // 2), "packed rows must be dense"
        assert out.stride(1) == 1 and out.dtype == scales_zeros.dtype and out.dtype in _SUFFIX, "dense rows"
        assert scales_zeros.shape == (k // group, rows, 2) and scales_zeros.stride()[1:] == (2, 1), (
            "shapes must agree"
        )
        assert block_rows % 2 == 0 and rows % 2 == 0 and k % group == 0, "shapes must agree"
        self._int4_dequantize[out.dtype](
            packed.data_ptr(), rows, k, scales_zeros.data_ptr(), scales_zeros.stride(0) // 2, group,
            block_rows, int(split), out.data_ptr(), out.stride(0),
        )  # fmt: skip
        return out

    def argmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Row-wise argmax of [num_rows, vocab] logits (first maximum wins), as torch.argmax(-1).

        One vectorised pass in the logits' own dtype: bfloat16 logits need no float32 copy.
        """
        if logits.dtype not in self._argmax or logits.device.type != "cpu":
            return logits.argmax(dim=-1)
        logits = logits.contiguous()
        out = torch.empty(logits.shape[0], dtype=torch.int64)
        self._argmax[logits.dtype](logits.data_ptr(), logits.shape[0], logits.shape[1], out.data_ptr())
        return out

    def sampling_candidates(self, logits: torch.Tensor, temperature: torch.Tensor, width: int) -> Candidates:
        """The `width` largest scaled logits of each row of logits [rows, vocab] (CPU, float32 or
        bfloat16, rows may be strided; width <= vocab) with their whole-row probabilities, in two
        passes over each row in its own dtype. temperature: [rows] float32, > 0."""
        rows, vocab = logits.shape
        assert logits.dtype in self._candidates and logits.device.type == "cpu", "CPU float32 or bfloat16"
        assert 0 < width <= vocab and temperature.shape == (rows,), "shapes must agree"
        if logits.stride(1) != 1:
            logits = logits.contiguous()
        temperature = temperature.to(torch.float32).contiguous()
        out = Candidates(
            torch.empty(rows, width, dtype=torch.int64),
            torch.empty(rows, width, dtype=torch.float32),
            torch.empty(rows, width, dtype=torch.float32),
            torch.empty(rows, dtype=torch.float32),
            torch.empty(rows, dtype=torch.int64),
        )
        self._candidates[logits.dtype](
            logits.data_ptr(), logits.stride(0), rows, vocab, temperature.data_ptr(), width,
            out.token_ids.data_ptr(), out.scaled.data_ptr(), out.probs.data_ptr(), out.lse.data_ptr(),
            out.num_candidates.data_ptr(),
        )  # fmt: skip
        return out

    def quantize_rows(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row-wise symmetric int8 copy of weight [rows, dim]: (q int8 [rows, dim], scale float32
        [rows]) with weight ~ q * scale[:, None] and |weight - q * scale| <= scale / 2."""
        assert weight.is_contiguous() and weight.dim() == 2, "the weight must be a contiguous matrix"
        q = torch.empty(weight.shape, dtype=torch.int8)
        scale = torch.empty(weight.shape[0], dtype=torch.float32)
        self._quantize_rows[weight.dtype](weight.data_ptr(), *weight.shape, q.data_ptr(), scale.data_ptr())
        return q, scale

    def greedy_head(
        self,
        hidden: torch.Tensor,
        weight: torch.Tensor | None,
        q: torch.Tensor,
        scale: torch.Tensor,
        row_sums: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> Screened:
        """argmax(hidden @ weight.T) per row, reading the int8 copy (q, scale) of the weight and only
        the rows of it that could be the maximum; see greedy_head.cpp. Without a weight, (q, scale)
        is the head itself (an int8 head, scale float32). With q's `row_sums` (see `row_sums`), one
        row, or 12 or more, are screened with integer dot products where the CPU has them. The tokens
        are exact up to float32 summation order: `Screened.ties` lists the rows where that order
        could matter (GreedyHead decides them with the head's own arithmetic). The hidden size must
        be a multiple of 16 and the hidden rows finite."""
        rows, dim = hidden.shape
        assert dim % 16 == 0 and q.shape[1] == dim and scale.dtype == torch.float32, "shapes must agree"
        assert weight is None or (weight.shape == q.shape and weight.dtype == hidden.dtype), (
            "shapes must agree"
        )
        hidden = hidden.contiguous()
        out = _screened(rows)
        weight_ptr = 0 if weight is None else weight.data_ptr()
        l1, sums = (None, None) if row_sums is None else (row_sums[0].data_ptr(), row_sums[1].data_ptr())
        self._greedy_head[hidden.dtype](
            hidden.data_ptr(), rows, weight_ptr, q.data_ptr(), scale.data_ptr(), l1, sums, q.shape[0], dim,
            out.tokens.data_ptr(), out.rows_rescored.data_ptr(), out.ties.data_ptr(), MAX_TIES,
            out.num_ties.data_ptr(),
        )  # fmt: skip
        return out

    def row_sums(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum |q| float32, sum q int32) per row of an int8 matrix q [vocab, dim], for `greedy_head`."""
        vocab, dim = q.shape
        assert q.dtype == torch.int8 and q.is_contiguous(), "an int8 matrix, dense"
        l1 = torch.empty(vocab, dtype=torch.float32)
        sums = torch.empty(vocab, dtype=torch.int32)
        self._row_sums(q.data_ptr(), vocab, dim, l1.data_ptr(), sums.data_ptr())
        return l1, sums

    def pack_vnni(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VNNI layout of an int8 copy q [vocab, dim] (dim a multiple of 4): (packed uint8
        [tiles * 16 * dim], l1 float32 [tiles * 16] = sum |q| per row, 0 past the vocabulary)."""
        vocab, dim = q.shape
        tiles = -(-vocab // 16)
        packed = torch.empty(tiles * 16 * dim, dtype=torch.uint8)
        l1 = torch.empty(tiles * 16, dtype=torch.float32)
        self._pack_vnni(q.data_ptr(), vocab, dim, packed.data_ptr(), l1.data_ptr())
        return packed, l1

    def greedy_head_vnni(
        self,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        packed: torch.Tensor,
        scale: torch.Tensor,
        l1: torch.Tensor,
    ) -> Screened:
        """`greedy_head` screening with integer dot products over `pack_vnni`'s layout (scale padded
        with zeros to its length)."""
        if not self.has_vnni:  # not an assert: python -O would leave `out` unwritten
            raise RuntimeError(
                "greedy_head_vnni needs a library built with AVX-512 VNNI: "
                "check has_vnni first and use greedy_head otherwise"
            )
        rows, dim = hidden.shape
        assert dim % 16 == 0 and weight.shape[1] == dim and hidden.dtype == weight.dtype, "shapes must agree"
        assert scale.shape == l1.shape and packed.numel() == l1.numel() * dim, "use pack_vnni's layout"
        hidden = hidden.contiguous()
        out = _screened(rows)
        self._greedy_head_vnni[hidden.dtype](
            hidden.data_ptr(), rows, weight.data_ptr(), packed.data_ptr(), scale.data_ptr(), l1.data_ptr(),
            weight.shape[0], dim, out.tokens.data_ptr(), out.rows_rescored.data_ptr(), out.ties.data_ptr(),
            MAX_TIES, out.num_ties.data_ptr(),
        )  # fmt: skip
        return out

    def paged_decode(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        block_tables: torch.Tensor,
        seq_lens: torch.Tensor,
        block_size: int,
        window: int | None,
        scale: float,
    ) -> torch.Tensor:
        """Attention of one new token per sequence over its cached keys; see paged_attention.cpp.

        q: [num_seqs, num_heads, head_dim] (rows may be strided, heads contiguous); caches:
        [num_slots, num_kv_heads, head_dim] contiguous; block_tables [num_seqs, max_blocks] and
        seq_lens [num_seqs] int64 contiguous. Returns [num_seqs, num_heads, head_dim].
        """
        num_seqs, num_heads, head_dim = q.shape
        assert q.stride(2) == 1 and q.stride(1) == head_dim, "q heads must be contiguous"
        assert k_cache.is_contiguous() and v_cache.is_contiguous(), "caches must be contiguous"
        assert block_tables.dtype == seq_lens.dtype == torch.int64, "tables and lengths are int64"
        out = torch.empty((num_seqs, num_heads, head_dim), dtype=q.dtype)
        self._decode[q.dtype](
            q.data_ptr(), q.stride(0), k_cache.data_ptr(), v_cache.data_ptr(),
            block_tables.data_ptr(), block_tables.shape[1], seq_lens.data_ptr(),
            num_seqs, num_heads, k_cache.shape[1], head_dim, block_size, window or 0, scale,
            out.data_ptr(),
        )  # fmt: skip
        return out


def _screened(rows: int) -> Screened:
    """Empty outputs of the greedy head's kernel for `rows` hidden rows."""
    return Screened(
        torch.empty(rows, dtype=torch.int64),
        torch.empty(rows, dtype=torch.int64),
        torch.empty(rows, MAX_TIES, dtype=torch.int64),
        torch.empty(rows, dtype=torch.int64),
    )


def _bind(
    lib: ctypes.CDLL, name: str, argtypes: list[type], restype: type | None = None
) -> dict[torch.dtype, Any]:
    """The f32 and bf16 versions of a kernel, by dtype."""
    table = {}
    for dtype, suffix in _SUFFIX.items():
        fn = getattr(lib, f"{name}_{suffix}")
        fn.argtypes = argtypes
        fn.restype = restype
        table[dtype] = fn
    return table


class KernelSet(enum.Enum):
    """Which code the CPU kernels run."""

    AVX512 = "avx512"
    PORTABLE = "portable"
    OFF = "off"


@dataclass(frozen=True)
class KernelStatus:
    """The kernel set in use and why, e.g. "avx512 (VNNI, VBMI int4)" or "off (SEEKSERVE_CPU_KERNELS=0)"."""

    kernel_set: KernelSet
    detail: str
    """The extensions compiled in, or why the kernels are off."""

    def __str__(self) -> str:
        return f"{self.kernel_set.value} ({self.detail})"


_status = KernelStatus(KernelSet.OFF, "not loaded yet")


@functools.cache
def cpu_kernels() -> CpuKernels | None:
    """The kernel library, built on first use; None where it is turned off or cannot be built (one
    warning then names the cause and the fix). `kernel_status()` says which."""
    global _status
    kernels, _status = _load(Environment.read())
    return kernels


def kernel_status() -> KernelStatus:
    """Which kernel set `cpu_kernels()` gives (loading it first if it was not yet)."""
    cpu_kernels()
    return _status


def _load(env: Environment) -> tuple[CpuKernels | None, KernelStatus]:
    if not env.cpu_kernels:
        log.info("CPU kernels turned off (SEEKSERVE_CPU_KERNELS=0): using the torch path")
        return None, KernelStatus(KernelSet.OFF, "SEEKSERVE_CPU_KERNELS=0")
    compiler = find_compiler()
    if compiler is None:
        log.warning(
            "CPU kernels: no C++ compiler found ($CXX, g++ or c++); using the slower torch path: %s", _FIX
        )
        return None, KernelStatus(KernelSet.OFF, "no C++ compiler: install g++, or SEEKSERVE_CPU_KERNELS=0")
    try:
        path = build_library(compiler, env.kernels_dir, env.portable_kernels, _BUILD_TIMEOUT_S)
        kernels = CpuKernels(ctypes.CDLL(str(path)))
    except subprocess.TimeoutExpired:
        log.warning(
            "CPU kernels: building them with %s did not finish in %g s; using the slower torch path: %s",
            compiler, _BUILD_TIMEOUT_S, _FIX,
        )  # fmt: skip
        return None, KernelStatus(KernelSet.OFF, f"the build timed out after {_BUILD_TIMEOUT_S:g} s")
    except subprocess.CalledProcessError as e:
        log.warning(
            "CPU kernels: building them with %s failed (exit status %d); using the slower torch path: %s%s",
            compiler, e.returncode, _FIX, _last_lines(e.stderr),
        )  # fmt: skip
        return None, KernelStatus(KernelSet.OFF, f"the build failed: {compiler} exit status {e.returncode}")
    except OSError as e:
        log.warning(
            "CPU kernels: building or loading them failed (%s); using the slower torch path: %s", e, _FIX
        )
        return None, KernelStatus(KernelSet.OFF, f"the build failed: {e.strerror or e}")
    return kernels, _status_of(kernels, env)


def _status_of(kernels: CpuKernels, env: Environment) -> KernelStatus:
    if not kernels.has_avx512:
        why = "SEEKSERVE_CPU_KERNELS=portable" if env.portable_kernels else "no AVX-512"
        return KernelStatus(KernelSet.PORTABLE, why)
    extensions = [
        name for name, has in (("VNNI", kernels.has_vnni), ("VBMI int4", kernels.has_int4_matmul)) if has
    ]
    return KernelStatus(KernelSet.AVX512, ", ".join(extensions) or "no VNNI")


def _last_lines(stderr: str | None, num_lines: int = 5) -> str:
    """The end of the compiler's error output, indented under the warning."""
    lines = (stderr or "").strip().splitlines()[-num_lines:]
    return "".join(f"\n  {line}" for line in lines)


def kernels_for(x: torch.Tensor) -> CpuKernels | None:
    """The CPU kernels when they can process x (a CPU tensor in float32 or bfloat16), else None."""
    if x.device.type != "cpu" or x.dtype not in _SUFFIX:
        return None
    return cpu_kernels()
