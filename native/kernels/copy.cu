// Strided copy with dtype conversion (mamba_copy), also used to stage inputs for the fast kernels.
// Bytes: numel * (src size + dst size); no arithmetic beyond the conversion.
#include "common.cuh"
#include "launch.cuh"
#include "ops/copy.h"

namespace mamba::cuda {

namespace {

struct CopyShape {
    int ndim;
    int64_t shape[kMaxDims];
    int64_t src_stride[kMaxDims];
    int64_t dst_stride[kMaxDims];
};

__device__ __forceinline__ int64_t load_int(const char * p, int dtype, int64_t i) {
    return dtype == int(DType::I32) ? int64_t(reinterpret_cast<const int32_t *>(p)[i]) : reinterpret_cast<const int64_t *>(p)[i];
}
__device__ __forceinline__ void store_int(char * p, int dtype, int64_t i, int64_t v) {
    if (dtype == int(DType::I32)) reinterpret_cast<int32_t *>(p)[i] = int32_t(v);
    else reinterpret_cast<int64_t *>(p)[i] = v;
}

template <bool kFloat>
__global__ void copy_kernel(const char * src, int src_dtype, char * dst, int dst_dtype, CopyShape s, int64_t n) {
    wait_for_producer();  // PDL-safe (launch.cuh): src may come from the previous kernel
    allow_dependents();
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t rem = i, so = 0, dof = 0;
        for (int a = s.ndim - 1; a >= 0; --a) {
            const int64_t idx = rem % s.shape[a];
            rem /= s.shape[a];
            so += idx * s.src_stride[a];
            dof += idx * s.dst_stride[a];
        }
        if constexpr (kFloat) {
            const AnyPtr in{const_cast<char *>(src), src_dtype}, out{dst, dst_dtype};
            out.store(dof, in.load(so));
        } else {
            store_int(dst, dst_dtype, dof, load_int(src, src_dtype, so));
        }
    }
}

}  // namespace

void copy_tensor(mamba_context & ctx, const Tensor & src, const Tensor & dst) {
    const int64_t n = src.numel();
    if (n == 0) return;
    if (src.dtype == dst.dtype && src.is_contiguous() && dst.is_contiguous()) {
        count_queued(ctx);
        MAMBA_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, size_t(n) * dtype_size(src.dtype), cudaMemcpyDeviceToDevice, stream_of(ctx)));
        return;
    }
    CopyShape s{};
    s.ndim = src.ndim;
    for (int a = 0; a < src.ndim; ++a) {
        s.shape[a] = src.shape[a];
        s.src_stride[a] = src.stride[a];
        s.dst_stride[a] = dst.stride[a];
    }
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>(ceil_div(n, threads), int64_t(state_of(ctx).multiprocessors) * 32);
    const char * from = src.data;
    launch_kernel(ctx, "copy_kernel", true, is_floating(src.dtype) ? copy_kernel<true> : copy_kernel<false>, dim3(unsigned(blocks)), dim3(threads), 0,
                  from, int(src.dtype), dst.data, int(dst.dtype), s, n);
    MAMBA_CUDA_CHECK_LAUNCH("copy_kernel");
}

Tensor contiguous_view(char * data, DType dtype, std::initializer_list<int64_t> shape) {
    Tensor t;
    t.data = data;
    t.dtype = dtype;
    t.ndim = int(shape.size());
    int a = 0;
    for (int64_t s : shape) t.shape[a++] = s;
    int64_t stride = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
        t.stride[i] = stride;
        stride *= t.shape[i];
    }
    return t;
}

Tensor contiguous_like(char * data, DType dtype, const Tensor & like) {
    Tensor t = like;
    t.data = data;
    t.dtype = dtype;
    int64_t stride = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
        t.stride[i] = stride;
        stride *= t.shape[i];
    }
    return t;
}

void copy(mamba_context & ctx, const CopyParams & p) { copy_tensor(ctx, p.src, p.dst); }

}  // namespace mamba::cuda
