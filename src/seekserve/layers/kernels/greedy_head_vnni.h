// The greedy head's screens with integer dot products (AVX-512 VNNI), and their stand-ins where
// the CPU has none. Part of greedy_head.cpp: included there, after the float screen, the rescore
// and the declarations these define, in the same anonymous namespace (one translation unit).
#pragma once

#if defined(__AMX_TILE__) && defined(__AMX_INT8__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace {

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

#if defined(__AMX_TILE__) && defined(__AMX_INT8__)
// With AMX (Intel Sapphire Rapids and later) the first digits' dot products of a whole group of
// hidden rows with a vocabulary tile are matrix products in tile registers: A = the rows' q1,
// [MH][64 dims] signed bytes; B = the tile's packed weights exactly as stored ([16 words][16 rows][4]
// is AMX's layout of a [64 dims][16 rows] operand), unsigned; TDPBSUD gives per (row, vocabulary
// row) the very integer sum the VNNI loop gives, sum_d q1_d (q_vd + 128). One instruction does what
// MH x 16 VNNI instructions do, so the screen stays memory-bound up to 16 rows a pass.
constexpr bool kAmx = true;

// Linux gives a process the tile registers' state only when asked (arch_prctl ARCH_REQ_XCOMP_PERM
// for XFEATURE_XTILEDATA); false when it refuses (an old kernel), and the VNNI loop runs.
inline bool amx_permitted() {
    static const bool permitted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    return permitted;
}

struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

// tmm0: C [mh][16] int32; tmm1: A [mh][64] bytes; tmm2: B [16][64] bytes.
inline void configure_tiles(int mh) {
    TileConfig config;
    config.rows[0] = config.rows[1] = static_cast<uint8_t>(mh);
    config.rows[2] = 16;
    config.colsb[0] = config.colsb[1] = config.colsb[2] = 64;
    _tile_loadconfig(&config);
}

// acc[r][lane] for the MH rows of `a` (row-major, `dim` bytes a row) and one packed tile.
inline void tile_products(const uint8_t* tile, const int8_t* a, int64_t dim, int32_t (*acc)[16]) {
    _tile_zero(0);
    for (int64_t c = 0; c < dim; c += 64) {
        _tile_loadd(1, a + c, dim);
        _tile_loadd(2, tile + c * 16, 64);
        _tile_dpbsud(0, 1, 2);
    }
    _tile_stored(0, acc, 64);
}
#else
constexpr bool kAmx = false;
inline bool amx_permitted() { return false; }
inline void configure_tiles(int) {}
inline void tile_products(const uint8_t*, const int8_t*, int64_t, int32_t (*)[16]) {}
#endif

// The screen of tiles [tile_begin, tile_end) for hidden rows [r0, r0 + MH); q1: their first
// digits, [dim / 4][MH] words. best[r]: row r's best lower bound so far, cut[r] its with_margin.
// A tile's rows are kept when their upper bound reaches the cut; a tile with none kept cannot
// raise the best lower bound either (lower <= upper < cut <= best), so only the upper bounds are
// computed for it, in one chain per hidden row:
//   upper_v = s_v (s1 dot1 + s2 dot2 + half_s1 l1_v + constant).
// packed holds tiles from tile_begin on; scale and l1 cover the vocabulary (padding rows unread).
// a_rows: the same first digits row-major ([MH][dim] bytes), for the AMX products; null: VNNI.
template <int MH>
void screen_tiles_vnni(const uint8_t* packed, const float* scale, const float* l1, int64_t vocab, int64_t dim,
                       int64_t tile_begin, int64_t tile_end, const QuantizedRow* rows, const int32_t* q1,
                       const int8_t* a_rows, int64_t r0, std::vector<std::vector<Candidate>>& found, float* best,
                       float* cut) {
    const int64_t words = dim / 4;
    const int64_t last = (vocab - 1) / kTile;  // the one tile that may end in padding rows
    const __mmask16 tail = static_cast<__mmask16>(0xFFFFu >> (kTile * (last + 1) - vocab));
    alignas(64) int32_t products[MH][16];
    if (a_rows != nullptr) configure_tiles(MH);
    for (int64_t t = tile_begin; t < tile_end; ++t) {
        const uint8_t* tile = packed + (t - tile_begin) * kTile * dim;
        __m512i acc[MH];
        if (a_rows != nullptr) {
            tile_products(tile, a_rows, dim, products);
            for (int j = 0; j < MH; ++j) acc[j] = _mm512_load_si512(products[j]);
        } else {
            for (auto& a : acc) a = _mm512_setzero_si512();
            for (int64_t w = 0; w < words; ++w) {
                const __m512i weights = _mm512_loadu_si512(tile + w * 64);
                for (int j = 0; j < MH; ++j) acc[j] = dpbusd(acc[j], weights, _mm512_set1_epi32(q1[w * MH + j]));
            }
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
#if defined(__AMX_TILE__) && defined(__AMX_INT8__)
    if (a_rows != nullptr) _tile_release();
#endif
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
    // The same digits row-major, for the AMX products (64-dimension steps).
    const bool amx = kAmx && dim % 64 == 0 && amx_permitted();
    std::vector<int8_t> a_rows(amx ? rows * dim : 0);
    for (int64_t r = 0; amx && r < rows; ++r) std::memcpy(a_rows.data() + r * dim, quantized[r].q1.data(), dim);
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
                                                              quantized.data(), q1.data() + r0 * words,
                                                              amx ? a_rows.data() + r0 * dim : nullptr, r0,
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

}  // namespace
