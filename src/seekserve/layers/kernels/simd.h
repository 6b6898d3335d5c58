// Sixteen-lane float vectors over float32 or bfloat16 memory, shared by the kernels.
//
// bfloat16 values are widened to float by a shift and narrowed with round-to-nearest-even, as
// torch does, so a kernel that rounds where a torch op would gives torch's bfloat16 results.
// Without AVX-512 a plain-C++ emulation with the same interface is compiled instead.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace seekserve {

inline float bf16_to_float(uint16_t h) {
    uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

inline uint16_t float_to_bf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // NaN
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>(bits >> 16);
}

// Lanes of a sixteen-lane vector that `left` remaining elements fill.
inline int lanes(int64_t left) { return left < 16 ? static_cast<int>(left) : 16; }

#if defined(__AVX512VNNI__)
// acc + sum of four u8 x s8 products per 32-bit lane (vpdpbusd). Written as inline assembly:
// GCC 12 copies the accumulator through another register around every _mm512_dpbusd_epi32 in an
// unrolled loop (and spills some), which halves the instruction's throughput in the kernels'
// inner loops; the tied operand keeps each sum in one register.
inline __m512i dpbusd(__m512i acc, __m512i u8, __m512i s8) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
    return acc;
}
#endif

#if defined(__AVX512F__)
using vec = __m512;

inline vec load(const float* p, int n = 16) {
    return n == 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
}
inline vec load(const uint16_t* p, int n = 16) {
    const __m256i h = n == 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                              : _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << n) - 1), p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline __m256i narrow(vec v) {  // round to nearest even (NaN handling aside)
    __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    bits = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(bits, 16));
}
inline void store(float* p, vec v, int n = 16) {
    if (n == 16) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
}
inline void store(uint16_t* p, vec v, int n = 16) {
    const __m256i h = narrow(v);
    if (n == 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
    else _mm256_mask_storeu_epi16(p, static_cast<__mmask16>((1u << n) - 1), h);
}
// The value a torch op in T would have stored: identity for float, bfloat16 rounding otherwise.
inline vec round_to(const float*, vec v) { return v; }
inline vec round_to(const uint16_t*, vec v) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(narrow(v)), 16));
}
inline vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
inline vec sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
inline vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
inline vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
inline vec splat(float f) { return _mm512_set1_ps(f); }
inline float sum(vec v) { return _mm512_reduce_add_ps(v); }
inline vec div(vec a, vec b) { return _mm512_div_ps(a, b); }
inline vec vabs(vec a) { return _mm512_abs_ps(a); }
// e^x to about 2 ulp: x = n ln2 + r, |r| <= ln2 / 2, e^r by its degree-6 Taylor polynomial.
inline vec exp(vec x) {
    x = _mm512_max_ps(_mm512_min_ps(x, splat(88.7f)), splat(-104.0f));
    const vec n = _mm512_roundscale_ps(_mm512_mul_ps(x, splat(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
    vec r = _mm512_fnmadd_ps(n, splat(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, splat(1.428606765330187045e-06f), r);
    vec p = splat(1.0f / 720.0f);
    for (float c : {1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f}) p = _mm512_fmadd_ps(p, r, splat(c));
    return _mm512_scalef_ps(p, n);
}
#else
struct vec {
    float x[16];
};

inline vec load(const float* p, int n = 16) {
    vec v{};
    for (int i = 0; i < n; ++i) v.x[i] = p[i];
    return v;
}
inline vec load(const uint16_t* p, int n = 16) {
    vec v{};
    for (int i = 0; i < n; ++i) v.x[i] = bf16_to_float(p[i]);
    return v;
}
inline void store(float* p, vec v, int n = 16) {
    for (int i = 0; i < n; ++i) p[i] = v.x[i];
}
inline void store(uint16_t* p, vec v, int n = 16) {
    for (int i = 0; i < n; ++i) p[i] = float_to_bf16(v.x[i]);
}
inline vec round_to(const float*, vec v) { return v; }
inline vec round_to(const uint16_t*, vec v) {
    for (float& f : v.x) f = bf16_to_float(float_to_bf16(f));
    return v;
}
#define SEEKSERVE_LANEWISE(name, expr)                      \
    inline vec name(vec a, vec b) {                          \
        vec r;                                               \
        for (int i = 0; i < 16; ++i) r.x[i] = (expr);        \
        return r;                                            \
    }
SEEKSERVE_LANEWISE(add, a.x[i] + b.x[i])
SEEKSERVE_LANEWISE(sub, a.x[i] - b.x[i])
SEEKSERVE_LANEWISE(mul, a.x[i] * b.x[i])
#undef SEEKSERVE_LANEWISE
inline vec fmadd(vec a, vec b, vec c) {
    vec r;
    for (int i = 0; i < 16; ++i) r.x[i] = a.x[i] * b.x[i] + c.x[i];
    return r;
}
inline vec splat(float f) {
    vec r;
    for (float& x : r.x) x = f;
    return r;
}
inline float sum(vec v) {
    float s = 0.0f;
    for (float x : v.x) s += x;
    return s;
}
inline vec div(vec a, vec b) {
    vec r;
    for (int i = 0; i < 16; ++i) r.x[i] = a.x[i] / b.x[i];
    return r;
}
inline vec vabs(vec a) {
    for (float& f : a.x) f = std::fabs(f);
    return a;
}
// Clamped as the AVX-512 version is: e^x stays finite and above 0, so tanh's (1 - e) / (1 + e)
// gives -1, not inf / inf = NaN, for large arguments. NaN passes through.
inline vec exp(vec v) {
    for (float& f : v.x) f = std::exp(f > 88.7f ? 88.7f : f < -104.0f ? -104.0f : f);
    return v;
}
#endif

}  // namespace seekserve
