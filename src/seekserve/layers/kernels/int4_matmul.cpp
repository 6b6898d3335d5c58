// x @ W^T for int4 weights in torch's CPU packing, with integer dot products (AVX-512 VNNI + VBMI).
//
// W[n, k] = (q[n, k] - 8) * scale[g, n] + zero[g, n], q in [0, 15], g = k / G (quant/int4.py), packed
// as torch._convert_weight_to_int4pack_for_cpu packs it on AVX-512 CPUs: blocks of 64 rows, each
// [K][32] bytes, byte j of column k = row j (low nibble) | row j + 32 (high nibble)
// (quant/int4_layout.py probes this before the kernel is used).
//
// Each row of x is quantized per group in int8 digits, x ~ d1 q1 + d2 q2 (+ d3 q3) with
// d1 = max|x| / 127 and each next scale 1/254 of the one before: bfloat16 rows in two digits, kept
// to 2^-16 of the group's largest value (finer than bfloat16 rounds them), float32 rows in three
// (2^-24, float32's own precision). The result is torch's float computation up to the order and
// rounding of sums. Then
//   y[n] = sum_g scale[g, n] (sum_i d_i S_i - 8 X^) + zero[g, n] X,
//   S_i = sum_{k in g} q[n, k] q_i[k]     (exact, in int32, 64 products per VNNI instruction)
// with X the group's sum of x and X^ that of its quantized values, so the rounding of x is weighed
// by the centred q - 8.
// Four columns of a 64-row block are two 64-byte loads; one byte permutation (VBMI) a 16-row
// quarter turns their nibbles into the dot products' [16 rows][4 columns] order:
//
//   column k of a block, 32 bytes:   [r0 | r32] [r1 | r33] ... [r31 | r63]   (low | high nibble)
//   quarter j (rows 16j..16j+15):    lane i = bytes (k, k+1, k+2, k+3) of row 16j + i
//
// A decode step's products then read the weights at memory speed rather than unpacking them to floats.
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace {

using namespace seekserve;

#if defined(__AVX512VNNI__) && defined(__AVX512VBMI__) && defined(__AVX512BW__)
constexpr bool kInt4Vnni = true;
constexpr int64_t kBlock = 64;  // rows per packed block

constexpr int kMaxDigits = 3;

struct QuantizedX {
    std::vector<int8_t> q[kMaxDigits];      // [rows][K] per digit
    std::vector<float> d[kMaxDigits];       // [rows][groups]: digit scales
    std::vector<float> sum, sum_hat;        // [rows][groups]: sum of x, of its quantized values
};

inline __m512i to_int(vec v) { return _mm512_cvtps_epi32(v); }  // round to nearest even, as nearbyint

// Rows of x quantized per group (a multiple of 16) in D int8 digits.
template <int D, typename T>
void quantize_x(const T* x, int64_t x_stride, int64_t rows, int64_t K, int64_t group, QuantizedX& out) {
    const int64_t groups = K / group;
    for (int i = 0; i < D; ++i) out.q[i].resize(rows * K), out.d[i].resize(rows * groups);
    out.sum.resize(rows * groups);
    out.sum_hat.resize(rows * groups);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
#pragma omp parallel for if (rows >= 16)
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < groups; ++g) {
            const T* src = x + r * x_stride + g * group;
            vec peak = splat(0.0f), total = splat(0.0f);
            for (int64_t k = 0; k < group; k += 16) {
                const vec v = load(src + k);
                peak = _mm512_max_ps(peak, _mm512_abs_ps(v));
                total = add(total, v);
            }
            const float top = _mm512_reduce_max_ps(peak);
            float scale[D], inv[D];
            for (int i = 0; i < D; ++i) {
                scale[i] = i == 0 ? top / 127.0f : scale[i - 1] / 254.0f;
                inv[i] = top > 0.0f ? 1.0f / scale[i] : 0.0f;
            }
            __m512i digit_sum[D];
            for (auto& v : digit_sum) v = _mm512_setzero_si512();
            for (int64_t k = 0; k < group; k += 16) {
                vec rest = load(src + k);
                for (int i = 0; i < D; ++i) {
                    const __m512i q = _mm512_min_epi32(_mm512_max_epi32(to_int(mul(rest, splat(inv[i]))), lo), hi);
                    rest = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(q), splat(scale[i]), rest);
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(out.q[i].data() + r * K + g * group + k),
                                     _mm512_cvtepi32_epi8(q));
                    digit_sum[i] = _mm512_add_epi32(digit_sum[i], q);
                }
            }
            const int64_t at = r * groups + g;
            float quantized = 0.0f;
            for (int i = 0; i < D; ++i) {
                out.d[i][at] = scale[i];
                quantized += scale[i] * static_cast<float>(_mm512_reduce_add_epi32(digit_sum[i]));
            }
            out.sum[at] = sum(total);
            out.sum_hat[at] = quantized;
        }
    }
}

// scale and zero of 16 consecutive rows of group g: sz is [groups][N][2].
inline void scales(const float* sz, __m512& s, __m512& z) {
    const __m512 a = _mm512_loadu_ps(sz), b = _mm512_loadu_ps(sz + 16);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    s = _mm512_permutex2var_ps(a, even, b);
    z = _mm512_permutex2var_ps(a, _mm512_add_epi32(even, _mm512_set1_epi32(1)), b);
}
inline void scales(const uint16_t* sz, __m512& s, __m512& z) {
    const __m512i pairs = _mm512_loadu_si512(sz);  // (scale, zero) as the low and high half of a word
    s = _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16));
    z = _mm512_castsi512_ps(_mm512_and_si512(pairs, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

// Byte 4i + c of quarter j: row 16j + i of a half block, column c of four (columns 0-1 are the
// first load, indices 0-63; columns 2-3 the second, 64-127).
struct Permutation {
    alignas(64) uint8_t index[2][64];
    Permutation() {
        for (int j = 0; j < 2; ++j)
            for (int i = 0; i < 16; ++i)
                for (int c = 0; c < 4; ++c) index[j][4 * i + c] = static_cast<uint8_t>(16 * j + i + 32 * c);
    }
};

// How far ahead a one-row product asks for its weights: a decode step's layers read 5 % faster.
constexpr int64_t kPrefetchBytes = 8192;

// Rows [r0, r0 + MR) of x against quarters [4 - Q, 4) .. of one 64-row block, Q quarters (16 rows
// each) a pass: all four for a row or two (the weights are loaded once), two for more rows (the
// registers hold their sums). Writes out[r][n0 .. n0 + 64). With `prefetch`, the weights that many
// bytes ahead are requested as the pass goes (into the next blocks).
template <int D, int MR, int Q, typename T>
void block_rows(const uint8_t* block, const T* sz, int64_t N, int64_t n0, int64_t K, int64_t group,
                const QuantizedX& xq, int64_t r0, T* out, int64_t out_stride, int64_t prefetch = 0) {
    static_assert(Q == 2 || Q == 4, "a pass covers a half block or all of it");
    const int64_t groups = K / group;
    static const Permutation perm;
    const __m512i perm0 = _mm512_load_si512(perm.index[0]), perm1 = _mm512_load_si512(perm.index[1]);
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    for (int first = 0; first < 4; first += Q) {  // quarter q: rows 16q..; quarters 0-1 low nibbles
        __m512 acc[MR][Q];
        for (auto& a : acc)
            for (auto& v : a) v = _mm512_setzero_ps();
        for (int64_t g = 0; g < groups; ++g) {
            const uint8_t* cols = block + g * group * 32;
            __m512i acc_int[D][MR][Q];
            for (auto& digit : acc_int)
                for (auto& row : digit)
                    for (auto& v : row) v = _mm512_setzero_si512();
            for (int64_t k = 0; k < group; k += 4) {
                if (prefetch != 0 && first == 0) {
                    _mm_prefetch(reinterpret_cast<const char*>(cols + k * 32 + prefetch), _MM_HINT_T0);
                    _mm_prefetch(reinterpret_cast<const char*>(cols + k * 32 + prefetch + 64), _MM_HINT_T0);
                }
                const __m512i a = _mm512_loadu_si512(cols + k * 32), b = _mm512_loadu_si512(cols + k * 32 + 64);
                __m512i w[Q];
                for (int h = 0; h < Q / 2; ++h) {
                    const bool high = first + 2 * h >= 2;
                    const __m512i x = _mm512_and_si512(high ? _mm512_srli_epi16(a, 4) : a, nibble);
                    const __m512i y = _mm512_and_si512(high ? _mm512_srli_epi16(b, 4) : b, nibble);
                    w[2 * h] = _mm512_permutex2var_epi8(x, perm0, y);
                    w[2 * h + 1] = _mm512_permutex2var_epi8(x, perm1, y);
                }
                const int64_t at = g * group + k;
                for (int i = 0; i < D; ++i)
                    for (int r = 0; r < MR; ++r) {
                        int32_t four;  // x's digits for these four columns
                        std::memcpy(&four, xq.q[i].data() + (r0 + r) * K + at, 4);
                        const __m512i v = _mm512_set1_epi32(four);
                        for (int q = 0; q < Q; ++q) acc_int[i][r][q] = dpbusd(acc_int[i][r][q], w[q], v);
                    }
            }
            for (int q = 0; q < Q; ++q) {
                __m512 s, z;
                scales(sz + (g * N + n0 + 16 * (first + q)) * 2, s, z);
                for (int r = 0; r < MR; ++r) {
                    const int64_t at = (r0 + r) * groups + g;
                    __m512 t = _mm512_set1_ps(-8.0f * xq.sum_hat[at]);
                    for (int i = D - 1; i >= 0; --i)  // the smallest digit first
                        t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc_int[i][r][q]), _mm512_set1_ps(xq.d[i][at]), t);
                    acc[r][q] = _mm512_fmadd_ps(s, t, _mm512_fmadd_ps(z, _mm512_set1_ps(xq.sum[at]), acc[r][q]));
                }
            }
        }
        for (int r = 0; r < MR; ++r)
            for (int q = 0; q < Q; ++q) store(out + (r0 + r) * out_stride + n0 + 16 * (first + q), acc[r][q]);
    }
}

template <int D, typename T>
void int4_matmul(const T* x, int64_t x_stride, int64_t rows, int64_t K, const uint8_t* packed, const T* sz,
                 int64_t N, int64_t group, T* out, int64_t out_stride) {
    static thread_local QuantizedX buffers;  // reused by this caller: no allocation per call
    QuantizedX& xq = buffers;                // the caller's, shared with the OpenMP team below
    quantize_x<D>(x, x_stride, rows, K, group, xq);
    // Rows a pass: as many as the registers hold sums for (D digits x rows x quarters).
    constexpr int kRows = D == 2 ? 4 : 2;
    const int64_t blocks = N / kBlock;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* block = packed + b * kBlock * K / 2;
        const int64_t n0 = b * kBlock;
        int64_t r = 0;
        for (; r + kRows <= rows; r += kRows)
            block_rows<D, kRows, 2>(block, sz, N, n0, K, group, xq, r, out, out_stride);
        switch (rows - r) {
            case 3: block_rows<D, 3, 2>(block, sz, N, n0, K, group, xq, r, out, out_stride); break;
            case 2: block_rows<D, 2, 4>(block, sz, N, n0, K, group, xq, r, out, out_stride); break;
            case 1:
                block_rows<D, 1, 4>(block, sz, N, n0, K, group, xq, r, out, out_stride, kPrefetchBytes);
                break;
            default: break;
        }
    }
}
#else
constexpr bool kInt4Vnni = false;

// Without VNNI and VBMI: callers check int4_matmul_available() first (CpuKernels raises), and a
// call that does not still gets zeros rather than whatever the output held.
template <int D, typename T>
void int4_matmul(const T*, int64_t, int64_t rows, int64_t, const uint8_t*, const T*, int64_t N, int64_t, T* out,
                 int64_t out_stride) {
    for (int64_t r = 0; r < rows; ++r) std::memset(out + r * out_stride, 0, N * sizeof(T));
}
#endif

}  // namespace

extern "C" {

int int4_matmul_available() { return kInt4Vnni ? 1 : 0; }

// out[rows, N] (row stride out_stride) = x[rows, K] (row stride x_stride) @ W^T; N a multiple of 64,
// K of group (32, 64 or 128). Callers check int4_matmul_available() first.
void int4_matmul_f32(const float* x, int64_t x_stride, int64_t rows, int64_t K, const uint8_t* packed,
                     const float* sz, int64_t N, int64_t group, float* out, int64_t out_stride) {
    int4_matmul<3>(x, x_stride, rows, K, packed, sz, N, group, out, out_stride);
}

void int4_matmul_bf16(const uint16_t* x, int64_t x_stride, int64_t rows, int64_t K, const uint8_t* packed,
                      const uint16_t* sz, int64_t N, int64_t group, uint16_t* out, int64_t out_stride) {
    int4_matmul<2>(x, x_stride, rows, K, packed, sz, N, group, out, out_stride);
}

}  // extern "C"
