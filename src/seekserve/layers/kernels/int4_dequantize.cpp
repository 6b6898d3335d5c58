// Rows of an int4 matrix in torch's CPU packing, dequantized to float32 or bfloat16 in one pass.
//
// W[n, k] = (q[n, k] - 8) * scale[g, n] + zero[g, n], q in [0, 15], g = k / G (quant/int4.py), with
// the arithmetic of Int4Weight.dequantize_rows_reference, so the values are bit for bit torch's:
// float32 rounds the product and then the sum; bfloat16 rounds the product to bfloat16 (exact in
// float32: 8-bit mantissa times a 4-bit integer) and then the float32 sum to bfloat16. A (row, group)
// has 16 possible values: they are computed once into a table and each nibble looks its value up.
//
// torch._convert_weight_to_int4pack_for_cpu packs blocks of B rows, each [K][B / 2] bytes
// (quant/int4_layout.py probes which variant this torch uses and passes it in):
//
//   full block, split:        byte j of column k = row j (low nibble) | row j + B/2 (high nibble)
//   partial block, or not:    byte j of column k = row 2j (low nibble) | row 2j + 1 (high nibble)
//
// With AVX-512 VBMI, full split 64-row blocks go 32 columns at a time: the [32 columns][32 bytes]
// tile is transposed into [32 bytes][32 columns] by byte permutations, so that each byte row j holds
// 32 consecutive values of rows j and j + 32, and a table lookup (vpermw / vpermps) per 16 or 32
// values gives the output row. Everything else (partial blocks, other layouts, the portable build)
// runs the scalar loop below, with the same tables.
#include <cstdint>
#include <cstring>

#include "simd.h"

namespace {

using namespace seekserve;

inline float to_float(float v) { return v; }
inline float to_float(uint16_t v) { return bf16_to_float(v); }

// A value the compiler must materialise: keeps (q - 8) * scale + zero from becoming one fused
// multiply-add, which would round once where torch rounds twice.
inline float opaque(float v) {
    __asm__ volatile("" : "+m"(v));
    return v;
}

// The 16 values of one (row, group): table[q] = dequantized q.
inline void value_table(float scale, float zero, float* table) {
    for (int q = 0; q < 16; ++q) table[q] = opaque(static_cast<float>(q - 8) * scale) + zero;
}
inline void value_table(uint16_t scale, uint16_t zero, uint16_t* table) {
    const float s = bf16_to_float(scale), z = bf16_to_float(zero);
    for (int q = 0; q < 16; ++q) {
        const float product = bf16_to_float(float_to_bf16(static_cast<float>(q - 8) * s));
        table[q] = float_to_bf16(product + z);
    }
}

// Rows [0, rows) of one block of `rows` rows at `block` (K columns), written to out (row stride
// out_stride). sz: scale and zero of the block's first row for group 0, groups sz_stride rows apart.
template <typename T>
void block_scalar(const uint8_t* block, int64_t rows, bool split, int64_t K, const T* sz, int64_t sz_stride,
                  int64_t group, T* out, int64_t out_stride) {
    const int64_t half = rows / 2;
    T table[16];
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t j = split ? r % half : r / 2;
        const int shift = (split ? r >= half : r % 2) ? 4 : 0;
        T* row = out + r * out_stride;
        for (int64_t g = 0; g < K / group; ++g) {
            const T* pair = sz + (g * sz_stride + r) * 2;
            value_table(pair[0], pair[1], table);
            for (int64_t k = g * group; k < (g + 1) * group; ++k) row[k] = table[(block[k * half + j] >> shift) & 15];
        }
    }
}

#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
// Byte permutations of the 32 x 32 transpose. A register holds 64 bytes, i.e. 2 of the 32 rows of
// the tile; address bits [r4 r3 r2 r1 | r0 c4 c3 c2 c1 c0] (register | byte). Stage i (1..4) swaps
// register bit r_i with byte bit c_i between two registers (two vpermt2b); the last step swaps byte
// bits r0 and c0 inside each register, leaving [c4 c3 c2 c1 | c0 r4 r3 r2 r1 r0].
struct Transpose {
    alignas(64) uint8_t low[4][64], high[4][64], last[64];
    Transpose() {
        for (int i = 1; i <= 4; ++i)
            for (int p = 0; p < 64; ++p) {
                const int from = (p >> i & 1) ? 64 : 0;  // bit i of p now says which register
                low[i - 1][p] = static_cast<uint8_t>(from | (p & ~(1 << i)));
                high[i - 1][p] = static_cast<uint8_t>(from | p | (1 << i));
            }
        for (int p = 0; p < 64; ++p) last[p] = static_cast<uint8_t>((p & 0x1E) | (p >> 5 & 1) | (p & 1) << 5);
    }
};

// t[J] = bytes j = 2J (low 32) and 2J + 1 (high 32) of columns k0 .. k0 + 31 of a [K][32] block.
inline void transpose_tile(const uint8_t* cols, __m512i t[16]) {
    static const Transpose perm;
    for (int R = 0; R < 16; ++R) t[R] = _mm512_loadu_si512(cols + 64 * R);
    for (int i = 1; i <= 4; ++i) {
        const __m512i low = _mm512_load_si512(perm.low[i - 1]), high = _mm512_load_si512(perm.high[i - 1]);
        for (int R = 0; R < 16; ++R) {
            if (R >> (i - 1) & 1) continue;
            const int S = R | 1 << (i - 1);
            const __m512i a = t[R], b = t[S];
            t[R] = _mm512_permutex2var_epi8(a, low, b);
            t[S] = _mm512_permutex2var_epi8(a, high, b);
        }
    }
    const __m512i last = _mm512_load_si512(perm.last);
    for (int R = 0; R < 16; ++R) t[R] = _mm512_permutexvar_epi8(last, t[R]);
}

inline __m512 iota_minus_8() {
    return _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
}

constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// The value tables of 64 rows for one group, one register each (the lookup reads lanes 0-15).
// The *_round intrinsics are never fused into a multiply-add.
inline void tables64(const float* sz, __m512i* table) {
    for (int r = 0; r < 64; ++r) {
        const __m512 product = _mm512_mul_round_ps(iota_minus_8(), _mm512_set1_ps(sz[2 * r]), kNearest);
        table[r] = _mm512_castps_si512(_mm512_add_round_ps(product, _mm512_set1_ps(sz[2 * r + 1]), kNearest));
    }
}
inline void tables64(const uint16_t* sz, __m512i* table) {
    for (int r = 0; r < 64; ++r) {
        __m512 product = _mm512_mul_round_ps(iota_minus_8(), _mm512_set1_ps(bf16_to_float(sz[2 * r])), kNearest);
        product = round_to(sz, product);
        const __m512 sum = _mm512_add_round_ps(product, _mm512_set1_ps(bf16_to_float(sz[2 * r + 1])), kNearest);
        table[r] = _mm512_castsi256_si512(narrow(sum));
    }
}

// 32 values of one row: nibbles (bytes of `q`, 32 used) looked up in the row's table.
inline void lookup32(__m256i q, __m512i table, uint16_t* out) {
    _mm512_storeu_si512(out, _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(q), table));
}
inline void lookup32(__m256i q, __m512i table, float* out) {
    const __m512 values = _mm512_castsi512_ps(table);
    _mm512_storeu_ps(out, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q)), values));
    _mm512_storeu_ps(out + 16, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1)), values));
}

// A full split 64-row block, 32 columns at a time.
template <typename T>
void block64(const uint8_t* block, int64_t K, const T* sz, int64_t sz_stride, int64_t group, T* out,
             int64_t out_stride) {
    alignas(64) __m512i table[64];
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    for (int64_t g = 0; g < K / group; ++g) {
        tables64(sz + g * sz_stride * 2, table);
        for (int64_t k0 = g * group; k0 < (g + 1) * group; k0 += 32) {
            __m512i t[16];
            transpose_tile(block + k0 * 32, t);
            for (int J = 0; J < 16; ++J) {
                const __m512i low = _mm512_and_si512(t[J], nibble);
                const __m512i high = _mm512_and_si512(_mm512_srli_epi16(t[J], 4), nibble);
                for (int h = 0; h < 2; ++h) {
                    const int j = 2 * J + h;
                    const __m256i lo = h ? _mm512_extracti64x4_epi64(low, 1) : _mm512_castsi512_si256(low);
                    const __m256i hi = h ? _mm512_extracti64x4_epi64(high, 1) : _mm512_castsi512_si256(high);
                    lookup32(lo, table[j], out + j * out_stride + k0);
                    lookup32(hi, table[j + 32], out + (j + 32) * out_stride + k0);
                }
            }
        }
    }
}
#endif

template <typename T>
void dequantize(const uint8_t* packed, int64_t rows, int64_t K, const T* sz, int64_t sz_stride, int64_t group,
                int64_t block_rows, int split, T* out, int64_t out_stride) {
    const int64_t num_full = rows / block_rows;
#pragma omp parallel for schedule(static) if (num_full > 1)
    for (int64_t b = 0; b < num_full; ++b) {
        const uint8_t* block = packed + b * block_rows * K / 2;
        const T* block_sz = sz + b * block_rows * 2;
        T* block_out = out + b * block_rows * out_stride;
#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
        if (block_rows == 64 && split && K % 32 == 0) {
            block64(block, K, block_sz, sz_stride, group, block_out, out_stride);
            continue;
        }
#endif
        block_scalar(block, block_rows, split != 0, K, block_sz, sz_stride, group, block_out, out_stride);
    }
    const int64_t rest = rows - num_full * block_rows;
    if (rest > 0) {
        const int64_t b = num_full * block_rows;
        block_scalar(packed + b * K / 2, rest, false, K, sz + b * 2, sz_stride, group, out + b * out_stride,
                     out_stride);
    }
}

}  // namespace

extern "C" {

// out[rows, K] (row stride out_stride) = rows [0, rows) of an int4 matrix in torch's CPU packing:
// packed [rows, K / 2] in blocks of block_rows (split as the layout says; a last, partial block of
// an even number of rows pairs rows 2j and 2j + 1), sz the scale and zero of row 0 for group 0,
// [K / group][sz_stride][2]. K a multiple of group (32, 64 or 128).
void int4_dequantize_f32(const uint8_t* packed, int64_t rows, int64_t K, const float* sz, int64_t sz_stride,
                         int64_t group, int64_t block_rows, int split, float* out, int64_t out_stride) {
    dequantize(packed, rows, K, sz, sz_stride, group, block_rows, split, out, out_stride);
}

void int4_dequantize_bf16(const uint8_t* packed, int64_t rows, int64_t K, const uint16_t* sz, int64_t sz_stride,
                          int64_t group, int64_t block_rows, int split, uint16_t* out, int64_t out_stride) {
    dequantize(packed, rows, K, sz, sz_stride, group, block_rows, split, out, out_stride);
}

}  // extern "C"
