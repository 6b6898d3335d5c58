// Fused per-token operations of the decoder layers, for CPUs: RMS norms (optionally adding the
// residual first), Gemma's norm-add-norm between sublayers, the query/key preparation that
// follows the q/k/v projection (per-head norms, rotary, K and V into their cache slots), and the
// gated MLP's activation.
//
// Each kernel rounds to T exactly where the torch code it replaces does (see simd.h), so the
// bfloat16 results are torch's; sums of squares are in float32 as in torch, in another order.
// Rows are split across OpenMP threads only when there are enough of them to pay for it.
#include <cstdint>

#include "kernels.h"
#include "simd.h"

namespace {

using namespace seekserve;

constexpr int64_t kParallelRows = 16;

// 1 / sqrt(mean(x^2) + eps) of one row, in float32.
template <typename T>
float inv_rms(const T* x, int64_t dim, float eps) {
    vec acc = splat(0.0f);
    for (int64_t d = 0; d < dim; d += 16) {
        const vec v = load(x + d, lanes(dim - d));
        acc = fmadd(v, v, acc);
    }
    return 1.0f / std::sqrt(sum(acc) / static_cast<float>(dim) + eps);
}

// out = norm(x): Llama's weight * round(x * r) or Gemma's round(x * r * (1 + weight)).
template <typename T>
void norm_row(const T* x, const T* w, int64_t dim, float eps, bool unit_offset, T* out) {
    const vec r = splat(inv_rms(x, dim, eps));
    for (int64_t d = 0; d < dim; d += 16) {
        const int n = lanes(dim - d);
        const vec h = mul(load(x + d, n), r);
        const vec y = unit_offset ? mul(h, add(load(w + d, n), splat(1.0f))) : mul(load(w + d, n), round_to(x, h));
        store(out + d, y, n);
    }
}

// residual = round(x + residual), then out = norm(residual).
template <typename T>
void add_norm_row(const T* x, T* residual, const T* w, int64_t dim, float eps, bool unit_offset, T* out) {
    for (int64_t d = 0; d < dim; d += 16) {
        const int n = lanes(dim - d);
        store(residual + d, add(load(x + d, n), load(residual + d, n)), n);
    }
    norm_row(residual, w, dim, eps, unit_offset, out);
}

template <typename T>
void rms_norm(const T* x, int64_t x_stride, T* residual, const T* w, int64_t rows, int64_t dim, float eps,
              int unit_offset, T* out) {
#pragma omp parallel for if (rows >= kParallelRows)
    for (int64_t r = 0; r < rows; ++r) {
        if (residual != nullptr)
            add_norm_row(x + r * x_stride, residual + r * dim, w, dim, eps, unit_offset != 0, out + r * dim);
        else
            norm_row(x + r * x_stride, w, dim, eps, unit_offset != 0, out + r * dim);
    }
}

// Gemma between sublayers: h = round(h + post_norm(y)); out = next_norm(h) (both unit-offset).
template <typename T>
void residual_norm(const T* y, T* h, const T* w_post, const T* w_next, int64_t rows, int64_t dim, float eps,
                   T* out) {
#pragma omp parallel for if (rows >= kParallelRows)
    for (int64_t r = 0; r < rows; ++r) {
        T* hr = h + r * dim;
        norm_row(y + r * dim, w_post, dim, eps, true, out + r * dim);
        for (int64_t d = 0; d < dim; d += 16) {
            const int n = lanes(dim - d);
            store(hr + d, add(load(hr + d, n), load(out + r * dim + d, n)), n);
        }
        if (w_next != nullptr) norm_row(hr, w_next, dim, eps, true, out + r * dim);
    }
}

// Rotate one head in place by (cos, sin) of its position, halves layout, as apply_rotary does:
// round(round(x1*c) - round(x2*s)) and round(round(x2*c) + round(x1*s)).
template <typename T>
void rotate(T* x, const T* cos, const T* sin, int64_t half) {
    for (int64_t d = 0; d < half; d += 16) {
        const int n = lanes(half - d);
        const vec c = load(cos + d, n), s = load(sin + d, n);
        const vec x1 = load(x + d, n), x2 = load(x + half + d, n);
        const vec a = sub(round_to(x, mul(x1, c)), round_to(x, mul(x2, s)));
        const vec b = add(round_to(x, mul(x2, c)), round_to(x, mul(x1, s)));
        store(x + d, a, n);
        store(x + half + d, b, n);
    }
}

template <typename T>
void copy_row(const T* from, T* to, int64_t n) {
    for (int64_t d = 0; d < n; ++d) to[d] = from[d];
}

// From one row of the fused q/k/v projection: q (normed, rotated) into q_out, k (normed, rotated)
// into k_out and its cache slot, v into its cache slot.
template <typename T>
void qk_prepare(const T* qkv, int64_t qkv_stride, int64_t rows, int64_t num_heads, int64_t num_kv_heads,
                int64_t head_dim, const T* q_norm, const T* k_norm, float eps, const T* cos, const T* sin,
                int64_t rot_half, const int64_t* slots, T* q_out, T* k_out, T* k_cache, T* v_cache) {
    const int64_t q_size = num_heads * head_dim, kv_size = num_kv_heads * head_dim;
#pragma omp parallel for if (rows >= kParallelRows)
    for (int64_t r = 0; r < rows; ++r) {
        const T* row = qkv + r * qkv_stride;
        const T* c = cos + r * rot_half;
        const T* s = sin + r * rot_half;
        for (int64_t h = 0; h < num_heads + num_kv_heads; ++h) {
            const bool is_q = h < num_heads;
            const T* src = row + h * head_dim;
            T* dst = is_q ? q_out + r * q_size + h * head_dim : k_out + r * kv_size + (h - num_heads) * head_dim;
            const T* w = is_q ? q_norm : k_norm;
            if (w != nullptr) norm_row(src, w, head_dim, eps, true, dst);
            else copy_row(src, dst, head_dim);
            rotate(dst, c, s, rot_half);
        }
        copy_row(k_out + r * kv_size, k_cache + slots[r] * kv_size, kv_size);
        copy_row(row + q_size + kv_size, v_cache + slots[r] * kv_size, kv_size);
    }
}

// The gated MLP's activation: out = round(round(act(gate)) * up) from the fused projection's row
// [gate | up] (each `width` wide), as torch computes act(gate) * up, with act = silu (gelu = 0),
// x / (1 + e^-x), or tanh-approximated gelu, 0.5 x (1 + tanh(u)) with u = sqrt(2 / pi) (x + 0.044715
// x^3) and tanh(u) = (1 - e^-2u) / (1 + e^-2u): the same formulas in the same order as torch's.
template <typename T>
void gated_act(const T* gate_up, int64_t stride, int64_t rows, int64_t width, int gelu, T* out) {
    const vec one = splat(1.0f), half = splat(0.5f), minus_two = splat(-2.0f);
    const vec beta = splat(0.7978845608028654f), kappa = splat(0.044715f);
#pragma omp parallel for if (rows * width >= 16384)
    for (int64_t r = 0; r < rows; ++r) {
        const T* gate = gate_up + r * stride;
        const T* up = gate + width;
        for (int64_t d = 0; d < width; d += 16) {
            const int n = lanes(width - d);
            const vec x = load(gate + d, n);
            vec act;
            if (gelu) {
                const vec u = mul(beta, add(x, mul(kappa, mul(mul(x, x), x))));
                const vec e = exp(mul(minus_two, u));
                act = mul(mul(half, x), add(one, div(sub(one, e), add(one, e))));
            } else {
                act = div(x, add(one, exp(sub(splat(0.0f), x))));
            }
            store(out + r * width + d, mul(round_to(gate, act), load(up + d, n)), n);
        }
    }
}

}  // namespace

#define SEEKSERVE_LAYER_OPS(suffix, T)                                                                         \
    extern "C" void rms_norm_##suffix(const T* x, int64_t x_stride, T* residual, const T* w, int64_t rows,    \
                                      int64_t dim, float eps, int unit_offset, T* out) {                      \
        rms_norm(x, x_stride, residual, w, rows, dim, eps, unit_offset, out);                                 \
    }                                                                                                          \
    extern "C" void residual_norm_##suffix(const T* y, T* h, const T* w_post, const T* w_next, int64_t rows,  \
                                           int64_t dim, float eps, T* out) {                                   \
        residual_norm(y, h, w_post, w_next, rows, dim, eps, out);                                              \
    }                                                                                                          \
    extern "C" void qk_prepare_##suffix(const T* qkv, int64_t qkv_stride, int64_t rows, int64_t num_heads,    \
                                        int64_t num_kv_heads, int64_t head_dim, const T* q_norm,              \
                                        const T* k_norm, float eps, const T* cos, const T* sin,               \
                                        int64_t rot_half, const int64_t* slots, T* q_out, T* k_out,           \
                                        T* k_cache, T* v_cache) {                                              \
        qk_prepare(qkv, qkv_stride, rows, num_heads, num_kv_heads, head_dim, q_norm, k_norm, eps, cos, sin,   \
                   rot_half, slots, q_out, k_out, k_cache, v_cache);                                          \
    }                                                                                                          \
    extern "C" void gated_act_##suffix(const T* gate_up, int64_t stride, int64_t rows, int64_t width, int gelu, \
                                       T* out) {                                                               \
        gated_act(gate_up, stride, rows, width, gelu, out);                                                    \
    }

SEEKSERVE_LAYER_OPS(f32, float)
SEEKSERVE_LAYER_OPS(bf16, uint16_t)
