// The C entry points that kernels call across files (decode_layer.cpp runs the others), declared
// once: each defining file includes this too, so a signature that drifts fails to compile.
#pragma once

#include <cstdint>

extern "C" {
void rms_norm_f32(const float*, int64_t, float*, const float*, int64_t, int64_t, float, int, float*);
void rms_norm_bf16(const uint16_t*, int64_t, uint16_t*, const uint16_t*, int64_t, int64_t, float, int, uint16_t*);
void residual_norm_f32(const float*, float*, const float*, const float*, int64_t, int64_t, float, float*);
void residual_norm_bf16(const uint16_t*, uint16_t*, const uint16_t*, const uint16_t*, int64_t, int64_t, float,
                        uint16_t*);
void qk_prepare_f32(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, const float*, const float*, float,
                    const float*, const float*, int64_t, const int64_t*, float*, float*, float*, float*);
void qk_prepare_bf16(const uint16_t*, int64_t, int64_t, int64_t, int64_t, int64_t, const uint16_t*,
                     const uint16_t*, float, const uint16_t*, const uint16_t*, int64_t, const int64_t*, uint16_t*,
                     uint16_t*, uint16_t*, uint16_t*);
void gated_act_f32(const float*, int64_t, int64_t, int64_t, int, float*);
void gated_act_bf16(const uint16_t*, int64_t, int64_t, int64_t, int, uint16_t*);
void paged_decode_f32(const float*, int64_t, const float*, const float*, const int64_t*, int64_t, const int64_t*,
                      int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, float*);
void paged_decode_bf16(const uint16_t*, int64_t, const uint16_t*, const uint16_t*, const int64_t*, int64_t,
                       const int64_t*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, uint16_t*);
void int4_matmul_f32(const float*, int64_t, int64_t, int64_t, const uint8_t*, const float*, int64_t, int64_t, float*,
                     int64_t);
void int4_matmul_bf16(const uint16_t*, int64_t, int64_t, int64_t, const uint8_t*, const uint16_t*, int64_t, int64_t,
                      uint16_t*, int64_t);
}
