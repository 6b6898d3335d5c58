// Row-wise argmax for logits, for CPUs: one pass over the rows, parallel over rows and, for few
// rows, over column ranges. The first maximal index wins, as in torch.argmax; NaN is ignored.
//
//   logits: [num_rows, vocab] contiguous, float32 or bfloat16;  out: [num_rows] int64
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

#include "simd.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

inline float value(const float* p, int64_t i) { return p[i]; }
inline float value(const uint16_t* p, int64_t i) { return seekserve::bf16_to_float(p[i]); }

struct Best {
    float value;
    int64_t index;
};

template <typename T>
Best scan_scalar(const T* row, int64_t begin, int64_t end, Best best) {
    for (int64_t i = begin; i < end; ++i) {
        const float v = value(row, i);
        if (v > best.value) best = {v, i};
    }
    return best;
}

#if defined(__AVX512F__)
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Sixteen running maxima (one per lane) with the index where each was first seen.
template <typename T>
Best scan(const T* row, int64_t begin, int64_t end) {
    const int64_t stop = begin + (end - begin) / 16 * 16;
    if (stop == begin) return scan_scalar(row, begin, end, Best{-__builtin_inff(), begin});
    __m512 best = _mm512_set1_ps(-__builtin_inff());
    __m512i best_at = _mm512_set1_epi32(0);
    __m512i at = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(begin)),
                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i step = _mm512_set1_epi32(16);
    for (int64_t i = begin; i < stop; i += 16) {
        const __m512 v = load16(row + i);
        const __mmask16 greater = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
        best = _mm512_mask_mov_ps(best, greater, v);
        best_at = _mm512_mask_mov_epi32(best_at, greater, at);
        at = _mm512_add_epi32(at, step);
    }
    alignas(64) float values[16];
    alignas(64) int32_t where[16];
    _mm512_store_ps(values, best);
    _mm512_store_si512(reinterpret_cast<__m512i*>(where), best_at);
    Best result{-__builtin_inff(), begin};
    for (int lane = 0; lane < 16; ++lane)
        if (values[lane] > result.value || (values[lane] == result.value && where[lane] < result.index))
            result = {values[lane], where[lane]};
    return scan_scalar(row, stop, end, result);
}
#else
template <typename T>
Best scan(const T* row, int64_t begin, int64_t end) {
    return scan_scalar(row, begin, end, Best{-__builtin_inff(), begin});
}
#endif

template <typename T>
void argmax(const T* logits, int64_t num_rows, int64_t vocab, int64_t* out) {
    const int64_t threads = omp_get_max_threads();
    const int64_t parts = num_rows >= threads ? 1 : threads;  // split rows when rows are few
    const int64_t span = (vocab + parts - 1) / parts;
    std::vector<Best> partial(num_rows * parts);
#pragma omp parallel for schedule(static)
    for (int64_t task = 0; task < num_rows * parts; ++task) {
        const int64_t r = task / parts, p = task % parts;
        const int64_t begin = p * span, end = begin + span < vocab ? begin + span : vocab;
        partial[task] = begin < end ? scan(logits + r * vocab, begin, end) : Best{-__builtin_inff(), vocab};
    }
    for (int64_t r = 0; r < num_rows; ++r) {
        Best best = partial[r * parts];
        for (int64_t p = 1; p < parts; ++p)
            if (partial[r * parts + p].value > best.value) best = partial[r * parts + p];
        out[r] = best.index < vocab ? best.index : 0;
    }
}

}  // namespace

extern "C" {

// 1 where this library has the AVX-512 code paths (built with -march=native on a CPU that has
// AVX-512F), 0 where it runs the portable ones; the loader reports which set is in use.
int kernels_have_avx512() {
#if defined(__AVX512F__)
    return 1;
#else
    return 0;
#endif
}

void argmax_f32(const float* logits, int64_t num_rows, int64_t vocab, int64_t* out) {
    argmax(logits, num_rows, vocab, out);
}

void argmax_bf16(const uint16_t* logits, int64_t num_rows, int64_t vocab, int64_t* out) {
    argmax(logits, num_rows, vocab, out);
}

}  // extern "C"
