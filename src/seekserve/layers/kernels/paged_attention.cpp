// Decode attention over the paged KV cache, for CPUs.
//
// One query token per sequence attends to that sequence's keys, read in place from the cache
// slots its block table names: no gathered copy of K or V is made. Work is split over
// (sequence, KV head) pairs; each pair serves the G = num_heads / num_kv_heads query heads that
// share its keys, so every key and value row is read from memory once. With fewer pairs than
// threads (one stream), each pair's keys are split in parts, attended apart and merged by their
// softmax maxima and sums (as flash decoding does).
//
//   q:            [num_seqs, num_heads, head_dim]   rows q_row_stride elements apart
//   k/v cache:    [num_slots, num_kv_heads, head_dim]  slot = block_table[p / block_size] * block_size
//                                                             + p % block_size
//   block_tables: [num_seqs, max_blocks] int64;  seq_lens: [num_seqs] int64 (the new token included)
//   out:          [num_seqs, num_heads, head_dim] contiguous
//
// With window > 0 only the last `window` keys of each sequence are attended.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "simd.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const uint16_t* p, int64_t i) { return seekserve::bf16_to_float(p[i]); }
inline void store(float* p, int64_t i, float f) { p[i] = f; }
inline void store(uint16_t* p, int64_t i, float f) { p[i] = seekserve::float_to_bf16(f); }

// Slot of position p in a sequence's block table.
inline int64_t slot_of(const int64_t* table, int64_t p, int64_t block_size) {
    return table[p / block_size] * block_size + p % block_size;
}

// scores[g * n + i] = q_g . k_i for the G query heads of one KV head (q already scaled, float).
template <typename T>
void qk_scores(const float* qf, int64_t group, const T* k_cache, int64_t slot_stride, int64_t kv_offset,
               const int64_t* table, int64_t first, int64_t n, int64_t block_size, int64_t head_dim,
               float* row, float* scores) {
    for (int64_t i = 0; i < n; ++i) {
        const T* krow = k_cache + slot_of(table, first + i, block_size) * slot_stride + kv_offset;
        for (int64_t d = 0; d < head_dim; ++d) row[d] = load(krow, d);
        for (int64_t g = 0; g < group; ++g) {
            const float* qg = qf + g * head_dim;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int64_t d = 0; d < head_dim; ++d) dot += qg[d] * row[d];
            scores[g * n + i] = dot;
        }
    }
}

// acc[g * head_dim + d] = sum_i p[g * n + i] * v_i[d]. Columns are taken 64 at a time across all
// tokens, so the G partial sums of a column stay in registers while the value rows stream by.
template <typename T>
void pv_accumulate(const float* probs, int64_t group, const T* const* rows, int64_t n,
                   int64_t head_dim, float* acc) {
    constexpr int64_t kCols = 64;
    constexpr int64_t kMaxGroup = 8;
    for (int64_t g0 = 0; g0 < group; g0 += kMaxGroup) {
        const int64_t gn = group - g0 < kMaxGroup ? group - g0 : kMaxGroup;
        for (int64_t c0 = 0; c0 < head_dim; c0 += kCols) {
            const int64_t cn = head_dim - c0 < kCols ? head_dim - c0 : kCols;
            float part[kMaxGroup][kCols] = {};
            for (int64_t i = 0; i < n; ++i) {
                float col[kCols];
                const T* vrow = rows[i] + c0;
#pragma omp simd
                for (int64_t d = 0; d < cn; ++d) col[d] = load(vrow, d);
                for (int64_t g = 0; g < gn; ++g) {
                    const float w = probs[(g0 + g) * n + i];
#pragma omp simd
                    for (int64_t d = 0; d < cn; ++d) part[g][d] += w * col[d];
                }
            }
            for (int64_t g = 0; g < gn; ++g)
                for (int64_t d = 0; d < cn; ++d) acc[(g0 + g) * head_dim + c0 + d] = part[g][d];
        }
    }
}

#if defined(__AVX512F__)
// AVX-512 versions of qk_scores and pv_accumulate for head_dim % 16 == 0: sixteen columns per
// register, bf16 widened to float by a shift, up to 8 query heads accumulated at once.
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// The blocks of a sequence lie anywhere in the cache, which defeats the hardware's prefetching:
// while one key row is scored, the key row kPrefetchRows later is fetched into L1 and its value
// row into L2 for the weighted sum that follows (1.6x on a batch's decode attention).
constexpr int64_t kPrefetchRows = 8;

template <typename T>
inline void prefetch_row(const T* k_cache, const T* v_cache, int64_t at, int64_t head_dim) {
    const char* k = reinterpret_cast<const char*>(k_cache + at);
    const char* v = reinterpret_cast<const char*>(v_cache + at);
    for (int64_t b = 0; b < head_dim * static_cast<int64_t>(sizeof(T)); b += 64) {
        _mm_prefetch(k + b, _MM_HINT_T0);
        _mm_prefetch(v + b, _MM_HINT_T1);
    }
}

template <typename T>
void qk_scores_avx512(const float* qf, int64_t group, const T* k_cache, const T* v_cache,
                      int64_t slot_stride, int64_t kv_offset, const int64_t* table, int64_t first,
                      int64_t n, int64_t block_size, int64_t head_dim, float* scores) {
    for (int64_t g0 = 0; g0 < group; g0 += 8) {
        const int64_t gn = group - g0 < 8 ? group - g0 : 8;
        for (int64_t i = 0; i < n; ++i) {
            const T* krow = k_cache + slot_of(table, first + i, block_size) * slot_stride + kv_offset;
            if (g0 == 0 && i + kPrefetchRows < n) {
                const int64_t at = slot_of(table, first + i + kPrefetchRows, block_size) * slot_stride;
                prefetch_row(k_cache + kv_offset, v_cache + kv_offset, at, head_dim);
            }
            __m512 acc[8];
            for (int64_t g = 0; g < gn; ++g) acc[g] = _mm512_setzero_ps();
            for (int64_t d = 0; d < head_dim; d += 16) {
                const __m512 k = load16(krow + d);
                for (int64_t g = 0; g < gn; ++g)
                    acc[g] = _mm512_fmadd_ps(_mm512_loadu_ps(qf + (g0 + g) * head_dim + d), k, acc[g]);
            }
            for (int64_t g = 0; g < gn; ++g) scores[(g0 + g) * n + i] = _mm512_reduce_add_ps(acc[g]);
        }
    }
}

// G query heads (a compile-time count, so their sums stay in registers) over 16 columns of V.
template <int G, typename T>
void pv_columns(const float* probs, const T* const* rows, int64_t n, int64_t d, int64_t head_dim, float* acc) {
    __m512 part[G];
    for (auto& p : part) p = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; ++i) {
        const __m512 v = load16(rows[i] + d);
        for (int g = 0; g < G; ++g) part[g] = _mm512_fmadd_ps(_mm512_set1_ps(probs[g * n + i]), v, part[g]);
    }
    for (int g = 0; g < G; ++g) _mm512_storeu_ps(acc + g * head_dim + d, part[g]);
}

template <typename T>
void pv_accumulate_avx512(const float* probs, int64_t group, const T* const* rows, int64_t n,
                          int64_t head_dim, float* acc) {
    for (int64_t g0 = 0; g0 < group; g0 += 8) {
        const int64_t gn = group - g0 < 8 ? group - g0 : 8;
        const float* p = probs + g0 * n;
        float* a = acc + g0 * head_dim;
        for (int64_t d = 0; d < head_dim; d += 16) {
            switch (gn) {
                case 1: pv_columns<1>(p, rows, n, d, head_dim, a); break;
                case 2: pv_columns<2>(p, rows, n, d, head_dim, a); break;
                case 3: pv_columns<3>(p, rows, n, d, head_dim, a); break;
                case 4: pv_columns<4>(p, rows, n, d, head_dim, a); break;
                case 5: pv_columns<5>(p, rows, n, d, head_dim, a); break;
                case 6: pv_columns<6>(p, rows, n, d, head_dim, a); break;
                case 7: pv_columns<7>(p, rows, n, d, head_dim, a); break;
                default: pv_columns<8>(p, rows, n, d, head_dim, a); break;
            }
        }
    }
}
#endif

#if defined(__AVX512BF16__) && defined(__AVX512DQ__)
// [sum of a's lanes, b's, c's, d's].
inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    const __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
    const __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    const __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a8, b8), _mm256_hadd_ps(c8, d8));
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// qk_scores for bf16 caches straight from the bf16 query (head_dim % 32 == 0): 32 exact products
// an instruction summed in float, four query heads reduced together, the scale applied to the sum:
// about a third of the widen-and-multiply version's instructions a key row (1.4x on a batch's
// decode attention with its keys in cache).
void qk_scores_bf16(const uint16_t* q, int64_t group, const uint16_t* k_cache,
                    const uint16_t* v_cache, int64_t slot_stride, int64_t kv_offset,
                    const int64_t* table, int64_t first, int64_t n, int64_t block_size,
                    int64_t head_dim, float scale, float* scores) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < group; g0 += 4) {
        const int64_t gn = group - g0 < 4 ? group - g0 : 4;
        const uint16_t* qg[4];
        for (int64_t g = 0; g < 4; ++g) qg[g] = q + (g0 + (g < gn ? g : 0)) * head_dim;
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t* krow = k_cache + slot_of(table, first + i, block_size) * slot_stride + kv_offset;
            if (g0 == 0 && i + kPrefetchRows < n) {
                const int64_t at = slot_of(table, first + i + kPrefetchRows, block_size) * slot_stride;
                prefetch_row(k_cache + kv_offset, v_cache + kv_offset, at, head_dim);
            }
            __m512 acc[4] = {zero, zero, zero, zero};
            for (int64_t d = 0; d < head_dim; d += 32) {
                const __m512bh k = (__m512bh)_mm512_loadu_si512(krow + d);
                for (int64_t g = 0; g < 4; ++g)
                    acc[g] = _mm512_dpbf16_ps(acc[g], (__m512bh)_mm512_loadu_si512(qg[g] + d), k);
            }
            alignas(16) float sums[4];
            _mm_store_ps(sums, _mm_mul_ps(reduce4(acc[0], acc[1], acc[2], acc[3]), _mm_set1_ps(scale)));
            for (int64_t g = 0; g < gn; ++g) scores[(g0 + g) * n + i] = sums[g];
        }
    }
}
#endif

// Scores straight from the query as stored, where the CPU has bf16 dot products and the cache is
// bf16 (qk_scores_bf16); false where the caller scores from the widened, scaled query instead.
inline bool qk_scores_direct(const float*, int64_t, const float*, const float*, int64_t, int64_t,
                             const int64_t*, int64_t, int64_t, int64_t, int64_t, float, float*) {
    return false;
}

inline bool qk_scores_direct(const uint16_t* q, int64_t group, const uint16_t* k_cache,
                             const uint16_t* v_cache, int64_t slot_stride, int64_t kv_offset,
                             const int64_t* table, int64_t first, int64_t n, int64_t block_size,
                             int64_t head_dim, float scale, float* scores) {
#if defined(__AVX512BF16__) && defined(__AVX512DQ__)
    if (head_dim % 32 == 0) {
        qk_scores_bf16(q, group, k_cache, v_cache, slot_stride, kv_offset, table, first, n, block_size,
                       head_dim, scale, scores);
        return true;
    }
#endif
    return false;
}

// exp(s - max) of each row in place, without normalising: (max, sum) per row into top/total.
void softmax_partial(float* scores, int64_t rows, int64_t n, float* top, float* total) {
    for (int64_t g = 0; g < rows; ++g) {
        float* sg = scores + g * n;
        float m = sg[0];
        for (int64_t i = 1; i < n; ++i) m = sg[i] > m ? sg[i] : m;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < n; ++i) {
            sg[i] = std::exp(sg[i] - m);
            sum += sg[i];
        }
        top[g] = m;
        total[g] = sum;
    }
}

void softmax_rows(float* scores, int64_t rows, int64_t n) {
    std::vector<float> top(rows), total(rows);
    softmax_partial(scores, rows, n, top.data(), total.data());
    for (int64_t g = 0; g < rows; ++g) {
        float* sg = scores + g * n;
        const float inv = 1.0f / total[g];
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) sg[i] *= inv;
    }
}

// One KV head's query heads of one sequence against keys [first, first + n): acc [group][head_dim]
// is the probability-weighted sum of V; with top/total null the probabilities are the softmax over
// these keys, else exp(score - top) with (top, total) per query head returned for merging.
template <typename T>
void attend_keys(const T* qs, int64_t group, const T* k_cache, const T* v_cache, int64_t slot_stride,
                 int64_t kv_offset, const int64_t* table, int64_t first, int64_t n, int64_t block_size,
                 int64_t head_dim, float scale, float* acc, float* top, float* total) {
    std::vector<float> qf(group * head_dim), row(head_dim), scores(group * n);
    std::vector<const T*> rows(n);
    for (int64_t i = 0; i < n; ++i) rows[i] = v_cache + slot_of(table, first + i, block_size) * slot_stride + kv_offset;
    if (!qk_scores_direct(qs, group, k_cache, v_cache, slot_stride, kv_offset, table, first, n, block_size,
                          head_dim, scale, scores.data())) {
        for (int64_t d = 0; d < group * head_dim; ++d) qf[d] = load(qs, d) * scale;
#if defined(__AVX512F__)
        if (head_dim % 16 == 0)
            qk_scores_avx512(qf.data(), group, k_cache, v_cache, slot_stride, kv_offset, table, first, n,
                             block_size, head_dim, scores.data());
        else
#endif
            qk_scores(qf.data(), group, k_cache, slot_stride, kv_offset, table, first, n, block_size, head_dim,
                      row.data(), scores.data());
    }
    if (top == nullptr)
        softmax_rows(scores.data(), group, n);
    else
        softmax_partial(scores.data(), group, n, top, total);
#if defined(__AVX512F__)
    if (head_dim % 16 == 0)
        pv_accumulate_avx512(scores.data(), group, rows.data(), n, head_dim, acc);
    else
#endif
        pv_accumulate(scores.data(), group, rows.data(), n, head_dim, acc);
}

// Keys a part must have before a sequence's keys are split between threads.
constexpr int64_t kMinKeysPerPart = 64;

// Per (task, part) item: acc [group][head_dim], and top/total [group] where the keys are split.
struct Parts {
    int64_t parts, group, head_dim;
    std::vector<float> acc, top, total;
    Parts(int64_t tasks, int64_t parts, int64_t group, int64_t head_dim)
        : parts(parts), group(group), head_dim(head_dim), acc(tasks * parts * group * head_dim),
          top(tasks * parts * group), total(tasks * parts * group) {}

    // Query head g of a task: its parts' sums reweighted to the largest maximum, over their total.
    template <typename T>
    void merge(int64_t task, int64_t g, T* out) const {
        const int64_t first = task * parts;
        if (parts == 1) {
            const float* a = acc.data() + (first * group + g) * head_dim;
            for (int64_t d = 0; d < head_dim; ++d) store(out, d, a[d]);
            return;
        }
        float m = -INFINITY, sum = 0.0f;
        for (int64_t p = 0; p < parts; ++p) m = std::max(m, top[(first + p) * group + g]);
        std::vector<float> weight(parts);
        for (int64_t p = 0; p < parts; ++p) {
            const int64_t at = (first + p) * group + g;
            weight[p] = total[at] > 0.0f ? std::exp(top[at] - m) : 0.0f;
            sum += weight[p] * total[at];
        }
        for (int64_t d = 0; d < head_dim; ++d) {
            float v = 0.0f;
            for (int64_t p = 0; p < parts; ++p) v += weight[p] * acc[((first + p) * group + g) * head_dim + d];
            store(out, d, v / sum);
        }
    }
};

template <typename T>
void decode(const T* q, int64_t q_row_stride, const T* k_cache, const T* v_cache,
            const int64_t* block_tables, int64_t max_blocks, const int64_t* seq_lens,
            int64_t num_seqs, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
            int64_t block_size, int64_t window, float scale, T* out) {
    const int64_t group = num_heads / num_kv_heads;
    const int64_t slot_stride = num_kv_heads * head_dim;
    const int64_t tasks = num_seqs * num_kv_heads;
    int64_t max_len = 0;
    for (int64_t s = 0; s < num_seqs; ++s) max_len = std::max(max_len, seq_lens[s]);
    const int64_t threads = omp_get_max_threads();
    const int64_t spare = tasks < threads ? threads / tasks : 1;  // threads a task may have
    const int64_t parts = std::max<int64_t>(1, std::min(spare, max_len / kMinKeysPerPart));
    Parts results(tasks, parts, group, head_dim);
#pragma omp parallel for schedule(dynamic, 1) if (tasks * parts > 1)
    for (int64_t item = 0; item < tasks * parts; ++item) {
        const int64_t task = item / parts, part = item % parts;
        const int64_t s = task / num_kv_heads, kvh = task % num_kv_heads;
        const int64_t len = seq_lens[s];
        const int64_t first = (window > 0 && len > window) ? len - window : 0;
        const int64_t n = len - first, chunk = (n + parts - 1) / parts;
        const int64_t begin = std::min(n, part * chunk), count = std::min(n, begin + chunk) - begin;
        float* top = parts > 1 ? results.top.data() + item * group : nullptr;
        float* total = parts > 1 ? results.total.data() + item * group : nullptr;
        if (count == 0) {  // a short sequence beside a long one: its empty part weighs nothing
            std::fill(top, top + group, -INFINITY);
            std::fill(total, total + group, 0.0f);
            continue;
        }
        const T* qs = q + s * q_row_stride + kvh * group * head_dim;  // this KV head's query heads
        attend_keys(qs, group, k_cache, v_cache, slot_stride, kvh * head_dim, block_tables + s * max_blocks,
                    first + begin, count, block_size, head_dim, scale,
                    results.acc.data() + item * group * head_dim, top, total);
    }
    for (int64_t task = 0; task < tasks; ++task) {
        const int64_t s = task / num_kv_heads, kvh = task % num_kv_heads;
        for (int64_t g = 0; g < group; ++g)
            results.merge(task, g, out + (s * num_heads + kvh * group + g) * head_dim);
    }
}

}  // namespace

extern "C" {

void paged_decode_f32(const float* q, int64_t q_row_stride, const float* k, const float* v,
                      const int64_t* block_tables, int64_t max_blocks, const int64_t* seq_lens,
                      int64_t num_seqs, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                      int64_t block_size, int64_t window, float scale, float* out) {
    decode(q, q_row_stride, k, v, block_tables, max_blocks, seq_lens, num_seqs, num_heads,
           num_kv_heads, head_dim, block_size, window, scale, out);
}

void paged_decode_bf16(const uint16_t* q, int64_t q_row_stride, const uint16_t* k,
                       const uint16_t* v, const int64_t* block_tables, int64_t max_blocks,
                       const int64_t* seq_lens, int64_t num_seqs, int64_t num_heads,
                       int64_t num_kv_heads, int64_t head_dim, int64_t block_size, int64_t window,
                       float scale, uint16_t* out) {
    decode(q, q_row_stride, k, v, block_tables, max_blocks, seq_lens, num_seqs, num_heads,
           num_kv_heads, head_dim, block_size, window, scale, out);
}

}  // extern "C"
