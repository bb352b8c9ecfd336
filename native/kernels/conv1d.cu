// Causal depthwise conv1d (mamba_causal_conv1d) and its decode step (mamba_causal_conv1d_update).
// One thread per output; x is read `width` times but from L1/L2, so device memory sees x, y once.
// Bytes: batch*dim*len*(x + y) + weights; FLOPs: 2*width per output (+ SiLU).
#include "common.cuh"
#include "ops/causal_conv1d.h"

namespace mamba::cuda {

namespace {

struct ConvArgs {
    AnyPtr x, weight, bias, init, y;
    int64_t x_s[3], w_s[2], b_s, i_s[3], y_s[3];
    int64_t dim, len;
    int width;
    bool has_bias, has_init, silu;
};

// Input at time j (j < 0 reads the initial state, zeros without one) for row (b, d).
__device__ __forceinline__ float conv_input(const ConvArgs & a, int64_t b, int64_t d, int64_t j) {
    if (j >= 0) return a.x.load(b * a.x_s[0] + d * a.x_s[1] + j * a.x_s[2]);
    if (!a.has_init) return 0.0f;
    return a.init.load(b * a.i_s[0] + d * a.i_s[1] + (a.width - 1 + j) * a.i_s[2]);
}

__global__ void causal_conv1d_kernel(ConvArgs a) {
    const int64_t row = blockIdx.x;
    const int64_t b = row / a.dim, d = row % a.dim;
    const int64_t t = blockIdx.y * int64_t(blockDim.x) + threadIdx.x;
    if (t >= a.len) return;
    float w[kMaxConvWidth];
#pragma unroll
    for (int k = 0; k < kMaxConvWidth; ++k) w[k] = k < a.width ? a.weight.load(d * a.w_s[0] + k * a.w_s[1]) : 0.0f;
    float acc = a.has_bias ? a.bias.load(d * a.b_s) : 0.0f;
#pragma unroll
    for (int k = 0; k < kMaxConvWidth; ++k)
        if (k < a.width) acc += w[k] * conv_input(a, b, d, t - (a.width - 1) + k);
    if (a.silu) acc = silu_f(acc);
    a.y.store(b * a.y_s[0] + d * a.y_s[1] + t * a.y_s[2], acc);
}

// Final state: the last width-1 inputs of each row, read completely before any is written so that
// final_state may alias initial_state.
__global__ void conv_final_state_kernel(ConvArgs a, AnyPtr fin, int64_t f_s0, int64_t f_s1, int64_t f_s2, int64_t rows) {
    const int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (row >= rows) return;
    const int64_t b = row / a.dim, d = row % a.dim;
    float v[kMaxConvWidth];
#pragma unroll
    for (int i = 0; i < kMaxConvWidth - 1; ++i)
        if (i < a.width - 1) v[i] = conv_input(a, b, d, a.len - (a.width - 1) + i);
#pragma unroll
    for (int i = 0; i < kMaxConvWidth - 1; ++i)
        if (i < a.width - 1) fin.store(b * f_s0 + d * f_s1 + i * f_s2, v[i]);
}

struct ConvUpdateArgs {
    AnyPtr x, state, weight, bias, y;
    int64_t x_s[2], s_s[3], w_s[2], b_s, y_s[2];
    int64_t batch, dim;
    int width;
    bool has_bias, silu;
};

__global__ void causal_conv1d_update_kernel(ConvUpdateArgs a) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= a.batch * a.dim) return;
    const int64_t b = i / a.dim, d = i % a.dim;
    float s[kMaxConvWidth];
#pragma unroll
    for (int k = 0; k < kMaxConvWidth - 1; ++k) s[k] = k < a.width - 1 ? a.state.load(b * a.s_s[0] + d * a.s_s[1] + k * a.s_s[2]) : 0.0f;
    const float x = a.x.load(b * a.x_s[0] + d * a.x_s[1]);
    float acc = a.has_bias ? a.bias.load(d * a.b_s) : 0.0f;
#pragma unroll
    for (int k = 0; k < kMaxConvWidth - 1; ++k)
        if (k < a.width - 1) acc += a.weight.load(d * a.w_s[0] + k * a.w_s[1]) * s[k];
    acc += a.weight.load(d * a.w_s[0] + (a.width - 1) * a.w_s[1]) * x;
    if (a.silu) acc = silu_f(acc);
    a.y.store(b * a.y_s[0] + d * a.y_s[1], acc);
#pragma unroll
    for (int k = 0; k < kMaxConvWidth - 1; ++k) {
        if (k < a.width - 2) a.state.store(b * a.s_s[0] + d * a.s_s[1] + k * a.s_s[2], s[k + 1]);
        else if (k == a.width - 2) a.state.store(b * a.s_s[0] + d * a.s_s[1] + k * a.s_s[2], x);
    }
}

template <int N>
void copy_strides(int64_t (&dst)[N], const Tensor & t) {
    for (int i = 0; i < N; ++i) dst[i] = t.stride[i];
}

}  // namespace

void causal_conv1d(mamba_context & ctx, const CausalConv1dParams & p) {
    const int64_t rows = p.batch * p.dim;
    if (rows == 0) return;
    ConvArgs a{};
    a.x = any(p.x);
    copy_strides(a.x_s, p.x);
    a.weight = any(p.weight);
    copy_strides(a.w_s, p.weight);
    a.has_bias = p.bias.has_value();
    if (a.has_bias) {
        a.bias = any(*p.bias);
        a.b_s = p.bias->stride[0];
    }
    a.has_init = p.initial_state.has_value();
    if (a.has_init) {
        a.init = any(*p.initial_state);
        copy_strides(a.i_s, *p.initial_state);
    }
    a.y = any(p.y);
    copy_strides(a.y_s, p.y);
    a.dim = p.dim;
    a.len = p.len;
    a.width = int(p.width);
    a.silu = p.silu;
    if (p.len > 0) {
        const int threads = 256;
        if (rows > 0x7fffffff || ceil_div(p.len, threads) > 65535) fail(MAMBA_STATUS_UNSUPPORTED, "causal_conv1d on CUDA: batch*dim or len too large");
        const dim3 grid(unsigned(rows), unsigned(ceil_div(p.len, threads)));
        causal_conv1d_kernel<<<grid, threads, 0, stream_of(ctx)>>>(a);
        MAMBA_CUDA_CHECK_LAUNCH("causal_conv1d_kernel");
    }
    if (p.final_state) {
        const int threads = 256;
        conv_final_state_kernel<<<unsigned(ceil_div(rows, threads)), threads, 0, stream_of(ctx)>>>(
            a, any(*p.final_state), p.final_state->stride[0], p.final_state->stride[1], p.final_state->stride[2], rows);
        MAMBA_CUDA_CHECK_LAUNCH("conv_final_state_kernel");
    }
}

void causal_conv1d_update(mamba_context & ctx, const CausalConv1dUpdateParams & p) {
    const int64_t n = p.batch * p.dim;
    if (n == 0) return;
    ConvUpdateArgs a{};
    a.x = any(p.x);
    copy_strides(a.x_s, p.x);
    a.state = any(p.conv_state);
    copy_strides(a.s_s, p.conv_state);
    a.weight = any(p.weight);
    copy_strides(a.w_s, p.weight);
    a.has_bias = p.bias.has_value();
    if (a.has_bias) {
        a.bias = any(*p.bias);
        a.b_s = p.bias->stride[0];
    }
    a.y = any(p.y);
    copy_strides(a.y_s, p.y);
    a.batch = p.batch;
    a.dim = p.dim;
    a.width = int(p.width);
    a.silu = p.silu;
    const int threads = 256;
    causal_conv1d_update_kernel<<<unsigned(ceil_div(n, threads)), threads, 0, stream_of(ctx)>>>(a);
    MAMBA_CUDA_CHECK_LAUNCH("causal_conv1d_update_kernel");
}

}  // namespace mamba::cuda
