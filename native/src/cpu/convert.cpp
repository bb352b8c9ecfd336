#include "cpu/convert.h"

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

}  // namespace mamba::cpu
