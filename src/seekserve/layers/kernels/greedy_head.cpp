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

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
// The screen with integer dot products (VNNI: 64 int8 products per instruction),
// which keeps several hidden rows memory-bound. Each hidden row is quantized to int8 in two digits:
// h ~ s1 q1 + s2 q2, where s1 fits all but its kOutliers largest values in +-127 (final hidden
// states have a few huge dimensions that would otherwise take all the resolution) and q2, nonzero
// only on the clamped dimensions, carries what they lost. With eps = h - s1 q1 - s2 q2,
//   |x_v - a_v| <= s_v (sum_d |q_vd| |eps_d| + sum_d |h_d| / 2)
//              <= s_v (s1 / 2 * l1_v + 127 * sum_{clamped d} |eps_d| + sum_d |h_d| / 2),
// with l1_v = sum_d |q_vd| kept per row. The weights are the unsigned operand, stored as q + 128 in
// tiles of 16 vocabulary rows by 4 dimensions, [tile][dim / 4][16][4], so one 64-byte load feeds
// one instruction per hidden row and each of its 16 lanes sums one vocabulary row:
//   sum_d (q_vd + 128) q1_d = sum_d q_vd q1_d + 128 sum_d q1_d.
constexpr int kOutliers = 8;
constexpr int kTile = 16;
constexpr int kTokensPerPass = 16;

struct QuantizedRow {
    std::vector<int32_t> q1;                         // [dim / 4], four int8 per word
    std::vector<std::pair<int64_t, int32_t>> q2;    // (dim / 4 index, four int8), clamped words only
    float s1 = 0.0f, s2 = 0.0f, half_s1 = 0.0f, constant = 0.0f;
    int32_t sum1 = 0, sum2 = 0;
};

QuantizedRow quantize_hidden(const float* h, int64_t dim, double weight_error = 0.5) {
    QuantizedRow row;
    std::vector<float> mags(dim);
    double l1 = 0.0;
    for (int64_t d = 0; d < dim; ++d) mags[d] = std::fabs(h[d]), l1 += mags[d];
    const int64_t k = std::min<int64_t>(kOutliers, dim - 1);
    std::nth_element(mags.begin(), mags.begin() + k, mags.end(), std::greater<float>());
    const float peak = mags[k] > 0.0f ? mags[k] : *std::max_element(mags.begin(), mags.end());
    row.s1 = peak > 0.0f ? peak / 127.0f : 1.0f;
    std::vector<int8_t> q1(dim), q2(dim, 0);
    std::vector<float> rest(dim);
    std::vector<bool> clamped(dim);
    float rest_peak = 0.0f;
    for (int64_t d = 0; d < dim; ++d) {
        const float rounded = std::nearbyint(h[d] / row.s1), x = std::clamp(rounded, -127.0f, 127.0f);
        q1[d] = static_cast<int8_t>(x);
        row.sum1 += q1[d];
        rest[d] = h[d] - row.s1 * x;
        clamped[d] = rounded != x;
        if (clamped[d]) rest_peak = std::max(rest_peak, std::fabs(rest[d]));
    }
    row.s2 = rest_peak / 127.0f;
    double clamped_error = 0.0;
    for (int64_t d = 0; d < dim; ++d) {
        if (!clamped[d]) continue;
        const float x = std::clamp(std::nearbyint(rest[d] / row.s2), -127.0f, 127.0f);
        q2[d] = static_cast<int8_t>(x);
        row.sum2 += q2[d];
        clamped_error += std::fabs(rest[d] - row.s2 * x) + std::fabs(h[d]) * 0x1p-20;
    }
    row.q1.resize(dim / 4);
    std::memcpy(row.q1.data(), q1.data(), dim);
    for (int64_t w = 0; w < dim / 4; ++w) {
        int32_t word;
        std::memcpy(&word, q2.data() + 4 * w, 4);
        if (word != 0) row.q2.push_back({w, word});
    }
    // Unclamped dims err by s1 / 2 (widened for the rounding of h / s1); float32 rounding of the
    // scaled sums adds under 2^-20 of 127 l1.
    row.half_s1 = row.s1 * 0.5f * (1.0f + 0x1p-18f);
    row.constant = static_cast<float>((127.0 * clamped_error + l1 * (weight_error + 127.0 * 0x1p-20)) * 1.0001);
    return row;
}

// The screen of tiles [tile_begin, tile_end) for hidden rows [r0, r0 + MH); q1: their first
// digits, [dim / 4][MH] words. best[r]: row r's best lower bound so far, cut[r] its with_margin.
// A tile's rows are kept when their upper bound reaches the cut; a tile with none kept cannot
// raise the best lower bound either (lower <= upper < cut <= best), so only the upper bounds are
// computed for it, in one chain per hidden row:
//   upper_v = s_v (s1 dot1 + s2 dot2 + half_s1 l1_v + constant).
// packed holds tiles from tile_begin on; scale and l1 cover the vocabulary (padding rows unread).
template <int MH>
void screen_tiles_vnni(const uint8_t* packed, const float* scale, const float* l1, int64_t vocab, int64_t dim,
                       int64_t tile_begin, int64_t tile_end, const QuantizedRow* rows, const int32_t* q1,
                       int64_t r0, std::vector<std::vector<Candidate>>& found, float* best, float* cut) {
    const int64_t words = dim / 4;
    const int64_t last = (vocab - 1) / kTile;  // the one tile that may end in padding rows
    const __mmask16 tail = static_cast<__mmask16>(0xFFFFu >> (kTile * (last + 1) - vocab));
    for (int64_t t = tile_begin; t < tile_end; ++t) {
        const uint8_t* tile = packed + (t - tile_begin) * kTile * dim;
        __m512i acc[MH];
        for (auto& a : acc) a = _mm512_setzero_si512();
        for (int64_t w = 0; w < words; ++w) {
            const __m512i weights = _mm512_loadu_si512(tile + w * 64);
            for (int j = 0; j < MH; ++j) acc[j] = dpbusd(acc[j], weights, _mm512_set1_epi32(q1[w * MH + j]));
        }
        const __mmask16 valid = t == last ? tail : static_cast<__mmask16>(0xFFFF);
        const __m512 s = _mm512_maskz_loadu_ps(valid, scale + t * kTile);
        const __m512 norm = _mm512_maskz_loadu_ps(valid, l1 + t * kTile);
        for (int j = 0; j < MH; ++j) {
            const QuantizedRow& row = rows[r0 + j];
            __m512 sum = _mm512_fmadd_ps(norm, _mm512_set1_ps(row.half_s1), _mm512_set1_ps(row.constant));
            __m512 dot = _mm512_setzero_ps();
            if (!row.q2.empty()) {
                __m512i acc2 = _mm512_setzero_si512();
                for (const auto& [w, word] : row.q2)
                    acc2 = dpbusd(acc2, _mm512_loadu_si512(tile + w * 64), _mm512_set1_epi32(word));
                dot = _mm512_mul_ps(_mm512_set1_ps(row.s2),
                                    _mm512_cvtepi32_ps(_mm512_sub_epi32(acc2, _mm512_set1_epi32(128 * row.sum2))));
            }
            const __m512 dot1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[j], _mm512_set1_epi32(128 * row.sum1)));
            dot = _mm512_fmadd_ps(_mm512_set1_ps(row.s1), dot1, dot);  // a_v / s_v
            const __m512 upper = _mm512_mul_ps(s, _mm512_add_ps(dot, sum));
            __mmask16 keep = _mm512_mask_cmp_ps_mask(valid, upper, _mm512_set1_ps(cut[r0 + j]), _CMP_GE_OQ);
            if (!keep) continue;
            const __m512 lower = _mm512_mul_ps(s, _mm512_sub_ps(dot, sum));
            const float top = _mm512_mask_reduce_max_ps(valid, lower);
            if (top > best[r0 + j]) {
                best[r0 + j] = top;
                cut[r0 + j] = with_margin(top);
                keep = _mm512_mask_cmp_ps_mask(valid, upper, _mm512_set1_ps(cut[r0 + j]), _CMP_GE_OQ);
            }
            alignas(64) float ups[16];
            _mm512_store_ps(ups, upper);
            while (keep) {
                const int i = __builtin_ctz(keep);
                keep &= keep - 1;
                found[r0 + j].push_back({ups[i], static_cast<int32_t>(t * kTile + i)});
            }
        }
    }
}

// Tiles [t0, t1) of a row-major int8 head in the screen's layout (q + 128; rows past the vocabulary
// zero): each 64-dimension chunk of 16 rows is a 16 x 16 transpose of 32-bit words.
void pack_tiles(const int8_t* q, int64_t vocab, int64_t dim, int64_t t0, int64_t t1, uint8_t* out) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int64_t t = t0; t < t1; ++t) {
        uint8_t* tile = out + (t - t0) * kTile * dim;
        for (int64_t c = 0; c < dim; c += 64) {
            __m512i a[16], u[16];
            for (int i = 0; i < 16; ++i) {
                const int64_t v = t * kTile + i;
                a[i] = v < vocab ? _mm512_loadu_si512(q + v * dim + c) : _mm512_setzero_si512();
            }
            for (int i = 0; i < 16; i += 2) {  // within 128-bit lanes: words of row pairs interleaved
                u[i] = _mm512_unpacklo_epi32(a[i], a[i + 1]);
                u[i + 1] = _mm512_unpackhi_epi32(a[i], a[i + 1]);
            }
            for (int k = 0; k < 16; k += 4) {  // word m of each lane, rows k..k+3
                a[k] = _mm512_unpacklo_epi64(u[k], u[k + 2]);
                a[k + 1] = _mm512_unpackhi_epi64(u[k], u[k + 2]);
                a[k + 2] = _mm512_unpacklo_epi64(u[k + 1], u[k + 3]);
                a[k + 3] = _mm512_unpackhi_epi64(u[k + 1], u[k + 3]);
            }
            uint8_t* words = tile + c / 4 * 64;
            for (int m = 0; m < 4; ++m) {  // lane L of the four row quads: word 4 L + m
                // 128-bit lanes 0 and 2 (even) or 1 and 3 (odd) of rows 0-7, then of rows 8-15
                const __m512i even = _mm512_shuffle_i32x4(a[m], a[4 + m], 0x88);
                const __m512i odd = _mm512_shuffle_i32x4(a[m], a[4 + m], 0xDD);
                const __m512i even2 = _mm512_shuffle_i32x4(a[8 + m], a[12 + m], 0x88);
                const __m512i odd2 = _mm512_shuffle_i32x4(a[8 + m], a[12 + m], 0xDD);
                const __m512i lanes[4] = {
                    _mm512_shuffle_i32x4(even, even2, 0x88), _mm512_shuffle_i32x4(odd, odd2, 0x88),
                    _mm512_shuffle_i32x4(even, even2, 0xDD), _mm512_shuffle_i32x4(odd, odd2, 0xDD)};
                for (int lane = 0; lane < 4; ++lane)
                    _mm512_storeu_si512(words + (4 * lane + m) * 64, _mm512_xor_si512(lanes[lane], flip));
            }
        }
    }
}

// The tile screen of several hidden rows, then the rescore. The head is either packed (the int8
// copy of the float `weight`, in the tile layout) or an int8 head q in place (weight and packed
// null), packed a block of tiles at a time into a per-thread buffer that every group of hidden
// rows then reads from cache; its bound has no copy error, and its rescore is the int8 matmul's.
template <typename T>
void screen_tiles(const T* hidden, int64_t rows, const T* weight, const uint8_t* packed, const int8_t* q,
                  const float* scale, const float* l1, int64_t vocab, int64_t dim, int64_t* out,
                  int64_t* num_candidates, int64_t* ties, int64_t max_ties, int64_t* num_ties) {
    // The copy's error (none in place) and the exact logits' float32 rounding, as the float screen.
    const double weight_error = (packed != nullptr ? 0.5 : 0.0) + 127.0 * static_cast<double>(dim) * 0x1p-23;
    std::vector<QuantizedRow> quantized;
    std::vector<float> h(dim);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t d = 0; d < dim; ++d) h[d] = widen(hidden[r * dim + d]);
        quantized.push_back(quantize_hidden(h.data(), dim, weight_error));
    }
    // First digits by groups of kTokensPerPass rows, [group][dim / 4][rows in group].
    const int64_t words = dim / 4;
    std::vector<int32_t> q1(rows * words);
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t r0 = r / kTokensPerPass * kTokensPerPass, mh = std::min<int64_t>(kTokensPerPass, rows - r0);
        for (int64_t w = 0; w < words; ++w) q1[r0 * words + w * mh + (r - r0)] = quantized[r].q1[w];
    }
    const int threads = omp_get_max_threads();
    const int64_t tiles = (vocab + kTile - 1) / kTile;
    Found found(threads, std::vector<std::vector<Candidate>>(rows));
    Lower lower(threads, std::vector<float>(rows, -INFINITY));
    // Blocks of tiles small enough to stay in cache while every group of hidden rows reads them.
    constexpr int64_t kTilesPerBlock = 16;
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        const int64_t span = (tiles + n - 1) / n, begin = std::min(tiles, t * span), end = std::min(tiles, begin + span);
        std::vector<float> best(rows, -INFINITY), cut(rows, -INFINITY);  // per hidden row
        std::vector<uint8_t> buffer(packed == nullptr ? kTilesPerBlock * kTile * dim : 0);
        for (int64_t b0 = begin; b0 < end; b0 += kTilesPerBlock) {
            const int64_t b1 = std::min(end, b0 + kTilesPerBlock);
            const uint8_t* block = packed != nullptr ? packed + b0 * kTile * dim : buffer.data();
            if (packed == nullptr) pack_tiles(q, vocab, dim, b0, b1, buffer.data());
            for (int64_t r0 = 0; r0 < rows; r0 += kTokensPerPass) {
                const int64_t mh = std::min<int64_t>(kTokensPerPass, rows - r0);
                auto run = [&](auto count) {
                    screen_tiles_vnni<decltype(count)::value>(block, scale, l1, vocab, dim, b0, b1,
                                                              quantized.data(), q1.data() + r0 * words, r0,
                                                              found[t], best.data(), cut.data());
                };
                switch (mh) {
                    case 1: run(std::integral_constant<int, 1>{}); break;
                    case 2: run(std::integral_constant<int, 2>{}); break;
                    case 3: run(std::integral_constant<int, 3>{}); break;
                    case 4: run(std::integral_constant<int, 4>{}); break;
                    case 5: run(std::integral_constant<int, 5>{}); break;
                    case 6: run(std::integral_constant<int, 6>{}); break;
                    case 7: run(std::integral_constant<int, 7>{}); break;
                    case 8: run(std::integral_constant<int, 8>{}); break;
                    case 9: run(std::integral_constant<int, 9>{}); break;
                    case 10: run(std::integral_constant<int, 10>{}); break;
                    case 11: run(std::integral_constant<int, 11>{}); break;
                    case 12: run(std::integral_constant<int, 12>{}); break;
                    case 13: run(std::integral_constant<int, 13>{}); break;
                    case 14: run(std::integral_constant<int, 14>{}); break;
                    case 15: run(std::integral_constant<int, 15>{}); break;
                    default: run(std::integral_constant<int, 16>{}); break;
                }
            }
        }
        lower[t] = best;
    }
    rescore(hidden, rows, weight, q, scale, dim, found, lower, out, num_candidates, ties, max_ties, num_ties);
}

template <typename T>
void greedy_head_vnni(const T* hidden, int64_t rows, const T* weight, const uint8_t* packed, const float* scale,
                      const float* l1, int64_t vocab, int64_t dim, int64_t* out, int64_t* num_candidates, int64_t* ties, int64_t max_ties, int64_t* num_ties) {
    screen_tiles(hidden, rows, weight, packed, static_cast<const int8_t*>(nullptr), scale, l1, vocab, dim, out,
                 num_candidates, ties, max_ties, num_ties);
}

template <typename T>
bool screen_rows_in_place(const T* hidden, int64_t rows, const int8_t* q, const float* scale, const float* l1,
                          int64_t vocab, int64_t dim, int64_t* out, int64_t* num_candidates, int64_t* ties, int64_t max_ties, int64_t* num_ties) {
    screen_tiles(hidden, rows, static_cast<const T*>(nullptr), static_cast<const uint8_t*>(nullptr), q, scale, l1,
                 vocab, dim, out, num_candidates, ties, max_ties, num_ties);
    return true;
}

// The four sums of a, b, c and d's lanes.
inline __m128i sum4(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    const __m256i v = _mm256_add_epi32(_mm512_castsi512_si256(u), _mm512_extracti64x4_epi64(u, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

// One hidden row (a decode step of one stream) against the int8 head in place, row by row. The
// float screen spends about eight instructions on 32 weights and is bound by them as much as by
// reading the head; here each instruction multiplies 64 weights. The row is quantized as for the
// tiles above (quantize_hidden: q1 for all dimensions, q2 on the few it clamps) and is the
// unsigned operand, u1 = q1 + 128, so with sums_v = sum_d q_vd,
//   sum_d q_vd q1_d = sum_d q_vd u1_d - 128 sums_v,
// and q2 (nonzero in a few 64-dimension chunks) is split into its positive and negative parts.
// The bound is the tiles' with l1_v = sum_d |q_vd| per row, plus `error`, the float screen's term
// (the exact logits' rounding, and the int8 copy's error when the head is a float weight).
constexpr int64_t kPrefetchBytes = 10240;  // how far ahead of a pass its thread asks for the head

bool screen_one_row(const float* h, const int8_t* q, const float* scale, const float* l1, const int32_t* sums,
                    int64_t vocab, int64_t dim, float error, Found& found, Lower& lower) {
    const QuantizedRow hq = quantize_hidden(h, dim, 0.0);
    const int64_t chunks = dim / 64;
    std::vector<uint8_t> u1(dim);
    std::vector<int8_t> q2(dim, 0);
    const int8_t* q1 = reinterpret_cast<const int8_t*>(hq.q1.data());
    for (int64_t d = 0; d < dim; ++d) u1[d] = static_cast<uint8_t>(q1[d] + 128);
    for (const auto& [w, word] : hq.q2) std::memcpy(q2.data() + 4 * w, &word, 4);
    std::vector<int64_t> outlier_chunks;  // chunks where q2 is nonzero, with its two parts
    std::vector<uint8_t> plus, minus;
    for (int64_t c = 0; c < chunks; ++c) {
        const auto chunk = q2.begin() + 64 * c;
        if (std::all_of(chunk, chunk + 64, [](int8_t x) { return x == 0; })) continue;
        outlier_chunks.push_back(c);
        for (int64_t d = 64 * c; d < 64 * (c + 1); ++d) {
            plus.push_back(static_cast<uint8_t>(std::max<int>(q2[d], 0)));
            minus.push_back(static_cast<uint8_t>(std::max<int>(-q2[d], 0)));
        }
    }
    const int64_t num_outliers = static_cast<int64_t>(outlier_chunks.size());
    const float constant = hq.constant + error;
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        const int64_t span = (vocab + n - 1) / n, begin = std::min(vocab, t * span), end = std::min(vocab, begin + span);
        float& best = lower[t][0];
        auto& mine = found[t][0];
        for (int64_t v0 = begin; v0 < end; v0 += 4) {
            const int nv = static_cast<int>(std::min<int64_t>(4, end - v0));
            const int8_t* row[4];
            for (int i = 0; i < 4; ++i) row[i] = q + std::min(v0 + i, end - 1) * dim;  // past the end: ignored
            __m512i acc[4], pos[4], neg[4];
            for (int i = 0; i < 4; ++i) acc[i] = pos[i] = neg[i] = _mm512_setzero_si512();
            for (int64_t b = 0; b < 4 * dim; b += 64)  // the hardware's prefetch alone reads half as fast
                _mm_prefetch(reinterpret_cast<const char*>(q + v0 * dim + kPrefetchBytes + b), _MM_HINT_T0);
            for (int i = 0; i < 4; ++i)  // row by row: the head is read in order
                for (int64_t c = 0; c < chunks; ++c)
                    acc[i] = dpbusd(acc[i], _mm512_loadu_si512(u1.data() + 64 * c),
                                    _mm512_loadu_si512(row[i] + 64 * c));
            for (int64_t o = 0; o < num_outliers; ++o) {
                const __m512i p = _mm512_loadu_si512(plus.data() + 64 * o);
                const __m512i m = _mm512_loadu_si512(minus.data() + 64 * o);
                for (int i = 0; i < 4; ++i) {
                    const __m512i w = _mm512_loadu_si512(row[i] + 64 * outlier_chunks[o]);
                    pos[i] = dpbusd(pos[i], p, w);
                    neg[i] = dpbusd(neg[i], m, w);
                }
            }
            alignas(16) int32_t s1[4], s2[4];
            _mm_store_si128(reinterpret_cast<__m128i*>(s1), sum4(acc[0], acc[1], acc[2], acc[3]));
            _mm_store_si128(reinterpret_cast<__m128i*>(s2),
                            _mm_sub_epi32(sum4(pos[0], pos[1], pos[2], pos[3]), sum4(neg[0], neg[1], neg[2], neg[3])));
            for (int i = 0; i < nv; ++i) {
                const int64_t v = v0 + i;
                const float dot1 = static_cast<float>(s1[i] - 128 * sums[v]), dot2 = static_cast<float>(s2[i]);
                const float a = scale[v] * (hq.s1 * dot1 + hq.s2 * dot2);
                const float e = scale[v] * (hq.half_s1 * l1[v] + constant);
                if (a - e > best) best = a - e;
                if (a + e >= with_margin(best)) mine.push_back({a + e, static_cast<int32_t>(v)});
            }
        }
    }
    return true;
}

constexpr bool kVnni = true;
#else
bool screen_one_row(const float*, const int8_t*, const float*, const float*, const int32_t*, int64_t, int64_t, float,
                    Found&, Lower&) {
    return false;
}
template <typename T>
void greedy_head_vnni(const T*, int64_t, const T*, const uint8_t*, const float*, const float*, int64_t, int64_t,
                      int64_t*, int64_t*, int64_t*, int64_t, int64_t*) {}
template <typename T>
bool screen_rows_in_place(const T*, int64_t, const int8_t*, const float*, const float*, int64_t, int64_t, int64_t*,
                          int64_t*, int64_t*, int64_t, int64_t*) {
    return false;
}
constexpr bool kVnni = false;
#endif

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
