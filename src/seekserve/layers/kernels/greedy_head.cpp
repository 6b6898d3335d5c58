// Greedy next tokens of an LM head without reading all of its weight: an int8 copy screens the
// vocabulary, the exact weight rescores the few rows that could still be the maximum.
//
// For one hidden row h and vocabulary row v with weight w (float32 or bfloat16) and its int8 copy
// q = round(w / s_v), the screen computes a_v = s_v * sum_d q_vd h_d. Since |w_vd - s_v q_vd| <=
// s_v / 2, the exact logit x_v = sum_d w_vd h_d lies within e_v = s_v * (sum_d |h_d|) / 2 of a_v
// (widened slightly for float32 rounding). With T = max_v (a_v - e_v) <= max_v x_v, every row whose
// a_v + e_v is below T, less a margin for the logits' own rounding, cannot be the argmax; the
// others (usually a handful) get their exact logit: a float32 dot product rounded to T's type, as
// the full matmul stores it, the first maximal index winning as in torch.argmax. That sum's order is
// this kernel's, so each row also lists its near ties (rows whose rounded logit could reach the
// maximum in another order) for the caller to decide with the head's own product
// (engine/greedy_head.py), and marks the rows it cannot decide at all (non-finite maxima, too many ties).
//
// The screen reads the int8 copy (half of a bfloat16 weight) once for all rows of h: vocabulary
// ranges are split across OpenMP threads, each keeping a running threshold and its candidates.
// A head quantized to int8 per row (weight null) is its own copy: the bound keeps only rounding,
// and the rescore computes scale_v * sum_d q_vd h_d as the int8 matmul does.
//
//   hidden: [rows, dim] float32 or bfloat16; weight: [vocab, dim] same type, or null; q: [vocab,
//   dim] int8; scale: [vocab] float32; out: [rows] int64 tokens; candidates: [rows] int64 rescored.
//
// The screens with integer dot products (VNNI) are in greedy_head_vnni.h, included below.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>
#include <utility>
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

// A candidate's logit in this kernel's float32 order (unrounded), and a bound on how far any other
// float32 summation order (the reference matmul's) can be from it: dim * 2^-23 * sum_d |w_vd h_d|,
// twice the classic bound dim * 2^-24 * sum |w h| on one order's error.
struct Logit {
    float value, spread;
};

// The least and the most a logit may store in any summation order: value -/+ spread (widened by
// the float32 rounding of that sum itself), rounded as the matmul stores it.
struct Range {
    float low, high;
};
template <typename T>
inline Range stored_range(const T* kind, Logit x) {
    const float reach = x.spread + std::fabs(x.value) * 0x1p-23f + 1e-30f;
    return {stored(kind, x.value - reach), stored(kind, x.value + reach)};
}

// sum |w h| is itself summed in float32 (vector lanes, then the lanes): its relative error is
// below (dim / 16 + 16) * 2^-24, which the factor 1.001 covers for any dim up to about 250,000.
inline float order_spread(float abs_sum, int64_t dim) {
    return abs_sum * static_cast<float>(dim) * 0x1p-23f * 1.001f;
}

// A candidate's logit summed in this kernel's float32 order, unrounded.
template <typename T>
float logit_value(const T* w, const T* h, int64_t dim) {
    vec acc = splat(0.0f);
    for (int64_t d = 0; d < dim; d += 16) acc = fmadd(load(w + d), load(h + d), acc);
    return sum(acc);
}

// The logit of an int8 head (q, scale per row): scale times the float32 sum, as the int8 matmul.
template <typename T>
float logit_value(const int8_t* q, float scale, const T* h, int64_t dim) {
    float acc = 0.0f;
    for (int64_t d = 0; d < dim; ++d) acc += static_cast<float>(q[d]) * widen(h[d]);
    return scale * acc;
}

// The same value with its summation-order spread, for the few candidates near the maximum.
template <typename T>
Logit exact_logit(const T* w, const T* h, int64_t dim) {
    vec abs_acc = splat(0.0f);
    for (int64_t d = 0; d < dim; d += 16) abs_acc = add(vabs(mul(load(w + d), load(h + d))), abs_acc);
    return {logit_value(w, h, dim), order_spread(sum(abs_acc), dim)};
}

template <typename T>
Logit exact_logit(const int8_t* q, float scale, const T* h, int64_t dim) {
    float abs_sum = 0.0f;
    for (int64_t d = 0; d < dim; ++d) abs_sum += std::fabs(static_cast<float>(q[d]) * widen(h[d]));
    return {logit_value(q, scale, h, dim), scale * order_spread(abs_sum, dim)};
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

// Per thread, per hidden row: the candidates a screen kept and its best lower bound.
using Found = std::vector<std::vector<std::vector<Candidate>>>;
using Lower = std::vector<std::vector<float>>;

// The screens' common end: the threshold from all threads' lower bounds, the candidates above it
// rescored with the exact weight, the first maximum taken (out). The rescore sums in this kernel's
// order, so a row whose rounded logit could equal or pass the maximum's in another summation order
// is a near tie: ties[r * max_ties ...] lists the row's near ties in ascending order (the maximum
// among them), num_ties[r] counts them; more than max_ties (only the first max_ties listed), or a
// maximum that is not finite, or no candidate at all, is reported as max_ties + 1. The caller
// decides ties with the reference arithmetic (engine/greedy_head.py); a count of 1 is a clear winner.
// weight: the head, or null when the head is the int8 copy itself (q, scale).
template <typename T>
void rescore(const T* hidden, int64_t rows, const T* weight, const int8_t* q, const float* scale, int64_t dim,
             const Found& found, const Lower& lower, int64_t* out, int64_t* num_candidates, int64_t* ties,
             int64_t max_ties, int64_t* num_ties) {
    const size_t threads = found.size();
    for (int64_t r = 0; r < rows; ++r) {
        float threshold = -INFINITY;
        for (size_t t = 0; t < threads; ++t) threshold = std::max(threshold, lower[t][r]);
        const float cut = with_margin(threshold);
        std::vector<int32_t> rescore;
        for (size_t t = 0; t < threads; ++t)
            for (const Candidate& c : found[t][r])
                if (c.upper >= cut) rescore.push_back(c.index);
        std::sort(rescore.begin(), rescore.end());
        const int64_t n = static_cast<int64_t>(rescore.size());
        std::vector<float> value(n);
        const T* h = hidden + r * dim;
#pragma omp parallel for schedule(static) if (n > 256)
        for (int64_t i = 0; i < n; ++i) {
            const int64_t v = rescore[i];
            value[i] = weight != nullptr ? logit_value(weight + v * dim, h, dim) : logit_value(q + v * dim, scale[v], h, dim);
        }
        int64_t best = 0;  // the first maximum of the logits rounded as the matmul stores them
        for (int64_t i = 1; i < n; ++i)
            if (stored(hidden, value[i]) > stored(hidden, value[best])) best = i;
        out[r] = n ? rescore[best] : 0;
        num_candidates[r] = n;
        int64_t* mine = ties + r * max_ties;
        auto exact = [&](int64_t i) {
            const int64_t v = rescore[i];
            return weight != nullptr ? exact_logit(weight + v * dim, h, dim) : exact_logit(q + v * dim, scale[v], h, dim);
        };
        const Logit top_logit = n ? exact(best) : Logit{NAN, NAN};
        if (n == 0 || !std::isfinite(top_logit.value + top_logit.spread)) {
            num_ties[r] = max_ties + 1;
            continue;
        }
        // What each logit may store in some summation order: the rounding of its value's whole
        // range. A row is a near tie when the most it may store reaches the least the maximum may
        // store, unless both store one value whatever the order (then the first index is certain).
        // Most candidates are ruled out by a loose spread first: |w_vd| <= 128 s_v (s_v the int8
        // scale of row v), so sum_d |w_vd h_d| <= 128 s_v sum_d |h_d|.
        float h_abs = 0.0f;
        for (int64_t d = 0; d < dim; ++d) h_abs += std::fabs(widen(h[d]));
        h_abs *= 1.001f;  // its own float32 rounding
        const Range top = stored_range(hidden, top_logit);
        int64_t count = 0;
        for (int64_t i = 0; i < n; ++i) {
            if (i != best) {
                const Logit loose{value[i], order_spread(128.0f * scale[rescore[i]] * h_abs, dim)};
                if (!(stored_range(hidden, loose).high >= top.low)) continue;
                const Range here = stored_range(hidden, exact(i));
                const bool certain = here.low == here.high && top.low == top.high;
                if (!(here.high >= top.low) || certain) continue;
            }
            if (count < max_ties) mine[count] = rescore[i];
            ++count;
        }
        num_ties[r] = std::min(count, max_ties + 1);
    }
}

// One hidden row screened with integer dot products (below); false, having done nothing, where the
// CPU has none.
bool screen_one_row(const float* h, const int8_t* q, const float* scale, const float* l1, const int32_t* sums,
                    int64_t vocab, int64_t dim, float error, Found& found, Lower& lower);

// Several hidden rows against an int8 head in place, packed tile by tile into the VNNI screen's
// layout as it goes (below); false, having done nothing, where the CPU has no integer dot products.
// Packing costs about what screening 8 rows does (Gemma 3 270M's head: ~6.5 of 7.6 ms), so fewer
// rows take the float screen.
constexpr int64_t kInPlaceTileRows = 12;
template <typename T>
bool screen_rows_in_place(const T* hidden, int64_t rows, const int8_t* q, const float* scale, const float* l1,
                          int64_t vocab, int64_t dim, int64_t* out, int64_t* num_candidates, int64_t* ties, int64_t max_ties, int64_t* num_ties);

template <typename T>
void greedy_head(const T* hidden, int64_t rows, const T* weight, const int8_t* q, const float* scale,
                 const float* l1, const int32_t* sums, int64_t vocab, int64_t dim, int64_t* out,
                 int64_t* num_candidates, int64_t* ties, int64_t max_ties, int64_t* num_ties) {
    if (rows >= kInPlaceTileRows && weight == nullptr && l1 != nullptr && dim % 64 == 0 &&
        screen_rows_in_place(hidden, rows, q, scale, l1, vocab, dim, out, num_candidates, ties, max_ties, num_ties))
        return;
    std::vector<float> h(rows * dim);
    // e_v = scale_v * half_l1: sum |h| / 2 for the int8 copy's error (none when it is the head
    // itself: weight null), widened for float32 rounding.
    const double weight_error = weight != nullptr ? 0.5 : 0.0;
    std::vector<float> half_l1(rows);
    for (int64_t r = 0; r < rows; ++r) {
        double l1 = 0.0;
        for (int64_t d = 0; d < dim; ++d) {
            h[r * dim + d] = widen(hidden[r * dim + d]);
            l1 += std::fabs(h[r * dim + d]);
        }
        // float32 sums of dim terms each |q h| <= 127 |h| err by under dim * 2^-24 of 127 * l1.
        half_l1[r] = static_cast<float>(l1 * (weight_error + 127.0 * static_cast<double>(dim) * 0x1p-23) * 1.0001);
    }
    // bfloat16 hidden rows screen as they are where the CPU has bfloat16 dot products.
    const bool as_bf16 = kBf16Screen && sizeof(T) == 2 && dim % 32 == 0;
    const int threads = omp_get_max_threads();
    Found found(threads, std::vector<std::vector<Candidate>>(rows));
    Lower lower(threads, std::vector<float>(rows, -INFINITY));
    if (rows == 1 && l1 != nullptr && sums != nullptr && dim % 64 == 0 && dim < 8192 &&
        screen_one_row(h.data(), q, scale, l1, sums, vocab, dim, half_l1[0], found, lower)) {
        rescore(hidden, rows, weight, q, scale, dim, found, lower, out, num_candidates, ties, max_ties, num_ties);
        return;
    }
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
    rescore(hidden, rows, weight, q, scale, dim, found, lower, out, num_candidates, ties, max_ties, num_ties);
}

}  // namespace

#include "greedy_head_vnni.h"

namespace {

// The VNNI layout of the int8 copy: [tile][dim / 4][16 rows][4] as q + 128 (rows past the vocabulary
// are zeros, scale 0), and l1[v] = sum_d |q_vd|. packed: [tiles * 16 * dim]; scale, l1: [tiles * 16].
void pack_vnni(const int8_t* q, int64_t vocab, int64_t dim, uint8_t* packed, float* l1) {
    const int64_t tiles = (vocab + 15) / 16;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
        const bool transposed = dim % 64 == 0;  // the screen's own packing, 64 dimensions at a time
        if (transposed) pack_tiles(q, vocab, dim, t, t + 1, packed + t * 16 * dim);
#else
        const bool transposed = false;
#endif
        for (int64_t i = 0; i < 16; ++i) {
            const int64_t v = t * 16 + i;
            for (int64_t d = 0; d < dim && !transposed; ++d)
                packed[((t * (dim / 4) + d / 4) * 16 + i) * 4 + d % 4] =
                    static_cast<uint8_t>((v < vocab ? q[v * dim + d] : 0) + 128);
            int32_t norm = 0;
            for (int64_t d = 0; d < dim && v < vocab; ++d) norm += std::abs(static_cast<int32_t>(q[v * dim + d]));
            l1[v] = static_cast<float>(norm);
        }
    }
}

// What the one-row screen needs of each row of an int8 head: l1[v] = sum_d |q_vd|, sums[v] = sum_d q_vd.
void row_sums(const int8_t* q, int64_t vocab, int64_t dim, float* l1, int32_t* sums) {
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < vocab; ++v) {
        int32_t norm = 0, total = 0;
        for (int64_t d = 0; d < dim; ++d) {
            const int32_t x = q[v * dim + d];
            norm += x < 0 ? -x : x;
            total += x;
        }
        l1[v] = static_cast<float>(norm);
        sums[v] = total;
    }
}

// The int8 copy: q = round(w / s) with s = max |w| / 127 per row (rows of zeros get s = 0).
template <typename T>
void quantize_rows(const T* weight, int64_t vocab, int64_t dim, int8_t* q, float* scale) {
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < vocab; ++v) {
        const T* w = weight + v * dim;
        int8_t* out = q + v * dim;
#if defined(__AVX512F__)
        // The scalar loop below, sixteen lanes at a time (the conversion rounds to nearest even, as lrint).
        __m512 top = _mm512_setzero_ps();
        for (int64_t d = 0; d < dim; d += 16) top = _mm512_max_ps(top, _mm512_abs_ps(load(w + d, lanes(dim - d))));
        const float peak = _mm512_reduce_max_ps(top);
        const float inv = peak > 0.0f ? 127.0f / peak : 0.0f;
        const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
        for (int64_t d = 0; d < dim; d += 16) {
            const int n = lanes(dim - d);
            const __m512 x = _mm512_min_ps(_mm512_max_ps(mul(load(w + d, n), splat(inv)), lo), hi);
            _mm_mask_storeu_epi8(out + d, static_cast<__mmask16>((1u << n) - 1), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(x)));
        }
#else
        float peak = 0.0f;
        for (int64_t d = 0; d < dim; ++d) peak = std::max(peak, std::fabs(widen(w[d])));
        const float inv = peak > 0.0f ? 127.0f / peak : 0.0f;
        for (int64_t d = 0; d < dim; ++d)
            out[d] = static_cast<int8_t>(std::lrint(std::clamp(widen(w[d]) * inv, -127.0f, 127.0f)));
#endif
        scale[v] = peak / 127.0f;
    }
}

}  // namespace

extern "C" {

void greedy_head_f32(const float* hidden, int64_t rows, const float* weight, const int8_t* q, const float* scale,
                     const float* l1, const int32_t* sums, int64_t vocab, int64_t dim, int64_t* out,
                     int64_t* num_candidates, int64_t* ties, int64_t max_ties, int64_t* num_ties) {
    greedy_head(hidden, rows, weight, q, scale, l1, sums, vocab, dim, out, num_candidates, ties, max_ties, num_ties);
}

void greedy_head_bf16(const uint16_t* hidden, int64_t rows, const uint16_t* weight, const int8_t* q,
                      const float* scale, const float* l1, const int32_t* sums, int64_t vocab, int64_t dim,
                      int64_t* out, int64_t* num_candidates, int64_t* ties, int64_t max_ties, int64_t* num_ties) {
    greedy_head(hidden, rows, weight, q, scale, l1, sums, vocab, dim, out, num_candidates, ties, max_ties, num_ties);
}

void quantize_rows_f32(const float* weight, int64_t vocab, int64_t dim, int8_t* q, float* scale) {
    quantize_rows(weight, vocab, dim, q, scale);
}

void quantize_rows_bf16(const uint16_t* weight, int64_t vocab, int64_t dim, int8_t* q, float* scale) {
    quantize_rows(weight, vocab, dim, q, scale);
}

int greedy_head_has_vnni() { return kVnni ? 1 : 0; }

// l1 and sums of an int8 head's rows [vocab, dim], for greedy_head's one-row screen (VNNI CPUs).
void greedy_head_row_sums(const int8_t* q, int64_t vocab, int64_t dim, float* l1, int32_t* sums) {
    row_sums(q, vocab, dim, l1, sums);
}

void greedy_head_pack_vnni(const int8_t* q, int64_t vocab, int64_t dim, uint8_t* packed, float* l1) {
    pack_vnni(q, vocab, dim, packed, l1);
}

void greedy_head_vnni_f32(const float* hidden, int64_t rows, const float* weight, const uint8_t* packed,
                          const float* scale, const float* l1, int64_t vocab, int64_t dim, int64_t* out,
                          int64_t* num_candidates, int64_t* ties, int64_t max_ties, int64_t* num_ties) {
    greedy_head_vnni(hidden, rows, weight, packed, scale, l1, vocab, dim, out, num_candidates, ties, max_ties, num_ties);
}

void greedy_head_vnni_bf16(const uint16_t* hidden, int64_t rows, const uint16_t* weight, const uint8_t* packed,
                           const float* scale, const float* l1, int64_t vocab, int64_t dim, int64_t* out,
                           int64_t* num_candidates, int64_t* ties, int64_t max_ties, int64_t* num_ties) {
    greedy_head_vnni(hidden, rows, weight, packed, scale, l1, vocab, dim, out, num_candidates, ties, max_ties, num_ties);
}

}  // extern "C"
