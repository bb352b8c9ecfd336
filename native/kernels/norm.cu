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
// Prefill-sized calls (at least as many rows, or row groups, as the GPU has SMs) of contiguous, 16-byte aligned
// rows take the rows kernels instead (further down): 16-byte loads and blocks small enough to share an SM.
#include "common.cuh"
#include "core/env_choice.h"
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

// The rows kernels, for prefill-sized calls: x, y and the weight of one type T, the residual and residual_out (rms_norm)
// of one type R, every row contiguous, starting on a 16-byte boundary and a multiple of kRowsChunk elements long (each
// row group too). A thread owns kChunks chunks of kRowsChunk consecutive elements (chunk threadIdx.x + k * blockDim.x),
// loaded with 16-byte loads (two a chunk in float32), so that a warp reads 512 contiguous bytes a load where the
// register kernels read one 2-byte element a thread. Blocks are small (2 chunks a thread by default: 320 threads for a
// 5120-element row; a build of k chunks runs on up to 1024 / k threads), so that several share an SM and one block's
// reduction overlaps another's loads, where the 5120-element register build holds a whole SM's registers with one
// 640-thread block. Each thread reads its elements before it writes the same ones, so y may alias x (gated) and
// residual_out residual (rms_norm), as in the other kernels. Bytes per element as above; nothing is read twice.
constexpr int kRowsChunk = 8;
constexpr int kRowsDefaultChunks = 2;

// Threads a block of the kChunks build may have: 1024 / kChunks, so that its registers (at most about 100 at 4
// chunks, 40-60 at 1 and 2; nvcc 11.8) always fit.
template <int kChunks>
constexpr int rows_launch_bound() { return 1024 / kChunks; }

template <class T, int kChunks>
__global__ void __launch_bounds__(rows_launch_bound<kChunks>()) gated_rms_norm_rows_kernel(GatedArgs a) {
    __shared__ float scratch[32];
    const int64_t row = blockIdx.x / a.groups;
    const int64_t c0 = (blockIdx.x % a.groups) * a.group_size;
    const int64_t chunks = a.group_size / kRowsChunk;
    const T * x = reinterpret_cast<const T *>(a.x.p) + row * a.x_s0 + c0;
    const T * z = a.has_z ? reinterpret_cast<const T *>(a.z.p) + row * a.z_s0 + c0 : nullptr;
    const T * w = reinterpret_cast<const T *>(a.weight.p) + c0;
    T * y = reinterpret_cast<T *>(a.y.p) + row * a.y_s0 + c0;
    wait_for_producer();  // as gated_rms_norm_kernel
    allow_dependents();
    float xv[kChunks][kRowsChunk], gate[kChunks][kRowsChunk];
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
        const int64_t c = threadIdx.x + int64_t(k) * blockDim.x;
#pragma unroll
        for (int i = 0; i < kRowsChunk; ++i) xv[k][i] = gate[k][i] = 0.0f;
        if (c < chunks) {
            load_floats<T, kRowsChunk>(x + c * kRowsChunk, xv[k], true);
            if (a.has_z) load_floats<T, kRowsChunk>(z + c * kRowsChunk, gate[k], true);
        }
    }
    float sum_sq = 0.0f;
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
#pragma unroll
        for (int i = 0; i < kRowsChunk; ++i) {
            gate[k][i] = a.has_z ? silu_f(gate[k][i]) : 1.0f;
            const float r = a.norm_before_gate ? xv[k][i] : xv[k][i] * gate[k][i];
            sum_sq += r * r;  // chunks past the row hold x = 0
        }
    }
    const float inv = 1.0f / sqrtf(block_sum(sum_sq, scratch) / float(a.group_size) + a.eps);
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
        const int64_t c = threadIdx.x + int64_t(k) * blockDim.x;
        if (c >= chunks) continue;
        float wv[kRowsChunk], out[kRowsChunk];
        load_floats<T, kRowsChunk>(w + c * kRowsChunk, wv, true);
#pragma unroll
        for (int i = 0; i < kRowsChunk; ++i)
            out[i] = a.norm_before_gate ? xv[k][i] * inv * wv[i] * gate[k][i] : xv[k][i] * gate[k][i] * inv * wv[i];
        store_floats<T, kRowsChunk>(y + c * kRowsChunk, out, true);
    }
}

template <class T, class R, int kChunks>
__global__ void __launch_bounds__(rows_launch_bound<kChunks>()) rms_norm_rows_kernel(RmsNormArgs a) {
    __shared__ float scratch[32];
    const int64_t row = blockIdx.x;
    const int64_t chunks = a.hidden / kRowsChunk;
    const T * x = reinterpret_cast<const T *>(a.x.p) + row * a.x_s0;
    const R * res = a.has_residual ? reinterpret_cast<const R *>(a.residual.p) + row * a.r_s0 : nullptr;
    R * res_out = a.has_residual_out ? reinterpret_cast<R *>(a.residual_out.p) + row * a.ro_s0 : nullptr;
    const T * w = reinterpret_cast<const T *>(a.weight.p);
    T * y = reinterpret_cast<T *>(a.y.p) + row * a.y_s0;
    wait_for_producer();  // as rms_norm_kernel
    allow_dependents();
    float r[kChunks][kRowsChunk];
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
        const int64_t c = threadIdx.x + int64_t(k) * blockDim.x;
#pragma unroll
        for (int i = 0; i < kRowsChunk; ++i) r[k][i] = 0.0f;
        if (c < chunks) {
            load_floats<T, kRowsChunk>(x + c * kRowsChunk, r[k], true);
            if (a.has_residual) {
                float rv[kRowsChunk];
                load_floats<R, kRowsChunk>(res + c * kRowsChunk, rv, true);
#pragma unroll
                for (int i = 0; i < kRowsChunk; ++i) r[k][i] += rv[i];
            }
        }
    }
    float sum_sq = 0.0f;
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
#pragma unroll
        for (int i = 0; i < kRowsChunk; ++i) sum_sq += r[k][i] * r[k][i];
    }
    const float inv = 1.0f / sqrtf(block_sum(sum_sq, scratch) / float(a.hidden) + a.eps);
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
        const int64_t c = threadIdx.x + int64_t(k) * blockDim.x;
        if (c >= chunks) continue;
        if (a.has_residual_out) store_floats<R, kRowsChunk>(res_out + c * kRowsChunk, r[k], true);
        float wv[kRowsChunk], out[kRowsChunk];
        load_floats<T, kRowsChunk>(w + c * kRowsChunk, wv, true);
#pragma unroll
        for (int i = 0; i < kRowsChunk; ++i) out[i] = r[k][i] * inv * wv[i];
        store_floats<T, kRowsChunk>(y + c * kRowsChunk, out, true);
    }
}

// MAMBA_CUDA_NORM_ROWS (read at the start of each call, so that a misspelt value fails every call, decode steps too):
// "auto" (or unset) sends prefill-sized calls that allow it to the rows kernels, "off" keeps every call on the register
// and loop kernels, "1", "2" and "4" force that many chunks a thread where the row fits the build (for measurements).
enum class NormRows { Auto, Off, Chunks1, Chunks2, Chunks4 };
constexpr EnvChoice<NormRows> kNormRows[] = {
    {"auto", NormRows::Auto}, {"off", NormRows::Off}, {"1", NormRows::Chunks1}, {"2", NormRows::Chunks2}, {"4", NormRows::Chunks4}};

bool rows_fit(int64_t chunks, int k) { return ceil_div(chunks, int64_t(k)) <= 1024 / k; }

// Chunks a thread for a row (group) of n elements in the rows kernels: kRowsDefaultChunks; 0 where the row is not whole
// chunks or does not fit (more than 8192 elements: every build holds 1024 chunks at most). Measured on an H200 (run
// 138, bf16, ms, 1 / 2 / 4 chunks a thread): the gated norm over 8192 x 5120 0.100 / 0.093 / 0.117 (4 was the choice
// before, as the fewest chunks on at most 256 threads), the add + RMSNorm over 16384 x 2560 with a float32 residual
// 0.147 / 0.133 / 0.131.
int rows_kernel_chunks(int64_t n, NormRows choice) {
    if (n <= 0 || n % kRowsChunk != 0) return 0;
    const int64_t chunks = n / kRowsChunk;
    int forced = 0;
    switch (choice) {
        case NormRows::Off: return 0;
        case NormRows::Chunks1: forced = 1; break;
        case NormRows::Chunks2: forced = 2; break;
        case NormRows::Chunks4: forced = 4; break;
        default: break;
    }
    if (forced > 0 && rows_fit(chunks, forced)) return forced;
    return rows_fit(chunks, kRowsDefaultChunks) ? kRowsDefaultChunks : 0;
}

// Whether a (rows, columns) tensor's rows are contiguous and each starts on a 16-byte boundary (whole chunks of
// columns then start on one too).
bool rows_aligned(const Tensor & t) {
    if (t.ndim != 2) return false;
    const int64_t elem = int64_t(dtype_size(t.dtype));
    return aligned16(t.data) && (t.shape[1] <= 1 || t.stride[1] == 1) && (t.shape[0] <= 1 || (t.stride[0] * elem) % 16 == 0);
}

bool vector_dtype(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }

// Whether the rows kernels can read a weight vector with 16-byte loads: contiguous and 16-byte aligned.
bool weight_aligned(const Tensor & w) { return (w.shape[0] <= 1 || w.stride[0] == 1) && aligned16(w.data); }

// Chunks a thread where a call of `blocks` blocks over rows (groups) of n elements takes the rows kernels (prefill-sized,
// not switched off, n whole chunks of a size they take), else 0.
int rows_kernels_plan(mamba_context & ctx, int64_t blocks, int64_t n, NormRows choice) {
    return blocks >= std::max(state_of(ctx).multiprocessors, 1) ? rows_kernel_chunks(n, choice) : 0;
}

template <class Args, class Kernel>
void launch_rows(mamba_context & ctx, const char * name, Kernel k1, Kernel k2, Kernel k4, int64_t n, int per, unsigned blocks, const Args & a) {
    const int64_t chunks = n / kRowsChunk;
    const int threads = int((ceil_div(chunks, int64_t(per)) + 31) / 32 * 32);
    launch_kernel(ctx, name, true, per == 1 ? k1 : per == 2 ? k2 : k4, dim3(blocks), dim3(threads), 0, a);
    MAMBA_CUDA_CHECK_LAUNCH(name);
}

// The gated rows kernel for T, where x, z, y and the weight all have that type.
template <class T>
void launch_gated_rows(mamba_context & ctx, int64_t n, int per, unsigned blocks, const GatedArgs & a) {
    launch_rows(ctx, "gated_rms_norm_rows_kernel", gated_rms_norm_rows_kernel<T, 1>, gated_rms_norm_rows_kernel<T, 2>, gated_rms_norm_rows_kernel<T, 4>, n,
                per, blocks, a);
}

template <class T, class R>
void launch_rms_rows(mamba_context & ctx, int64_t n, int per, unsigned blocks, const RmsNormArgs & a) {
    launch_rows(ctx, "rms_norm_rows_kernel", rms_norm_rows_kernel<T, R, 1>, rms_norm_rows_kernel<T, R, 2>, rms_norm_rows_kernel<T, R, 4>, n, per, blocks,
                a);
}

// Sends the call to the rows kernel of its types and returns true, or returns false where none applies.
bool try_gated_rows(mamba_context & ctx, const GatedRmsNormParams & p, const GatedArgs & a, int64_t blocks) {
    const NormRows choice = env_choice("MAMBA_CUDA_NORM_ROWS", kNormRows, NormRows::Auto);
    const DType t = p.x.dtype;
    if (!vector_dtype(t) || p.y.dtype != t || p.weight.dtype != t || (p.z && p.z->dtype != t)) return false;
    if (!rows_aligned(p.x) || !rows_aligned(p.y) || (p.z && !rows_aligned(*p.z))) return false;
    if (!weight_aligned(p.weight)) return false;
    const int per = rows_kernels_plan(ctx, blocks, a.group_size, choice);
    if (per == 0) return false;
    switch (t) {
        case DType::F16: launch_gated_rows<f16_t>(ctx, a.group_size, per, unsigned(blocks), a); break;
        case DType::BF16: launch_gated_rows<bf16_t>(ctx, a.group_size, per, unsigned(blocks), a); break;
        default: launch_gated_rows<float>(ctx, a.group_size, per, unsigned(blocks), a); break;
    }
    return true;
}

bool try_rms_rows(mamba_context & ctx, const RmsNormParams & p, const RmsNormArgs & a) {
    const NormRows choice = env_choice("MAMBA_CUDA_NORM_ROWS", kNormRows, NormRows::Auto);
    const DType t = p.x.dtype;
    if (!vector_dtype(t) || p.y.dtype != t || p.weight.dtype != t) return false;
    // The residual's type: that of residual and residual_out, which must agree where both are given.
    const Tensor * res = p.residual ? &*p.residual : p.residual_out ? &*p.residual_out : nullptr;
    const DType r = res ? res->dtype : t;
    if (r != t && r != DType::F32) return false;
    if ((p.residual && p.residual->dtype != r) || (p.residual_out && p.residual_out->dtype != r)) return false;
    if (!rows_aligned(p.x) || !rows_aligned(p.y) || (p.residual && !rows_aligned(*p.residual)) ||
        (p.residual_out && !rows_aligned(*p.residual_out)))
        return false;
    if (!weight_aligned(p.weight)) return false;
    const int per = rows_kernels_plan(ctx, p.rows, p.hidden, choice);
    if (per == 0) return false;
    const unsigned blocks = unsigned(p.rows);
    switch (t) {
        case DType::F16:
            if (r == DType::F32) launch_rms_rows<f16_t, float>(ctx, p.hidden, per, blocks, a);
            else launch_rms_rows<f16_t, f16_t>(ctx, p.hidden, per, blocks, a);
            break;
        case DType::BF16:
            if (r == DType::F32) launch_rms_rows<bf16_t, float>(ctx, p.hidden, per, blocks, a);
            else launch_rms_rows<bf16_t, bf16_t>(ctx, p.hidden, per, blocks, a);
            break;
        default: launch_rms_rows<float, float>(ctx, p.hidden, per, blocks, a); break;
    }
    return true;
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
    if (p.rows > 0 && try_rms_rows(ctx, p, a)) {
        // the rows kernel ran
    } else if (p.hidden > 0 && p.hidden <= kRegisterRowMax && p.rows > 0) {
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
    if (try_gated_rows(ctx, p, a, blocks)) {
        // the rows kernel ran
    } else if (a.group_size <= kRegisterRowMax) {
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
