#include "cpu/convert.h"

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace mamba::cpu {

namespace {

template <class T>
void load_typed(const T * src, int64_t n, int64_t stride, float * out) {
    if (stride == 1) {
        for (int64_t i = 0; i < n; ++i) out[i] = to_float(src[i]);
    } else {
        for (int64_t i = 0; i < n; ++i) out[i] = to_float(src[i * stride]);
    }
}

template <class T>
void store_typed(T * dst, int64_t n, int64_t stride, const float * in) {
    if (stride == 1) {
        for (int64_t i = 0; i < n; ++i) dst[i] = from_float<T>(in[i]);
    } else {
        for (int64_t i = 0; i < n; ++i) dst[i * stride] = from_float<T>(in[i]);
    }
}

}  // namespace

void load_floats(DType dtype, const void * src, int64_t n, int64_t stride, float * out) {
    switch (dtype) {
        case DType::F32: load_typed(static_cast<const float *>(src), n, stride, out); break;
        case DType::F16: load_typed(static_cast<const f16 *>(src), n, stride, out); break;
        case DType::BF16: load_typed(static_cast<const bf16 *>(src), n, stride, out); break;
        default: fail(MAMBA_STATUS_INTERNAL, "load_floats: not a float dtype");
    }
}

void store_floats(DType dtype, void * dst, int64_t n, int64_t stride, const float * in) {
    switch (dtype) {
        case DType::F32: store_typed(static_cast<float *>(dst), n, stride, in); break;
        case DType::F16: store_typed(static_cast<f16 *>(dst), n, stride, in); break;
        case DType::BF16: store_typed(static_cast<bf16 *>(dst), n, stride, in); break;
        default: fail(MAMBA_STATUS_INTERNAL, "store_floats: not a float dtype");
    }
}

// (GCC 12 reports the undefined upper halves inside its own widening intrinsics as uninitialized: a false alarm.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
void split_to_bf16(const float * x, int64_t n, uint16_t * hi, uint16_t * lo) {
    int64_t i = 0;
#if defined(__AVX512BF16__)
    // 16 at a time with vcvtneps2bf16 (round to nearest even, as to_bf16, but float32 denormals read as zero): the
    // scalar loop below does not vectorize and takes ~4 ns a value, a tenth of the AMX GEMM's time at 768 columns.
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(hi + i), h);
        if (lo) {
            const __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
            _mm256_storeu_si256(reinterpret_cast<__m256i *>(lo + i), (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, hf)));
        }
    }
#endif
    for (; i < n; ++i) {
        const bf16 h = to_bf16(x[i]);
        hi[i] = h.bits;
        if (lo) lo[i] = to_bf16(x[i] - to_float(h)).bits;
    }
}
#pragma GCC diagnostic pop

}  // namespace mamba::cpu
