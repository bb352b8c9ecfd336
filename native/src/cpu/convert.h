// Row conversion between stored dtypes and float32 scratch, the CPU backend's way of accepting every
// float dtype without instantiating each kernel for every combination.
#pragma once

#include <cstdint>

#include "core/numeric.h"
#include "core/tensor.h"

namespace mamba::cpu {

// Reads n elements spaced `stride` elements apart into out[0..n).
void load_floats(DType dtype, const void * src, int64_t n, int64_t stride, float * out);
// Writes in[0..n) to n elements spaced `stride` elements apart.
void store_floats(DType dtype, void * dst, int64_t n, int64_t stride, const float * in);

// x[0..n) as two bfloat16 parts, hi = bf16(x) and lo = bf16(x - hi) (raw bits; lo skipped when null): hi + lo keeps
// about 16 bits of x, what the bfloat16 dot products of the GEMV and the AMX GEMM need to keep float32 accuracy.
// Rounded to nearest even; with AVX512-BF16, float32 denormals count as zero.
void split_to_bf16(const float * x, int64_t n, uint16_t * hi, uint16_t * lo);

// Element pointer of a view at an index given per axis.
inline char * element(const Tensor & t, std::initializer_list<int64_t> index) {
    return t.data + t.offset(index) * int64_t(dtype_size(t.dtype));
}

inline float load_float(DType dtype, const void * p) {
    switch (dtype) {
        case DType::F32: return *static_cast<const float *>(p);
        case DType::F16: return to_float(*static_cast<const f16 *>(p));
        case DType::BF16: return to_float(*static_cast<const bf16 *>(p));
        default: return 0.0f;
    }
}

inline void store_float(DType dtype, void * p, float v) {
    switch (dtype) {
        case DType::F32: *static_cast<float *>(p) = v; break;
        case DType::F16: *static_cast<f16 *>(p) = to_f16(v); break;
        case DType::BF16: *static_cast<bf16 *>(p) = to_bf16(v); break;
        default: break;
    }
}

}  // namespace mamba::cpu
