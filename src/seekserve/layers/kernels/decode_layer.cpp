// One decoder layer of a decode step with int4 weights, in one call (engine/fused_decode.py).
//
// A decode step of a small model runs ~10 operations a layer on a few rows each; called one by one
// from Python, each costs a few microseconds of interpreter, argument conversion and allocation,
// about as long as the operation itself. This runs the same kernels in the same order on the same
// values (so the result is the unfused layer's, bit for bit), from buffers kept between calls:
//   Gemma 3: x = norm(h); a = attention(x); h += post_norm(a); x = pre_norm(h); h += post_norm(mlp(x))
//   Llama:   residual += h; x = norm(residual); a = attention(x); residual += a; x = norm(residual);
//            h = mlp(x)
// where attention is qkv (+ bias), per-head norms and rotary with K/V into the cache, paged decode
// attention and o; mlp is gate_up, act(gate) * up, down. Each kernel splits its own work across
// the OpenMP threads. `decode_layers` runs all layers of a step in one call, looking up each
// position's rotary rows itself, so the step's Python work does not grow with the layer count.
#include <cstdint>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace {

using namespace seekserve;

// An int4 matrix in torch's CPU packing of 64-row blocks (int4_matmul.cpp): out x in, no padding.
struct Int4Matrix {
    const uint8_t* packed;
    const void* scales_zeros;
    int64_t out_features, in_features, group;
};

// A layer's weights and shape; mirrored by engine/fused_decode.py's ctypes structure.
struct DecodeLayer {
    int64_t hidden, num_heads, num_kv_heads, head_dim, intermediate;
    float eps, scale;
    int64_t window;  // keys attended to, the new one included; 0 for all
    int32_t gemma;   // Gemma 3's sandwich norms scaling by (1 + w), else Llama's pre-norms
    int32_t gelu;    // tanh-approximated gelu, else silu
    const void* input_norm;
    const void* post_attention_norm;
    const void* pre_feedforward_norm;   // Gemma only
    const void* post_feedforward_norm;  // Gemma only
    const void* q_norm;                 // per-head norms (Gemma), or null
    const void* k_norm;
    const void* qkv_bias;  // Qwen2, or null
    Int4Matrix qkv, o, gate_up, down;
    void* k_cache;
    void* v_cache;
};

// This step's rows: cache slots, and the decodes' block tables.
struct DecodeStep {
    int64_t rows;
    const int64_t* slots;
    const int64_t* block_tables;
    int64_t max_blocks;
    const int64_t* seq_lens;
    int64_t block_size;
};

// The kernels of one element type.
template <typename T>
struct Ops;

#define SEEKSERVE_OPS(T, suffix)                                                              \
    template <>                                                                               \
    struct Ops<T> {                                                                           \
        static constexpr auto rms_norm = rms_norm_##suffix;                                   \
        static constexpr auto residual_norm = residual_norm_##suffix;                         \
        static constexpr auto qk_prepare = qk_prepare_##suffix;                               \
        static constexpr auto gated_act = gated_act_##suffix;                                 \
        static constexpr auto paged_decode = paged_decode_##suffix;                           \
        static constexpr auto int4_matmul = int4_matmul_##suffix;                             \
    };
SEEKSERVE_OPS(float, f32)
SEEKSERVE_OPS(uint16_t, bf16)
#undef SEEKSERVE_OPS

template <typename T>
void matmul(const Int4Matrix& m, const T* x, int64_t rows, T* out) {
    Ops<T>::int4_matmul(x, m.in_features, rows, m.in_features, m.packed, static_cast<const T*>(m.scales_zeros),
                        m.out_features, m.group, out, m.out_features);
}

// Scratch rows kept between calls, per calling thread.
template <typename T>
struct Buffers {
    std::vector<T> x, qkv, q, k, attn, o, gate_up, act, down, spare;
};

template <typename T>
T* take(std::vector<T>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(n);
    return v.data();
}

// Gemma: h [rows, hidden] is updated in place (residual and out unused). Llama: out = the MLP's
// output, residual += h first (residual null: h is the residual, for the first layer). cos, sin:
// the rows' rotary tables, [rows, rot_half].
template <typename T>
void decode_layer(const DecodeLayer& L, const DecodeStep& S, const T* cos, const T* sin, int64_t rot_half, T* h,
                  T* residual, T* out) {
    using O = Ops<T>;
    static thread_local Buffers<T> buffers;
    Buffers<T>& b = buffers;
    const int64_t rows = S.rows, dim = L.hidden;
    const int64_t q_size = L.num_heads * L.head_dim, qkv_size = L.qkv.out_features;
    const auto w = [](const void* p) { return static_cast<const T*>(p); };
    T* x = take(b.x, rows * dim);
    if (L.gemma) {
        O::rms_norm(h, dim, nullptr, w(L.input_norm), rows, dim, L.eps, 1, x);
    } else if (residual == nullptr) {
        residual = h;  // the first layer: its input is the residual
        O::rms_norm(h, dim, nullptr, w(L.input_norm), rows, dim, L.eps, 0, x);
    } else {
        O::rms_norm(h, dim, residual, w(L.input_norm), rows, dim, L.eps, 0, x);
    }
    // Attention.
    T* qkv = take(b.qkv, rows * qkv_size);
    matmul(L.qkv, x, rows, qkv);
    if (L.qkv_bias != nullptr) {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t d = 0; d < qkv_size; d += 16) {
                const int n = qkv_size - d < 16 ? static_cast<int>(qkv_size - d) : 16;
                store(qkv + r * qkv_size + d, add(load(qkv + r * qkv_size + d, n), load(w(L.qkv_bias) + d, n)), n);
            }
    }
    T* q = take(b.q, rows * q_size);
    T* k = take(b.k, rows * L.num_kv_heads * L.head_dim);
    O::qk_prepare(qkv, qkv_size, rows, L.num_heads, L.num_kv_heads, L.head_dim, w(L.q_norm), w(L.k_norm), L.eps,
                  cos, sin, rot_half, S.slots, q, k, static_cast<T*>(L.k_cache),
                  static_cast<T*>(L.v_cache));
    T* attn = take(b.attn, rows * q_size);
    O::paged_decode(q, q_size, static_cast<const T*>(L.k_cache), static_cast<const T*>(L.v_cache), S.block_tables,
                    S.max_blocks, S.seq_lens, rows, L.num_heads, L.num_kv_heads, L.head_dim, S.block_size, L.window,
                    L.scale, attn);
    T* o = take(b.o, rows * dim);
    matmul(L.o, attn, rows, o);
    // MLP.
    if (L.gemma)
        O::residual_norm(o, h, w(L.post_attention_norm), w(L.pre_feedforward_norm), rows, dim, L.eps, x);
    else
        O::rms_norm(o, dim, residual, w(L.post_attention_norm), rows, dim, L.eps, 0, x);
    T* gate_up = take(b.gate_up, rows * 2 * L.intermediate);
    matmul(L.gate_up, x, rows, gate_up);
    T* act = take(b.act, rows * L.intermediate);
    O::gated_act(gate_up, 2 * L.intermediate, rows, L.intermediate, L.gelu, act);
    if (L.gemma) {
        T* down = take(b.down, rows * dim);
        matmul(L.down, act, rows, down);
        O::residual_norm(down, h, w(L.post_feedforward_norm), nullptr, rows, dim, L.eps, take(b.spare, rows * dim));
    } else {
        matmul(L.down, act, rows, out);
    }
}

// A layer type's rotary tables as the model keeps them: float32 [positions, rot_half].
struct DecodeRope {
    const float* cos;
    const float* sin;
    int64_t positions, rot_half;
};

// Every layer of a step: layer i rotates with ropes[rope_of[i]] at `positions` (rounded to T as
// the model's table lookup rounds them). Gemma: h updated in place, returns 0. Llama: h becomes
// the residual and the last layer's output is left in a (returns 1) or b (returns 2). Returns -1,
// having run nothing, when a position is past its table.
template <typename T>
int decode_layers(const DecodeLayer* layers, int64_t n, const int32_t* rope_of, const DecodeRope* ropes,
                  int64_t num_ropes, const DecodeStep& step, const int64_t* positions, T* h, T* a, T* b) {
    static thread_local std::vector<std::vector<T>> tables;  // per rope: cos, then sin rows
    if (static_cast<int64_t>(tables.size()) < 2 * num_ropes) tables.resize(2 * num_ropes);
    for (int64_t t = 0; t < num_ropes; ++t) {
        const DecodeRope& rope = ropes[t];
        T* cos = take(tables[2 * t], step.rows * rope.rot_half);
        T* sin = take(tables[2 * t + 1], step.rows * rope.rot_half);
        for (int64_t r = 0; r < step.rows; ++r) {
            if (positions[r] < 0 || positions[r] >= rope.positions) return -1;
            const float* c = rope.cos + positions[r] * rope.rot_half;
            const float* s = rope.sin + positions[r] * rope.rot_half;
            for (int64_t d = 0; d < rope.rot_half; d += 16) {
                const int m = lanes(rope.rot_half - d);
                store(cos + r * rope.rot_half + d, load(c + d, m), m);
                store(sin + r * rope.rot_half + d, load(s + d, m), m);
            }
        }
    }
    T* residual = nullptr;
    T* in = h;
    for (int64_t i = 0; i < n; ++i) {
        const int32_t t = rope_of[i];
        const T* cos = tables[2 * t].data();
        const T* sin = tables[2 * t + 1].data();
        const int64_t rot_half = ropes[t].rot_half;
        if (layers[i].gemma) {
            decode_layer<T>(layers[i], step, cos, sin, rot_half, h, nullptr, nullptr);
            continue;
        }
        T* out = i % 2 == 0 ? a : b;  // in, the other buffer, is read (into the residual) first
        decode_layer<T>(layers[i], step, cos, sin, rot_half, in, residual, out);
        residual = h;
        in = out;
    }
    return n == 0 || layers[0].gemma ? 0 : (in == a ? 1 : 2);
}

}  // namespace

extern "C" {

int decode_layers_f32(const DecodeLayer* layers, int64_t n, const int32_t* rope_of, const DecodeRope* ropes,
                      int64_t num_ropes, const DecodeStep* step, const int64_t* positions, float* h, float* a,
                      float* b) {
    return decode_layers(layers, n, rope_of, ropes, num_ropes, *step, positions, h, a, b);
}

int decode_layers_bf16(const DecodeLayer* layers, int64_t n, const int32_t* rope_of, const DecodeRope* ropes,
                       int64_t num_ropes, const DecodeStep* step, const int64_t* positions, uint16_t* h,
                       uint16_t* a, uint16_t* b) {
    return decode_layers(layers, n, rope_of, ropes, num_ropes, *step, positions, h, a, b);
}

}  // extern "C"
