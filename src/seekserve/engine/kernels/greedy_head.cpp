// Greedy next tokens of an LM head without reading all of its weight: an int8 copy screens the
// vocabulary, the exact weight rescores the few rows that could still be the maximum.
//
// For one hidden row h and vocabulary row v with weight w (float32 or bfloat16) and its int8 copy
// q = round(w / s_v), the screen computes a_v = s_v * sum_d q_vd h_d. Since |w_vd - s_v q_vd| <=
// s_v / 2, the exact logit x_v = sum_d w_vd h_d lies within e_v = s_v * (sum_d |h_d|) / 2 of a_v
// (widened slightly for float32 rounding). With T = max_v (a_v - e_v) <= max_v x_v, every row whose
// a_v + e_v is below T, less a margin for the logits' own rounding, cannot be the argmax; the
// others (usually a handful) get their exact logit: a float32 dot product rounded to T's type, as
// the full matmul stores it, the first maximal index winning as in torch.argmax. The result is the
// argmax of the full logits up to the summation order of float32 dot products.
//
// The screen reads the int8 copy (half of a bfloat16 weight) once for all rows of h: vocabulary
// ranges are split across OpenMP threads, each keeping a running threshold and its candidates.
//
//   hidden: [rows, dim] float32 or bfloat16; weight: [vocab, dim] same type; q: [vocab, dim] int8;
//   scale: [vocab] float32; out: [rows] int64 tokens; candidates: [rows] int64 rows rescored.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <omp.h>

#include "simd.h"

namespace {

using namespace seekserve;

constexpr int kRowsPerPass = 4;   // vocabulary rows screened together (independent sums)
constexpr int kHiddenPerPass = 4; // hidden rows per pass

struct Candidate {
    float upper;
    int32_t index;
};

inline float widen(float x) { return x; }
inline float widen(uint16_t x) { return bf16_to_float(x); }

// What the full matmul stores for a float32 sum: itself, or its bfloat16 rounding.
inline float stored(const float*, float x) { return x; }
inline float stored(const uint16_t*, float x) { return bf16_to_float(float_to_bf16(x)); }

// Lowest value of the max logit's rounding neighbourhood: rows whose exact logit is below this
// cannot round to the rounded maximum (bfloat16 moves a value by at most 2^-8 of it).
inline float with_margin(float t) { return t - std::fabs(t) * 0x1p-6f - 1e-30f; }

template <typename T>
float exact_logit(const T* w, const T* h, int64_t dim) {
    vec acc = splat(0.0f);
    for (int64_t d = 0; d < dim; d += 16) acc = fmadd(load(w + d), load(h + d), acc);
    return stored(w, sum(acc));
}

// Screening arithmetic: S::W holds S::kStep int8 weights widened for S::madd with as many hidden
// values. F32 multiplies float32 vectors; BF16 uses bfloat16 dot products (int8 values are exact
// in bfloat16 and their products exact in float32) on bfloat16 hidden rows as they are, half the
// instructions, which matters once several hidden rows make the screen compute-bound.
struct F32 {
    using H = float;      // hidden values
    using Stored = float; // widened weights, as kept in a block's buffer
    using W = vec;
    static constexpr int kStep = 16;
    static W widen(const int8_t* p) {
#if defined(__AVX512F__)
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#else
        vec v;
        for (int k = 0; k < 16; ++k) v.x[k] = static_cast<float>(p[k]);
        return v;
#endif
    }
    static void keep(W w, float* to) { store(to, w); }
    static W kept(const float* p) { return load(p); }
    static W hidden(const float* p) { return load(p); }
    static vec madd(vec acc, W w, W x) { return fmadd(w, x, acc); }
};

#if defined(__AVX512BF16__)
struct BF16 {
    using H = uint16_t;
    using Stored = uint16_t;
    using W = __m512bh;
    static constexpr int kStep = 32;
    static W widen(const int8_t* p) { return _mm512_cvtne2ps_pbh(F32::widen(p + 16), F32::widen(p)); }
    static void keep(W w, uint16_t* to) { _mm512_storeu_si512(to, (__m512i)w); }
    static W kept(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }
    static W hidden(const uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }
    static vec madd(vec acc, W w, W x) { return _mm512_dpbf16_ps(acc, w, x); }
};
constexpr bool kBf16Screen = true;
#else
using BF16 = F32;  // never used: kBf16Screen is false
constexpr bool kBf16Screen = false;
#endif

// out[j * kRowsPerPass + i] = sum_d q_id h_jd for NV vocabulary rows (widened in w, [NV][dim])
// and MH hidden rows; fixed counts keep every sum in a register.
template <class S, int NV, int MH>
void tile(const typename S::Stored* w, int64_t chunks, const typename S::H* h, int64_t dim, float* out) {
    vec acc[MH][NV];
    for (auto& row : acc)
        for (auto& a : row) a = splat(0.0f);
    for (int64_t c = 0; c < chunks; ++c) {
        for (int j = 0; j < MH; ++j) {
            const typename S::W x = S::hidden(h + j * dim + c * S::kStep);
            for (int i = 0; i < NV; ++i) acc[j][i] = S::madd(acc[j][i], S::kept(w + i * dim + c * S::kStep), x);
        }
    }
    for (int j = 0; j < MH; ++j)
        for (int i = 0; i < NV; ++i) out[j * kRowsPerPass + i] = sum(acc[j][i]);
}

template <class S, int NV>
void tiles(const typename S::Stored* w, int64_t chunks, const typename S::H* h, int64_t dim, int nh, float* out) {
    int j = 0;
    for (; j + kHiddenPerPass <= nh; j += kHiddenPerPass)
        tile<S, NV, kHiddenPerPass>(w, chunks, h + j * dim, dim, out + j * kRowsPerPass);
    const typename S::H* rest = h + j * dim;
    float* o = out + j * kRowsPerPass;
    switch (nh - j) {
        case 3: tile<S, NV, 3>(w, chunks, rest, dim, o); break;
        case 2: tile<S, NV, 2>(w, chunks, rest, dim, o); break;
        case 1: tile<S, NV, 1>(w, chunks, rest, dim, o); break;
        default: break;
    }
}

// The screened sums sum_d q_vd h_jd of nv <= kRowsPerPass vocabulary rows from q with nh hidden
// rows: out[j * kRowsPerPass + i]. wbuf: room for kRowsPerPass * dim widened weights.
template <class S>
void screen_block(const int8_t* q, int64_t dim, int nv, const typename S::H* h, int nh, typename S::Stored* wbuf,
                  float* out) {
    const int64_t chunks = dim / S::kStep;
    for (int64_t k = 0; k < nv * dim; k += S::kStep) S::keep(S::widen(q + k), wbuf + k);
    switch (nv) {
        case 4: tiles<S, 4>(wbuf, chunks, h, dim, nh, out); break;
        case 3: tiles<S, 3>(wbuf, chunks, h, dim, nh, out); break;
        case 2: tiles<S, 2>(wbuf, chunks, h, dim, nh, out); break;
        default: tiles<S, 1>(wbuf, chunks, h, dim, nh, out); break;
    }
}

template <typename T>
void greedy_head(const T* hidden, int64_t rows, const T* weight, const int8_t* q, const float* scale,
                 int64_t vocab, int64_t dim, int64_t* out, int64_t* num_candidates) {
    std::vector<float> h(rows * dim);
    std::vector<float> half_l1(rows);  // e_v = scale_v * half_l1: sum |h| / 2, widened for rounding
    for (int64_t r = 0; r < rows; ++r) {
        double l1 = 0.0;
        for (int64_t d = 0; d < dim; ++d) {
            h[r * dim + d] = widen(hidden[r * dim + d]);
            l1 += std::fabs(h[r * dim + d]);
        }
        // float32 sums of dim terms each |q h| <= 127 |h| err by under dim * 2^-24 of 127 * l1.
        half_l1[r] = static_cast<float>(l1 * (0.5 + 127.0 * static_cast<double>(dim) * 0x1p-23) * 1.0001);
    }
    // bfloat16 hidden rows screen as they are where the CPU has bfloat16 dot products.
    const bool as_bf16 = kBf16Screen && sizeof(T) == 2 && dim % 32 == 0;
    const int threads = omp_get_max_threads();
    std::vector<std::vector<std::vector<Candidate>>> found(threads, std::vector<std::vector<Candidate>>(rows));
    std::vector<std::vector<float>> lower(threads, std::vector<float>(rows, -INFINITY));
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        const int64_t span = (vocab + n - 1) / n, begin = std::min(vocab, t * span), end = std::min(vocab, begin + span);
        std::vector<float> sums(rows * kRowsPerPass);
        std::vector<F32::Stored> wbuf_f32(kRowsPerPass * dim);
        std::vector<BF16::Stored> wbuf_bf16(kRowsPerPass * dim);
        auto& best = lower[t];
        auto& mine = found[t];
        for (int64_t v0 = begin; v0 < end; v0 += kRowsPerPass) {
            const int nv = static_cast<int>(std::min<int64_t>(kRowsPerPass, end - v0));
            if (as_bf16)
                screen_block<BF16>(q + v0 * dim, dim, nv, reinterpret_cast<const BF16::H*>(hidden),
                                   static_cast<int>(rows), wbuf_bf16.data(), sums.data());
            else
                screen_block<F32>(q + v0 * dim, dim, nv, h.data(), static_cast<int>(rows), wbuf_f32.data(),
                                  sums.data());
            for (int64_t r = 0; r < rows; ++r) {
                for (int i = 0; i < nv; ++i) {
                    const float a = scale[v0 + i] * sums[r * kRowsPerPass + i];
                    const float e = scale[v0 + i] * half_l1[r];
                    if (a - e > best[r]) best[r] = a - e;
                    if (a + e >= with_margin(best[r])) mine[r].push_back({a + e, static_cast<int32_t>(v0 + i)});
                }
            }
        }
    }
    for (int64_t r = 0; r < rows; ++r) {
        float threshold = -INFINITY;
        for (int t = 0; t < threads; ++t) threshold = std::max(threshold, lower[t][r]);
        const float cut = with_margin(threshold);
        std::vector<int32_t> rescore;
        for (int t = 0; t < threads; ++t)
            for (const Candidate& c : found[t][r])
                if (c.upper >= cut) rescore.push_back(c.index);
        std::sort(rescore.begin(), rescore.end());
        const int64_t n = static_cast<int64_t>(rescore.size());
        std::vector<float> exact(n);
#pragma omp parallel for schedule(static) if (n > 256)
        for (int64_t i = 0; i < n; ++i) exact[i] = exact_logit(weight + rescore[i] * dim, hidden + r * dim, dim);
        int64_t best = n ? rescore[0] : 0;
        float best_value = -INFINITY;
        for (int64_t i = 0; i < n; ++i)
            if (exact[i] > best_value) best_value = exact[i], best = rescore[i];
        out[r] = best;
        num_candidates[r] = n;
    }
}

// The int8 copy: q = round(w / s) with s = max |w| / 127 per row (rows of zeros get s = 0).
template <typename T>
void quantize_rows(const T* weight, int64_t vocab, int64_t dim, int8_t* q, float* scale) {
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < vocab; ++v) {
        const T* w = weight + v * dim;
        float peak = 0.0f;
        for (int64_t d = 0; d < dim; ++d) peak = std::max(peak, std::fabs(widen(w[d])));
        const float s = peak / 127.0f, inv = peak > 0.0f ? 127.0f / peak : 0.0f;
        for (int64_t d = 0; d < dim; ++d)
            q[v * dim + d] = static_cast<int8_t>(std::lrint(std::clamp(widen(w[d]) * inv, -127.0f, 127.0f)));
        scale[v] = s;
    }
}

}  // namespace

extern "C" {

void greedy_head_f32(const float* hidden, int64_t rows, const float* weight, const int8_t* q, const float* scale,
                     int64_t vocab, int64_t dim, int64_t* out, int64_t* num_candidates) {
    greedy_head(hidden, rows, weight, q, scale, vocab, dim, out, num_candidates);
}

void greedy_head_bf16(const uint16_t* hidden, int64_t rows, const uint16_t* weight, const int8_t* q,
                      const float* scale, int64_t vocab, int64_t dim, int64_t* out, int64_t* num_candidates) {
    greedy_head(hidden, rows, weight, q, scale, vocab, dim, out, num_candidates);
}

void quantize_rows_f32(const float* weight, int64_t vocab, int64_t dim, int8_t* q, float* scale) {
    quantize_rows(weight, vocab, dim, q, scale);
}

void quantize_rows_bf16(const uint16_t* weight, int64_t vocab, int64_t dim, int8_t* q, float* scale) {
    quantize_rows(weight, vocab, dim, q, scale);
}

}  // extern "C"
