// CPU strided copy: the innermost axis is converted a row at a time; outer axes are walked by index.
#include <cstring>
#include <vector>

#include "core/context.h"
#include "cpu/convert.h"
#include "ops/copy.h"

namespace mamba::cpu {

namespace {

int64_t load_int(DType d, const char * p) { return d == DType::I32 ? *reinterpret_cast<const int32_t *>(p) : *reinterpret_cast<const int64_t *>(p); }
void store_int(DType d, char * p, int64_t v) {
    if (d == DType::I32) *reinterpret_cast<int32_t *>(p) = int32_t(v);
    else *reinterpret_cast<int64_t *>(p) = v;
}

}  // namespace

void copy(mamba_context & ctx, const CopyParams & p) {
    const Tensor & s = p.src;
    const Tensor & d = p.dst;
    const int last = s.ndim - 1;
    const int64_t inner = s.ndim == 0 ? 1 : s.shape[last];
    const int64_t s_inner_stride = s.ndim == 0 ? 1 : s.stride[last];
    const int64_t d_inner_stride = d.ndim == 0 ? 1 : d.stride[last];
    const int64_t rows = inner == 0 ? 0 : s.numel() / inner;
    const int64_t ses = int64_t(dtype_size(s.dtype)), des = int64_t(dtype_size(d.dtype));

#pragma omp parallel num_threads(ctx.num_threads)
    {
        std::vector<float> buf(static_cast<size_t>(inner));
#pragma omp for schedule(static)
        for (int64_t row = 0; row < rows; ++row) {
            int64_t rem = row, so = 0, dof = 0;
            for (int i = last - 1; i >= 0; --i) {
                const int64_t idx = rem % s.shape[i];
                rem /= s.shape[i];
                so += idx * s.stride[i];
                dof += idx * d.stride[i];
            }
            const char * src = s.data + so * ses;
            char * dst = d.data + dof * des;
            if (is_floating(s.dtype)) {
                if (s.dtype == d.dtype && s_inner_stride == 1 && d_inner_stride == 1) {
                    std::memcpy(dst, src, size_t(inner * ses));
                } else {
                    load_floats(s.dtype, src, inner, s_inner_stride, buf.data());
                    store_floats(d.dtype, dst, inner, d_inner_stride, buf.data());
                }
            } else {
                for (int64_t i = 0; i < inner; ++i)
                    store_int(d.dtype, dst + i * d_inner_stride * des, load_int(s.dtype, src + i * s_inner_stride * ses));
            }
        }
    }
}

}  // namespace mamba::cpu
