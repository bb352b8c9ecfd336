// RMSNorm with fused residual (mamba_rms_norm) and the gated, grouped RMSNorm of Mamba-2
// (mamba_gated_rms_norm). One block per normalized row (or row group); two passes over the row, the
// second recomputing the sum r = x + residual so that residual_out may alias residual: each thread
// reads an element before it writes that same element.
// Bytes per element: rms_norm reads x (+ residual) twice (the second from L2) and weight, writes y
// (+ residual_out); gated reads x, z, weight and writes y. FLOPs: about 5 per element (plus a SiLU).
// Both are PDL-safe (launch.cuh): they wait for the previous kernel before their first load.
// Rows (row groups) of at most kRegisterRowMax (5120) elements take the register kernels: each thread
// keeps its kPer elements (and their weights) in registers, all loaded in one batch at clamped (always valid)
// indices, so the row costs one memory round trip before the reduction rather than one per element and
// pass; at batch 1 (a decode step) the norm is a single block and that latency is its whole time.
#include "common.cuh"
#include "launch.cuh"
#include "ops/gated_rms_norm.h"
#include "ops/rms_norm.h"

namespace mamba::cuda {

namespace {

// 1 / sqrt(mean(v(i)^2) + eps) over i in [begin, end), the elements strided over the block's threads and
// summed by block_sum; every thread of the block must call it and gets the same value. Inlined so that
// `value` (a load, an add, a gate) compiles into the loop as if written there.
template <class ValueAt>
__device__ __forceinline__ float block_inverse_rms(int64_t begin, int64_t end, float eps, float * scratch, const ValueAt & value) {
    float sum_sq = 0.0f;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const float r = value(i);
        sum_sq += r * r;
    }
    const float total = block_sum(sum_sq, scratch);
    return 1.0f / sqrtf(total / float(end - begin) + eps);
}

struct RmsNormArgs {
    AnyPtr x, residual, weight, y, residual_out;
    int64_t x_s0, x_s1, r_s0, r_s1, w_s, y_s0, y_s1, ro_s0, ro_s1;
    int64_t hidden;
    float eps;
    bool has_residual, has_residual_out;
    bool early;  // register kernels: weight and residual load before the PDL wait (readable_before_wait, launch.cuh)
};

__global__ void rms_norm_kernel(RmsNormArgs a) {
    __shared__ float scratch[32];
    const int64_t row = blockIdx.x;
    wait_for_producer();  // x and residual come from the previous kernels; residual_out may alias residual
    allow_dependents();
    // r = x + residual, computed again in the second pass (see the header comment).
    const auto sum_at = [&](int64_t i) {
        float r = a.x.load(row * a.x_s0 + i * a.x_s1);
        if (a.has_residual) r += a.residual.load(row * a.r_s0 + i * a.r_s1);
        return r;
    };
    const float inv = block_inverse_rms(0, a.hidden, a.eps, scratch, sum_at);
    for (int64_t i = threadIdx.x; i < a.hidden; i += blockDim.x) {
        const float r = sum_at(i);
        if (a.has_residual_out) a.residual_out.store(row * a.ro_s0 + i * a.ro_s1, r);
        a.y.store(row * a.y_s0 + i * a.y_s1, r * inv * a.weight.load(i * a.w_s));
    }
}

struct GatedArgs {
    AnyPtr x, z, weight, y;
    int64_t x_s0, x_s1, z_s0, z_s1, w_s, y_s0, y_s1;
    int64_t group_size, groups;
    float eps;
    bool has_z, norm_before_gate;
    bool early;  // register kernels: weight and z load before the PDL wait (readable_before_wait, launch.cuh)
};

__global__ void gated_rms_norm_kernel(GatedArgs a) {
    __shared__ float scratch[32];
    const int64_t row = blockIdx.x / a.groups;
    const int64_t c0 = (blockIdx.x % a.groups) * a.group_size;
    wait_for_producer();  // x and z come from the previous kernels
    allow_dependents();
    const float inv = block_inverse_rms(c0, c0 + a.group_size, a.eps, scratch, [&](int64_t i) {
        float r = a.x.load(row * a.x_s0 + i * a.x_s1);
        if (a.has_z && !a.norm_before_gate) r *= silu_f(a.z.load(row * a.z_s0 + i * a.z_s1));
        return r;
    });
    for (int64_t i = c0 + threadIdx.x; i < c0 + a.group_size; i += blockDim.x) {
        float r = a.x.load(row * a.x_s0 + i * a.x_s1);
        float gate = 1.0f;
        if (a.has_z) gate = silu_f(a.z.load(row * a.z_s0 + i * a.z_s1));
        float out;
        if (a.norm_before_gate) out = r * inv * a.weight.load(i * a.w_s) * gate;
        else out = r * gate * inv * a.weight.load(i * a.w_s);
        a.y.store(row * a.y_s0 + i * a.y_s1, out);
    }
}

// The register kernels (header comment). Element j of a thread is column threadIdx.x + j * blockDim.x.
// Rows up to 4096 take 1, 2 or 4 elements a thread on up to 1024 threads (at most 40 registers); longer rows,
// up to kRegisterRowMax, take 8 on at most 640 threads: the 8-per-thread builds use 54 and 72 registers
// (nvcc 11.8), too many for 1024 threads a block (at most 896 at 72), and 640 leaves room up to 102.
constexpr int kRegisterRowThreads = 1024;
constexpr int64_t kRegisterRowMax = 5120;

// v[j] = p[base + min(column j, last) * stride]: no bounds branch, so the loads issue back to back.
template <int kPer>
__device__ __forceinline__ void load_row_registers(const AnyPtr & p, int64_t base, int64_t stride, int64_t last, float (&v)[kPer]) {
#pragma unroll
    for (int j = 0; j < kPer; ++j) v[j] = p.load(base + min(int64_t(threadIdx.x) + j * int64_t(blockDim.x), last) * stride);
}

__device__ __forceinline__ bool in_row(int j, int64_t n) { return int64_t(threadIdx.x) + j * int64_t(blockDim.x) < n; }

template <int kPer>
__global__ void rms_norm_registers_kernel(RmsNormArgs a) {
    __shared__ float scratch[32];
    const int64_t row = blockIdx.x, last = a.hidden - 1;
    // With a.early the weight and the residual (written by the norm of the layer before, not by the kernel
    // just before: launch.cuh) load before the wait; x, the previous kernel's output, after it.
    float w[kPer], r[kPer], res[kPer];
    const auto load_weight_and_residual = [&] {
        load_row_registers(a.weight, 0, a.w_s, last, w);
        if (a.has_residual) load_row_registers(a.residual, row * a.r_s0, a.r_s1, last, res);
    };
    if (a.early) load_weight_and_residual();
    wait_for_producer();  // as rms_norm_kernel
    allow_dependents();
    if (!a.early) load_weight_and_residual();
    load_row_registers(a.x, row * a.x_s0, a.x_s1, last, r);
    if (a.has_residual) {
#pragma unroll
        for (int j = 0; j < kPer; ++j) r[j] += res[j];
    }
    float sum_sq = 0.0f;
#pragma unroll
    for (int j = 0; j < kPer; ++j) sum_sq += in_row(j, a.hidden) ? r[j] * r[j] : 0.0f;
    const float inv = 1.0f / sqrtf(block_sum(sum_sq, scratch) / float(a.hidden) + a.eps);
    // Every thread reads its own elements before it writes them, so residual_out may alias residual.
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
        if (!in_row(j, a.hidden)) continue;
        const int64_t i = int64_t(threadIdx.x) + j * int64_t(blockDim.x);
        if (a.has_residual_out) a.residual_out.store(row * a.ro_s0 + i * a.ro_s1, r[j]);
        a.y.store(row * a.y_s0 + i * a.y_s1, r[j] * inv * w[j]);
    }
}

template <int kPer>
__global__ void gated_rms_norm_registers_kernel(GatedArgs a) {
    __shared__ float scratch[32];
    const int64_t row = blockIdx.x / a.groups;
    const int64_t c0 = (blockIdx.x % a.groups) * a.group_size, last = a.group_size - 1;
    // With a.early the weight and z (the in-projection's output, two kernels back in a decode step) load
    // before the wait; x, the previous kernel's output, after it.
    float w[kPer], x[kPer], gate[kPer];
    const auto load_weight_and_z = [&] {
        load_row_registers(a.weight, c0 * a.w_s, a.w_s, last, w);
        if (a.has_z) load_row_registers(a.z, row * a.z_s0 + c0 * a.z_s1, a.z_s1, last, gate);
    };
    if (a.early) load_weight_and_z();
    wait_for_producer();  // as gated_rms_norm_kernel
    allow_dependents();
    if (!a.early) load_weight_and_z();
    load_row_registers(a.x, row * a.x_s0 + c0 * a.x_s1, a.x_s1, last, x);
    if (a.has_z) {
#pragma unroll
        for (int j = 0; j < kPer; ++j) gate[j] = silu_f(gate[j]);
    } else {
#pragma unroll
        for (int j = 0; j < kPer; ++j) gate[j] = 1.0f;
    }
    float sum_sq = 0.0f;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
        const float r = a.norm_before_gate ? x[j] : x[j] * gate[j];
        sum_sq += in_row(j, a.group_size) ? r * r : 0.0f;
    }
    const float inv = 1.0f / sqrtf(block_sum(sum_sq, scratch) / float(a.group_size) + a.eps);
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
        if (!in_row(j, a.group_size)) continue;
        const int64_t i = c0 + int64_t(threadIdx.x) + j * int64_t(blockDim.x);
        const float out = a.norm_before_gate ? x[j] * inv * w[j] * gate[j] : x[j] * gate[j] * inv * w[j];
        a.y.store(row * a.y_s0 + i * a.y_s1, out);
    }
}

// Launches the register kernel with the fewest elements per thread that fits a row of n (n <= kRegisterRowMax).
template <class Args>
void launch_registers(mamba_context & ctx, const char * name, void (*k1)(Args), void (*k2)(Args), void (*k4)(Args),
                      void (*k8)(Args), int64_t n, unsigned blocks, const Args & a) {
    int per = 1;
    while (int64_t(per) * kRegisterRowThreads < n) per *= 2;
    const int threads = int(std::min<int64_t>(kRegisterRowThreads, (ceil_div(n, int64_t(per)) + 31) / 32 * 32));
    void (*kernel)(Args) = per == 1 ? k1 : per == 2 ? k2 : per == 4 ? k4 : k8;
    launch_kernel(ctx, name, true, kernel, dim3(blocks), dim3(threads), 0, a);
    MAMBA_CUDA_CHECK_LAUNCH(name);
}

// Points a kernel argument at a (rows, columns) tensor: its data and its two strides.
void bind_rows(const Tensor & t, AnyPtr & ptr, int64_t & s0, int64_t & s1) {
    ptr = any(t);
    s0 = t.stride[0];
    s1 = t.stride[1];
}

int threads_for(int64_t n) {
    if (n >= 4096) return 1024;
    if (n >= 1024) return 512;
    if (n >= 256) return 256;
    return 128;
}

}  // namespace

void rms_norm(mamba_context & ctx, const RmsNormParams & p) {
    RmsNormArgs a{};
    bind_rows(p.x, a.x, a.x_s0, a.x_s1);
    a.has_residual = p.residual.has_value();
    if (a.has_residual) bind_rows(*p.residual, a.residual, a.r_s0, a.r_s1);
    a.weight = any(p.weight);
    a.w_s = p.weight.stride[0];
    bind_rows(p.y, a.y, a.y_s0, a.y_s1);
    a.has_residual_out = p.residual_out.has_value();
    if (a.has_residual_out) bind_rows(*p.residual_out, a.residual_out, a.ro_s0, a.ro_s1);
    a.hidden = p.hidden;
    a.eps = p.eps;
    if (p.rows > 0x7fffffff) fail(MAMBA_STATUS_UNSUPPORTED, "rms_norm on CUDA supports at most 2^31-1 rows");
    if (p.hidden > 0 && p.hidden <= kRegisterRowMax && p.rows > 0) {
        a.early = readable_before_wait(ctx, {&p.weight, ptr(p.residual)});
        launch_registers(ctx, a.early ? "rms_norm_registers_kernel early" : "rms_norm_registers_kernel", rms_norm_registers_kernel<1>, rms_norm_registers_kernel<2>,
                         rms_norm_registers_kernel<4>, rms_norm_registers_kernel<8>, p.hidden, unsigned(p.rows), a);
    } else {
        launch_kernel(ctx, "rms_norm_kernel", true, rms_norm_kernel, dim3(unsigned(p.rows)), dim3(threads_for(p.hidden)), 0, a);
        MAMBA_CUDA_CHECK_LAUNCH("rms_norm_kernel");
    }
    note_writes(ctx, {&p.y, ptr(p.residual_out)});
}

void gated_rms_norm(mamba_context & ctx, const GatedRmsNormParams & p) {
    if (p.rows == 0 || p.dim == 0) return;
    GatedArgs a{};
    bind_rows(p.x, a.x, a.x_s0, a.x_s1);
    a.has_z = p.z.has_value();
    if (a.has_z) bind_rows(*p.z, a.z, a.z_s0, a.z_s1);
    a.weight = any(p.weight);
    a.w_s = p.weight.stride[0];
    bind_rows(p.y, a.y, a.y_s0, a.y_s1);
    a.group_size = p.group_size > 0 ? p.group_size : p.dim;
    a.groups = p.dim / a.group_size;
    a.eps = p.eps;
    a.norm_before_gate = p.norm_before_gate;
    const int64_t blocks = p.rows * a.groups;
    if (blocks > 0x7fffffff) fail(MAMBA_STATUS_UNSUPPORTED, "gated_rms_norm on CUDA supports at most 2^31-1 row groups");
    if (a.group_size <= kRegisterRowMax) {
        a.early = readable_before_wait(ctx, {&p.weight, ptr(p.z)});
        launch_registers(ctx, a.early ? "gated_rms_norm_registers_kernel early" : "gated_rms_norm_registers_kernel", gated_rms_norm_registers_kernel<1>,
                         gated_rms_norm_registers_kernel<2>, gated_rms_norm_registers_kernel<4>,
                         gated_rms_norm_registers_kernel<8>, a.group_size, unsigned(blocks), a);
    } else {
        launch_kernel(ctx, "gated_rms_norm_kernel", true, gated_rms_norm_kernel, dim3(unsigned(blocks)), dim3(threads_for(a.group_size)), 0, a);
        MAMBA_CUDA_CHECK_LAUNCH("gated_rms_norm_kernel");
    }
    note_writes(ctx, {&p.y});
}

}  // namespace mamba::cuda
