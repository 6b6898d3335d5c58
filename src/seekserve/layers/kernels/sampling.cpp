// Sampling candidates for CPUs: per row of logits, the `width` largest scaled logits (logit /
// temperature) in canonical order (scaled descending, ties by token id ascending), their
// probabilities under the whole row's softmax, and the row's log-sum-exp. Rows run in parallel.
//
// Pass 1 reads the row in its own dtype and keeps a buffer of at most `cap` entries: the first
// `width` tokens, then every token whose raw logit is above the raw logit of the buffer's
// width-th best (division by a positive temperature is monotone, so a token at or below it
// cannot enter: its scaled logit is at most that entry's and its id is larger). When the buffer
// fills it is cut back to its `width` best. Pass 2 sums exp(scaled - max) (see exp_sum); the
// candidates' probabilities are exp(scaled - max) / sum in double, rounded to float32.
//
//   logits [num_rows, row_stride-spaced rows of vocab], float32 or bfloat16; temperature [num_rows]
//   float32 > 0; out: ids [num_rows, width] int64, scaled and probs [num_rows, width] float32,
//   lse [num_rows] float32, count [num_rows] int64: width, or 0 where the row has a NaN or its
//   maximum is not finite (the caller takes the torch path for such rows; nothing else written).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <omp.h>

#include "simd.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

using seekserve::vec;

inline float value(const float* p, int64_t i) { return p[i]; }
inline float value(const uint16_t* p, int64_t i) { return seekserve::bf16_to_float(p[i]); }

struct Entry {
    float scaled;  // x / temperature, rounded as torch rounds it
    float raw;     // x
    int64_t id;
};

// NaN ranks last here, only to keep the order strict (rows with NaN are reported, not used).
inline float key(float s) { return std::isnan(s) ? -__builtin_inff() : s; }

// Canonical order: scaled descending, ties by token id ascending.
inline bool before(const Entry& a, const Entry& b) {
    const float ka = key(a.scaled), kb = key(b.scaled);
    return ka > kb || (ka == kb && a.id < b.id);
}

struct Scan {
    float max_raw;
    bool has_nan;
};

// Pass 1: the row's largest raw logit and the buffer of candidates (cut to the `width` best).
template <typename T>
Scan select(const T* row, int64_t vocab, float t, int64_t width, std::vector<Entry>& buf) {
    const int64_t cap = std::max<int64_t>(4 * width, width + 256);
    buf.clear();
    float max_raw = -__builtin_inff();
    bool has_nan = false;
    const int64_t first = std::min(width, vocab);
    for (int64_t i = 0; i < first; ++i) {
        const float x = value(row, i);
        buf.push_back({x / t, x, i});
        max_raw = x > max_raw ? x : max_raw;
        has_nan |= std::isnan(x);
    }
    auto cut = [&]() -> float {  // keeps the `width` best; the width-th's raw logit is the threshold
        std::nth_element(buf.begin(), buf.begin() + (width - 1), buf.end(), before);
        buf.resize(width);
        return buf[width - 1].raw;
    };
    float threshold = -__builtin_inff();
    if (first == width) threshold = std::min_element(buf.begin(), buf.end(), [](const Entry& a, const Entry& b) {
                                        return before(b, a);
                                    })->raw;
    int64_t i = first;
#if defined(__AVX512F__)
    __m512 vmax = _mm512_set1_ps(-__builtin_inff());
    __m512 vthr = _mm512_set1_ps(threshold);
    __mmask16 nan = 0;
    for (; i + 16 <= vocab; i += 16) {
        const __m512 v = seekserve::load(row + i);
        vmax = _mm512_max_ps(vmax, v);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        __mmask16 above = _mm512_cmp_ps_mask(v, vthr, _CMP_GT_OQ);
        while (above) {
            const int lane = __builtin_ctz(above);
            above &= above - 1;
            const float x = value(row, i + lane);
            buf.push_back({x / t, x, i + lane});
            if (static_cast<int64_t>(buf.size()) >= cap) {
                threshold = cut();
                vthr = _mm512_set1_ps(threshold);
                above &= _mm512_cmp_ps_mask(v, vthr, _CMP_GT_OQ);  // lanes no longer above it
            }
        }
    }
    max_raw = std::max(max_raw, _mm512_reduce_max_ps(vmax));
    has_nan |= nan != 0;
#endif
    for (; i < vocab; ++i) {
        const float x = value(row, i);
        max_raw = x > max_raw ? x : max_raw;
        has_nan |= std::isnan(x);
        if (x > threshold) {
            buf.push_back({x / t, x, i});
            if (static_cast<int64_t>(buf.size()) >= cap) threshold = cut();
        }
    }
    return {max_raw, has_nan};
}

// max(v, floor) per lane (a NaN lane gives floor; rows with NaN are reported, not used).
inline vec at_least(vec v, vec floor) {
#if defined(__AVX512F__)
    return _mm512_max_ps(v, floor);
#else
    for (int k = 0; k < 16; ++k) v.x[k] = v.x[k] > floor.x[k] ? v.x[k] : floor.x[k];
    return v;
#endif
}

// Pass 2: sum of exp(x / t - max) over the row. Each token's scaled logit is computed as torch
// computes it (a float32 division); scaled - max is split into its float32 rounding d and the
// error e of that rounding (TwoSum), and exp(d) * (1 + e) is the term, so a term is within the
// exp's 2 ulp of exp(scaled - max) however far below the maximum it lies. Sixteen float32 lanes
// add four terms each per chunk of 64 tokens, the chunks are added in double: the sum is within
// about 5e-7 (relative) of the exact one, in the worst case.
template <typename T>
double exp_sum(const T* row, int64_t vocab, float t, float max_scaled) {
    using namespace seekserve;
    constexpr int64_t chunk = 64;
    // Below max - 104 a term is under e^-104 of the largest: clamped there (exp(-inf) needs no TwoSum).
    const vec vt = splat(t), neg_max = splat(-max_scaled), floor = splat(max_scaled - 104.0f);
    double total = 0.0;
    int64_t i = 0;
    alignas(64) float lanes[16];
    for (; i + chunk <= vocab; i += chunk) {
        vec acc = splat(0.0f);
        for (int64_t j = i; j < i + chunk; j += 16) {
            const vec s = at_least(div(load(row + j), vt), floor);
            const vec d = add(s, neg_max);
            const vec b = sub(d, s);
            const vec e = add(sub(s, sub(d, b)), sub(neg_max, b));  // s - max = d + e exactly
            const vec x = exp(d);
            acc = add(acc, fmadd(x, e, x));
        }
        store(lanes, acc);
        double part = 0.0;
        for (float f : lanes) part += f;
        total += part;
    }
    for (; i < vocab; ++i) total += std::exp(static_cast<double>(value(row, i) / t) - max_scaled);
    return total;
}

template <typename T>
void candidates(const T* logits, int64_t row_stride, int64_t num_rows, int64_t vocab, const float* temperature,
                int64_t width, int64_t* ids, float* scaled, float* probs, float* lse, int64_t* count) {
#pragma omp parallel
    {
        std::vector<Entry> buf;
#pragma omp for schedule(dynamic, 1)
        for (int64_t r = 0; r < num_rows; ++r) {
            const T* row = logits + r * row_stride;
            const float t = temperature[r];
            const Scan scan = select(row, vocab, t, width, buf);
            const float max_scaled = scan.max_raw / t;
            if (scan.has_nan || !std::isfinite(max_scaled) || static_cast<int64_t>(buf.size()) < width) {
                count[r] = 0;
                lse[r] = __builtin_nanf("");
                continue;
            }
            std::nth_element(buf.begin(), buf.begin() + (width - 1), buf.end(), before);
            std::sort(buf.begin(), buf.begin() + width, before);
            const double sum = exp_sum(row, vocab, t, max_scaled);
            for (int64_t k = 0; k < width; ++k) {
                const Entry& e = buf[k];
                ids[r * width + k] = e.id;
                scaled[r * width + k] = e.scaled;
                probs[r * width + k] =
                    static_cast<float>(std::exp(static_cast<double>(e.scaled) - max_scaled) / sum);
            }
            lse[r] = static_cast<float>(static_cast<double>(max_scaled) + std::log(sum));
            count[r] = width;
        }
    }
}

}  // namespace

extern "C" {

void sampling_candidates_f32(const float* logits, int64_t row_stride, int64_t num_rows, int64_t vocab,
                             const float* temperature, int64_t width, int64_t* ids, float* scaled, float* probs,
                             float* lse, int64_t* count) {
    candidates(logits, row_stride, num_rows, vocab, temperature, width, ids, scaled, probs, lse, count);
}

void sampling_candidates_bf16(const uint16_t* logits, int64_t row_stride, int64_t num_rows, int64_t vocab,
                              const float* temperature, int64_t width, int64_t* ids, float* scaled, float* probs,
                              float* lse, int64_t* count) {
    candidates(logits, row_stride, num_rows, vocab, temperature, width, ids, scaled, probs, lse, count);
}

}  // extern "C"
