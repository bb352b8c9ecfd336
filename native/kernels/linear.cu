// Dense layers on CUDA: mamba_linear through the GEMV kernel for up to kGemvMaxRows rows (gemv.cu), else
// cuBLAS (bf16/fp16 tensor cores or exact float32, always float32 accumulation; a float32/float16 x with
// bfloat16 W is split into two bfloat16 parts for the tensor cores), and mamba_embedding (a gather).
// mamba_linear_softplus: the small-K tensor-core kernel with the softplus in its epilogue where it applies
// (linear_small_k.cu), else cuBLAS into float32 and the softplus in the epilogue pass below.
// linear: FLOPs 2*rows*in*out; bytes rows*in*x + in*out*W + rows*out*y.
// embedding: bytes count*hidden*(table + y).
#include "common.cuh"
#include "gemv.cuh"
#include "linear_small_k.cuh"
#include "launch.cuh"
#include "ops/linear.h"

namespace mamba::cuda {

namespace {

cudaDataType_t cuda_type(DType d) {
    switch (d) {
        case DType::F16: return CUDA_R_16F;
        case DType::BF16: return CUDA_R_16BF;
        default: return CUDA_R_32F;
    }
}

// y[r, o] = src[r, o] (+ bias[o]), then its softplus when asked, converting dtypes; src may be y itself.
__global__ void linear_epilogue_kernel(AnyPtr src, int64_t src_s0, AnyPtr bias, int64_t bias_s, bool has_bias, bool softplus, AnyPtr y,
                                       int64_t y_s0, int64_t rows, int64_t out) {
    wait_for_producer();  // PDL-safe (launch.cuh); its predecessor is a cuBLAS GEMM, which never triggers early
    allow_dependents();
    const int64_t n = rows * out;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / out, o = i % out;
        float v = src.load(r * src_s0 + o);
        if (has_bias) v += bias.load(o * bias_s);
        y.store(r * y_s0 + o, softplus ? softplus_mufu(v) : v);
    }
}

// x (any float dtype, any strides) -> hi + lo, two contiguous bfloat16 matrices with hi + lo = x to about
// 16 significant bits (x - hi is exact in float32, lo its rounding). A non-finite x keeps lo = 0.
__global__ void split_bf16_kernel(AnyPtr x, int64_t x_s0, int64_t x_s1, bf16_t * hi, bf16_t * lo, int64_t rows, int64_t cols) {
    wait_for_producer();  // PDL-safe (launch.cuh): x may come from the previous kernel
    allow_dependents();
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / cols, k = i % cols;
        const float v = x.load(r * x_s0 + k * x_s1);
        const bf16_t h = __float2bfloat16_rn(v);
        const float hf = __bfloat162float(h);
        hi[i] = h;
        lo[i] = __float2bfloat16_rn(isfinite(hf) ? v - hf : 0.0f);
    }
}

}  // namespace

void linear(mamba_context & ctx, const LinearParams & p) {
    const int64_t M = p.rows, K = p.in_features, N = p.out_features;
    if (M == 0 || N == 0) return;
    if (M > INT32_MAX || K > INT32_MAX || N > INT32_MAX) fail(MAMBA_STATUS_UNSUPPORTED, "linear on CUDA: dimensions must fit in int32");
    // Decode (few rows): a bandwidth-bound GEMV that reads W once in its own dtype (gemv.cu).
    if (p.softplus ? try_linear_small_k(ctx, p) : try_gemv(ctx, p)) {
        // The kernel's outputs (after cuBLAS the record stays stale: launch.cuh).
        if (!p.softplus) note_writes(ctx, {&p.y});
        return;
    }
    const int64_t ldx_in = M == 1 ? K : p.x.stride[0];
    const int64_t ldw_in = N == 1 ? K : p.weight.stride[0];
    const int64_t ldy_in = M == 1 ? N : p.y.stride[0];
    const bool w_layout_ok = ldw_in >= K && (K <= 1 || p.weight.stride[1] == 1);
    // bfloat16 W with a float32 or float16 x: x is split into bfloat16 hi + lo and y = W hi + W lo, two
    // tensor-core GEMMs accumulating in float32, instead of converting all of W to float32 and running an
    // exact sgemm (about 10x the FLOP rate, and W is not rewritten on every call). hi + lo holds ~16
    // significant bits of x, so each product is within 2^-17 of the exact one: the float32 accuracy the
    // float64-reference tests ask for (2e-5 of sum |x w|); the CPU GEMV uses the same split.
    const bool split_x = p.weight.dtype == DType::BF16 && p.x.dtype != DType::BF16 && w_layout_ok && K > 0;
    // Operand type: x and W as they are when they agree (or split), else both in float32.
    const DType op = split_x || p.x.dtype == p.weight.dtype ? p.weight.dtype : DType::F32;
    const bool stage_x = split_x || p.x.dtype != op || ldx_in < K || (K > 1 && p.x.stride[1] != 1);
    const bool stage_w = p.weight.dtype != op || !w_layout_ok;
    // cuBLAS writes float32 or the operand type; other output types, a bias or odd strides go through a
    // float32 buffer (the bias add is fused into the conversion pass).
    // A bias with a rounded output type also goes through float32, so that y is rounded once; the split
    // accumulates its second product onto the first, so it needs a float32 target too.
    // The softplus too, so that its input is the float32 sum.
    const bool direct_y = (p.y.dtype == DType::F32 || (p.y.dtype == op && !p.bias && !split_x && !p.softplus)) && ldy_in >= N &&
                          (N == 1 || p.y.stride[1] == 1);
    const bool stage_y = !direct_y;
    WorkspaceCarver carver;
    const size_t ox = stage_x ? carver.add(size_t(M * K) * dtype_size(op) * (split_x ? 2 : 1)) : 0;
    const size_t ow = stage_w ? carver.add(size_t(N * K) * dtype_size(op)) : 0;
    const size_t oy = stage_y ? carver.add(size_t(M * N) * 4) : 0;
    char * ws = carver.take(ctx);

    Tensor x = p.x, w = p.weight;
    const void * x_lo = nullptr;
    if (split_x) {
        bf16_t * hi = reinterpret_cast<bf16_t *>(ws + ox);
        bf16_t * lo = hi + M * K;
        const int threads = 256;
        const int64_t blocks = std::min<int64_t>(ceil_div(M * K, threads), int64_t(state_of(ctx).multiprocessors) * 16);
        launch_kernel(ctx, "split_bf16_kernel", true, split_bf16_kernel, dim3(unsigned(blocks)), dim3(threads), 0, any(p.x), p.x.stride[0],
                      K > 1 ? p.x.stride[1] : 1, hi, lo, M, K);
        MAMBA_CUDA_CHECK_LAUNCH("split_bf16_kernel");
        x = contiguous_like(ws + ox, op, p.x);
        x_lo = lo;
    } else if (stage_x) {
        x = contiguous_like(ws + ox, op, p.x);
        copy_tensor(ctx, p.x, x);
    }
    if (stage_w) {
        w = contiguous_like(ws + ow, op, p.weight);
        copy_tensor(ctx, p.weight, w);
    }
    const int64_t ldx = stage_x || M == 1 ? K : x.stride[0];
    const int64_t ldw = stage_w || N == 1 ? K : w.stride[0];
    void * y_ptr = stage_y ? static_cast<void *>(ws + oy) : static_cast<void *>(p.y.data);
    const DType y_type = stage_y ? DType::F32 : p.y.dtype;
    const int64_t ldy = stage_y ? N : ldy_in;

    count_queued(ctx);  // the memset or the GEMMs
    if (K == 0) {
        // An empty sum: y = bias (or zeros).
        MAMBA_CUDA_CHECK(cudaMemset2DAsync(y_ptr, size_t(ldy) * dtype_size(y_type), 0, size_t(N) * dtype_size(y_type), size_t(M), stream_of(ctx)));
    } else {
        const float alpha = 1.0f, beta = 0.0f;
        // Row-major y (M x N) = x (M x K) W^T is column-major y^T (N x M) = W (N x K, i.e. W^T stored) * x^T.
        MAMBA_CUBLAS_CHECK(cublasGemmEx(state_of(ctx).cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, w.data, cuda_type(op), int(ldw),
                                        x.data, cuda_type(op), int(ldx), &beta, y_ptr, cuda_type(y_type), int(ldy), CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
        if (x_lo) {
            // y += W lo (y is float32 here).
            const float one = 1.0f;
            MAMBA_CUBLAS_CHECK(cublasGemmEx(state_of(ctx).cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, w.data, cuda_type(op),
                                            int(ldw), x_lo, cuda_type(op), int(ldx), &one, y_ptr, cuda_type(y_type), int(ldy), CUBLAS_COMPUTE_32F,
                                            CUBLAS_GEMM_DEFAULT));
        }
    }
    if (stage_y || p.bias || p.softplus) {
        const AnyPtr src{static_cast<char *>(y_ptr), int(y_type)};
        const int threads = 256;
        const int64_t blocks = std::min<int64_t>(ceil_div(M * N, threads), int64_t(state_of(ctx).multiprocessors) * 16);
        launch_kernel(ctx, "linear_epilogue_kernel", true, linear_epilogue_kernel, dim3(unsigned(blocks)), dim3(threads), 0, src, ldy, any(p.bias),
                      p.bias ? p.bias->stride[0] : int64_t(0), p.bias.has_value(), p.softplus, any(p.y), ldy_in, M, N);
        MAMBA_CUDA_CHECK_LAUNCH("linear_epilogue_kernel");
    }
}

namespace {

// Reports the first position whose id lies outside [0, vocab).
__global__ void embedding_check_kernel(const char * ids, int ids_dtype, int64_t ids_s, int64_t count, int64_t vocab, unsigned long long * error_index,
                                       unsigned long long error_tag) {
    wait_for_producer();  // PDL-safe (launch.cuh): the ids may come from the previous kernel
    allow_dependents();
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t id = ids_dtype == int(DType::I32) ? int64_t(reinterpret_cast<const int32_t *>(ids)[i * ids_s])
                                                        : reinterpret_cast<const int64_t *>(ids)[i * ids_s];
        if (id < 0 || id >= vocab) atomicMin(error_index, error_tag | (unsigned long long)i);
    }
}

// A bad id (only possible in a captured graph, where the check cannot stop the launch) gives a zero row
// instead of a read outside the table.
__global__ void embedding_kernel(const char * ids, int ids_dtype, int64_t ids_s, AnyPtr table, int64_t t_s0, int64_t t_s1, AnyPtr y, int64_t y_s0,
                                 int64_t y_s1, int64_t hidden, int64_t vocab) {
    const int64_t row = blockIdx.x;
    wait_for_producer();  // PDL-safe (launch.cuh): ids (and y's readers) come from the previous kernels
    allow_dependents();
    const int64_t id = ids_dtype == int(DType::I32) ? int64_t(reinterpret_cast<const int32_t *>(ids)[row * ids_s])
                                                    : reinterpret_cast<const int64_t *>(ids)[row * ids_s];
    const bool valid = id >= 0 && id < vocab;
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) y.store(row * y_s0 + i * y_s1, valid ? table.load(id * t_s0 + i * t_s1) : 0.0f);
}

}  // namespace

void embedding(mamba_context & ctx, const EmbeddingParams & p) {
    if (p.count == 0) return;
    if (p.count > INT32_MAX) fail(MAMBA_STATUS_UNSUPPORTED, "embedding on CUDA supports at most 2^31-1 ids");
    // Ids live on the device: check them all first (and read the verdict back) so that nothing is
    // written when one is out of range. While capturing a graph nothing can be read back: the check
    // then leaves a deferred error (reported by the next synchronize) and bad rows become zeros.
    const int check_threads = 256;
    const int64_t check_blocks = std::min<int64_t>(ceil_div(p.count, check_threads), 1024);
    unsigned long long tag = 0;
    unsigned long long * slot = error_slot(ctx, DeferredError::Embedding, tag);
    launch_kernel(ctx, "embedding_check_kernel", true, embedding_check_kernel, dim3(unsigned(check_blocks)), dim3(check_threads), 0,
                  static_cast<const char *>(p.ids.data), int(p.ids.dtype), p.ids.stride[0], p.count, p.vocab, slot, tag);
    MAMBA_CUDA_CHECK_LAUNCH("embedding_check_kernel");
    const unsigned long long bad = tag != 0 ? kNoErrorIndex : take_error_index(ctx);
    if (bad != kNoErrorIndex) {
        const int64_t pos = int64_t(bad);
        fail_argument("argument 'ids' holds ", read_device_int(ctx, p.ids, pos * p.ids.stride[0]), " at position ", pos, ", outside the table's rows [0, ",
                      p.vocab, ")");
    }
    if (p.hidden == 0) return;
    const int threads = p.hidden >= 1024 ? 512 : 128;
    launch_kernel(ctx, "embedding_kernel", true, embedding_kernel, dim3(unsigned(p.count)), dim3(threads), 0, static_cast<const char *>(p.ids.data),
                  int(p.ids.dtype), p.ids.stride[0], any(p.table), p.table.stride[0], p.table.stride[1], any(p.y), p.y.stride[0], p.y.stride[1],
                  p.hidden, p.vocab);
    MAMBA_CUDA_CHECK_LAUNCH("embedding_kernel");
    note_writes(ctx, {&p.y});
}

// The conv step inside the projection's GEMV when it can take it (gemv.cu), else the two ops in order.
void linear_conv1d_update(mamba_context & ctx, const LinearConv1dUpdateParams & p) {
    if (try_gemv_conv1d_update(ctx, p)) {
        note_writes(ctx, {&p.linear.y, &p.conv.conv_state, &p.conv.y});
        return;
    }
    linear(ctx, p.linear);  // each of the two ops records its own outputs
    if (p.conv.dim > 0) causal_conv1d_update(ctx, p.conv);
}

}  // namespace mamba::cuda
