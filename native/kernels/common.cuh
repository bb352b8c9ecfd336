// Shared pieces of the CUDA backend: the per-context state, error checks that turn CUDA and cuBLAS
// failures into mamba errors, typed element access for float32/float16/bfloat16, and launch helpers.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <vector>

#include "core/context.h"
#include "core/error.h"
#include "core/tensor.h"
#include "scan_math.h"

namespace mamba {

// What the early reads (launch.cuh, readable_before_wait) know of one stream: how much work has been queued
// on it (kernels, cuBLAS calls, copies, memsets, graph launches) and the byte ranges that the last op which
// recorded its outputs (note_writes) writes, with the count it saw. One per context's own stream, shared
// with every context that borrows that stream (mamba_context_set_stream), so that work queued through any
// of them counts.
struct StreamTrack {
    static constexpr int kMaxWriteRanges = 8;  // two ops' outputs (note_update_writes, launch.cuh)
    std::atomic<uint64_t> queued{0};
    uint64_t writes_at = ~uint64_t(0);  // nothing recorded
    int write_count = 0;
    const char * write_lo[kMaxWriteRanges] = {};
    const char * write_hi[kMaxWriteRanges] = {};
    void forget() { writes_at = ~uint64_t(0); }
};

// What a CUDA context owns. The stream may be borrowed from the caller (mamba_context_set_stream).
struct CudaState {
    cudaStream_t own_stream = nullptr;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    cublasLtHandle_t cublaslt = nullptr;
    void * workspace = nullptr;
    size_t workspace_bytes = 0;
    void * cublas_workspace = nullptr;  // fixed scratch for cuBLAS(Lt), separate from ours
    size_t cublas_workspace_bytes = 0;
    // First flat index of bad data a kernel met (e.g. an id out of range); all ones when none.
    unsigned long long * error_index = nullptr;
    // Bad data met by captured kernels (which cannot read back): error tag | flat index, all ones when
    // none; reported by the next synchronize or copy to the host. The host copy is page-locked.
    unsigned long long * deferred_error = nullptr;
    unsigned long long * deferred_error_host = nullptr;
    // Arrivals at the grid-wide barriers of kernels that run one block per SM (mamba1_step.cu): a count
    // that only grows, so that a barrier's target follows from the arrival itself and needs no reset.
    unsigned long long * grid_barrier = nullptr;
    // Where such kernels' blocks hand each other values without a barrier: 64-bit slots holding a value
    // and the launch's tag (a tag never used before, so no reset), zeroed once. Allocated with the
    // barrier count on devices that run those kernels (compute capability 9.0+), empty elsewhere.
    unsigned long long * grid_exchange = nullptr;
    size_t grid_exchange_slots = 0;
    // x_proj's sums when it is folded into the Mamba-1 step's in_proj (step_xproj.cuh): kXProjSumsCapacity float64
    // sums, then the state update's arrival count; zero between steps, which the state update's last block
    // restores. Dirty: a step queued the in_proj that adds into them but not the state update that zeroes them
    // (a launch failed in between), so the next such step clears them first.
    static constexpr int64_t kXProjSumsCapacity = 16384;  // 128 KB: 8 replicas of 2048 sums
    static constexpr size_t kXProjSumsBytes = (kXProjSumsCapacity + 1) * sizeof(double);  // the sums, then the count
    double * xproj_sums = nullptr;
    bool xproj_sums_dirty = false;
    // Batched decode's x_proj sums (conv_xproj_step.cu): each cluster of the conv step's blocks stores its sums of every
    // row's outputs there (no atomics, every value written each step), and the state update adds the clusters' values.
    static constexpr int64_t kXProjPartialsCapacity = 65536;  // 512 KB: 16 rows x 8 clusters x 512 outputs
    double * xproj_partials = nullptr;
    // The decode GEMVs' L2 priority for W when MAMBA_CUDA_GEMV_EVICT is unset (gemv.cu): evict-first while
    // an op that measured faster with it runs its projections (the Mamba-1 step; gemv.cuh's
    // EvictFirstWeights), evict-normal otherwise.
    bool weights_evict_first = false;
    // Graph capture: whether mamba_graph_capture_begin is recording, and how many graphs exist (their
    // kernels hold workspace addresses, so a growing workspace keeps the old buffers until they go).
    bool capturing = false;
    int live_graphs = 0;
    std::vector<void *> retired_workspaces;
    int multiprocessors = 0;
    int max_smem_per_block = 0;
    int cc_major = 0, cc_minor = 0;
    // Kernels marked PDL-safe launch with Programmatic Dependent Launch (launch.cuh): compute
    // capability 9.0+ and MAMBA_CUDA_PDL not "0" when the context was created.
    bool pdl = false;
    // Early reads (launch.cuh, readable_before_wait): MAMBA_CUDA_EARLY_WEIGHTS not "0" when the context
    // was created. own_track follows the own stream; track is the one of `stream`: own_track, the lending
    // context's where `stream` is another live context's own stream, none on any other stream.
    bool early_weights = false;
    std::shared_ptr<StreamTrack> own_track, track;
    // MAMBA_CUDA_TRACE=1 when the context was created: launch_kernel times every kernel it launches
    // on its own (synchronizing; never inside a capture) and prints the time to stderr.
    bool trace = false;
    // L2 prefetch (l2_prefetch.cu, mamba_prefetch_l2): how lines are fetched and by how many blocks
    // (MAMBA_CUDA_L2_PREFETCH and MAMBA_CUDA_L2_PREFETCH_BLOCKS when the context was created). The kernels
    // run on prefetch_stream, forked from `stream` by prefetch_fork; prefetch_join marks the end of the
    // last one. pending: a prefetch not yet joined back into `stream`; pending_captured: it was forked
    // inside this context's graph capture (its join must land in that capture).
    int l2_prefetch_mode = 0;  // L2PrefetchMode as int; 0 = off
    int l2_prefetch_blocks = 16;
    cudaStream_t prefetch_stream = nullptr;
    cudaEvent_t prefetch_fork = nullptr;
    cudaEvent_t prefetch_join = nullptr;
    uint32_t * prefetch_sink = nullptr;  // a scratch word the "load" mode may write (never read)
    bool prefetch_pending = false;
    bool prefetch_pending_captured = false;
};

namespace cuda {

[[noreturn]] void fail_cuda(cudaError_t err, const char * what, const char * file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t st, const char * what, const char * file, int line);

inline cudaStream_t stream_of(const mamba_context & ctx) { return ctx.cuda->stream; }

// Counts work queued on the context's stream: every kernel launch, cuBLAS call, copy, memset and graph
// launch of the ops, so that a record of an op's outputs (note_writes, launch.cuh) is trusted only while
// that op is the last work queued. (Reads of the error words, each followed by a synchronization, are not
// counted: nothing an op reads is written there.)
inline void count_queued(mamba_context & ctx) {
    if (StreamTrack * t = ctx.cuda->track.get()) t->queued.fetch_add(1);
}

// Drops the stream's record (launch.cuh): the next op loads nothing before its wait.
inline void forget_writes(mamba_context & ctx) {
    if (StreamTrack * t = ctx.cuda->track.get()) t->forget();
}

constexpr unsigned long long kNoErrorIndex = ~0ull;
// Waits for the stream, then returns and resets the first bad index reported by kernels (kNoErrorIndex
// when none): data checks that only the device can make end in an error status this way.
unsigned long long take_error_index(mamba_context & ctx);
// Reads one int32/int64 element of a device tensor (for error messages).
int64_t read_device_int(mamba_context & ctx, const Tensor & t, int64_t element_offset);
inline const CudaState & state_of(const mamba_context & ctx) { return *ctx.cuda; }

// True while the context's stream is being captured into a graph (by libmamba or by the caller): no
// host synchronization and no allocation is allowed then.
bool stream_capturing(const mamba_context & ctx);
// Which op left a deferred error; the top byte of the deferred word, so that atomicMin keeps one.
enum class DeferredError : unsigned long long { Embedding = 1, SampleHistory = 2 };
constexpr unsigned long long deferred_tag(DeferredError e) { return static_cast<unsigned long long>(e) << 56; }
constexpr unsigned long long kDeferredIndexMask = (1ull << 56) - 1;
// Where a kernel reports bad data: the eager error word (read back by take_error_index) or, while
// capturing, the deferred word with the op's tag (`tag` is 0 for the eager word).
unsigned long long * error_slot(mamba_context & ctx, DeferredError op, unsigned long long & tag);
// Throws INVALID_ARGUMENT when captured work has reported bad data. Needs the stream to have finished
// the copy queued by queue_deferred_error_read.
void queue_deferred_error_read(mamba_context & ctx);
void report_deferred_error(mamba_context & ctx);

// L2 prefetch side stream (l2_prefetch.cu). Read before anything is allocated at context creation
// (a bad environment value then leaves nothing to free), then create the stream and events when on.
void read_l2_prefetch_settings(CudaState & s);
void create_l2_prefetch_stream(CudaState & s);
void destroy_l2_prefetch_stream(CudaState & s) noexcept;
// Makes the context's stream wait for the prefetches queued so far (a no-op when none is pending).
// Called before every point where the stream's work must be complete or self-contained: synchronize,
// copies to the host, event records, stream changes, frees, graph capture begin and end.
void join_l2_prefetch(mamba_context & ctx);
// The same for a capture that failed: joins a prefetch forked inside it, ignoring errors.
void join_l2_prefetch_for_abandon(mamba_context & ctx) noexcept;

// Splits one context workspace into several aligned buffers: add() the sizes, then take().
class WorkspaceCarver {
public:
    size_t add(size_t bytes) {
        const size_t off = total_;
        total_ += (bytes + 255) / 256 * 256;
        return off;
    }
    char * take(mamba_context & ctx) { return total_ == 0 ? nullptr : static_cast<char *>(workspace(ctx, total_)); }

private:
    size_t total_ = 0;
};

}  // namespace cuda
}  // namespace mamba

#define MAMBA_CUDA_CHECK(expr)                                                                    \
    do {                                                                                          \
        const cudaError_t err_ = (expr);                                                          \
        if (err_ != cudaSuccess) ::mamba::cuda::fail_cuda(err_, #expr, __FILE__, __LINE__);      \
    } while (0)

#define MAMBA_CUBLAS_CHECK(expr)                                                                  \
    do {                                                                                          \
        const cublasStatus_t st_ = (expr);                                                        \
        if (st_ != CUBLAS_STATUS_SUCCESS) ::mamba::cuda::fail_cublas(st_, #expr, __FILE__, __LINE__); \
    } while (0)

// Every launch is followed by this: configuration errors surface at once, named by the kernel.
#define MAMBA_CUDA_CHECK_LAUNCH(name) MAMBA_CUDA_CHECK(cudaGetLastError())

namespace mamba::cuda {

// ---- element access ----------------------------------------------------------------------------

// Stored element types as the kernels see them.
using bf16_t = __nv_bfloat16;
using f16_t = __half;

template <class T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_f32<bf16_t>(bf16_t v) { return __bfloat162float(v); }
template <>
__device__ __forceinline__ float to_f32<f16_t>(f16_t v) { return __half2float(v); }

template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16_t from_f32<bf16_t>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ f16_t from_f32<f16_t>(float v) { return __float2half_rn(v); }

// A float tensor whose dtype is known only at run time: one uniform branch per access. Used where
// an op is not worth instantiating for every dtype combination.
// load() keeps the branch down to the choice of a 2- or a 4-byte load (a diamond the compiler predicates)
// and converts afterwards with selects. Converting inside each dtype's branch made every load wait for its
// data before the next branch: a kernel's run of loads (a conv step's state, input and weights) then
// cost one memory round trip each instead of one for all.
struct AnyPtr {
    char * p = nullptr;
    int dtype = 0;  // DType as int

    __device__ __forceinline__ float load(int64_t i) const {
        const bool wide = dtype != int(DType::F16) && dtype != int(DType::BF16);
        uint32_t bits;
        if (wide) bits = reinterpret_cast<const uint32_t *>(p)[i];
        else bits = reinterpret_cast<const uint16_t *>(p)[i];
        const float as_bf16 = __uint_as_float(bits << 16);
        const float as_f16 = __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
        return wide ? __uint_as_float(bits) : (dtype == int(DType::BF16) ? as_bf16 : as_f16);
    }
    // v as this dtype holds it (what a store followed by a load would give).
    __device__ __forceinline__ float rounded(float v) const {
        switch (dtype) {
            case int(DType::F16): return __half2float(__float2half_rn(v));
            case int(DType::BF16): return __bfloat162float(__float2bfloat16_rn(v));
            default: return v;
        }
    }
    __device__ __forceinline__ void store(int64_t i, float v) const {
        switch (dtype) {
            case int(DType::F16): reinterpret_cast<f16_t *>(p)[i] = __float2half_rn(v); break;
            case int(DType::BF16): reinterpret_cast<bf16_t *>(p)[i] = __float2bfloat16_rn(v); break;
            default: reinterpret_cast<float *>(p)[i] = v; break;
        }
    }
};

inline AnyPtr any(const Tensor & t) { return AnyPtr{t.data, int(t.dtype)}; }
inline AnyPtr any(const std::optional<Tensor> & t) { return t ? any(*t) : AnyPtr{}; }

// Whether a pointer allows 16-byte vector loads and stores (the host checks that pick the vector builds).
inline bool aligned16(const void * p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// The first N strides of t, in the fixed-size arrays the kernel argument structs carry.
template <int N>
void copy_strides(int64_t (&dst)[N], const Tensor & t) {
    for (int i = 0; i < N; ++i) dst[i] = t.stride[i];
}

// Loads K consecutive elements starting at p (16-byte aligned when vec is true) as floats.
template <class T, int K>
__device__ __forceinline__ void load_floats(const T * p, float (&out)[K], bool vec) {
    constexpr int kBytes = K * int(sizeof(T));
    if (vec && kBytes % 16 == 0) {
#pragma unroll
        for (int c = 0; c < kBytes / 16; ++c) {
            const uint4 raw = reinterpret_cast<const uint4 *>(p)[c];
            const T * e = reinterpret_cast<const T *>(&raw);
#pragma unroll
            for (int i = 0; i < 16 / int(sizeof(T)); ++i) out[c * (16 / int(sizeof(T))) + i] = to_f32<T>(e[i]);
        }
    } else {
#pragma unroll
        for (int i = 0; i < K; ++i) out[i] = to_f32<T>(p[i]);
    }
}

template <class T, int K>
__device__ __forceinline__ void store_floats(T * p, const float (&in)[K], bool vec) {
    constexpr int kBytes = K * int(sizeof(T));
    if (vec && kBytes % 16 == 0) {
#pragma unroll
        for (int c = 0; c < kBytes / 16; ++c) {
            uint4 raw;
            T * e = reinterpret_cast<T *>(&raw);
#pragma unroll
            for (int i = 0; i < 16 / int(sizeof(T)); ++i) e[i] = from_f32<T>(in[c * (16 / int(sizeof(T))) + i]);
            reinterpret_cast<uint4 *>(p)[c] = raw;
        }
    } else {
#pragma unroll
        for (int i = 0; i < K; ++i) p[i] = from_f32<T>(in[i]);
    }
}

// ---- math --------------------------------------------------------------------------------------

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + __expf(-x)); }
constexpr float kLog2e = 1.4426950408889634f;

// 2^x on the MUFU (ex2.approx.ftz: denormal results flush to zero).
__device__ __forceinline__ float ex2_mufu(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// softplus(x) = max(x, 0) + log1p(exp(-|x|)) without a branch, so that the compiler can interleave
// independent ones: two MUFU ops (exp2, a reciprocal) and the log1p as a series on the FMA pipe
// (scan_math.h). Every kernel's softplus (dt of the scans, the state updates, the SSD and
// mamba_linear_softplus's epilogue).
__device__ __forceinline__ float softplus_mufu(float x) { return fmaxf(x, 0.0f) + scan_math::log1p_unit(ex2_mufu(-fabsf(x) * kLog2e)); }

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of up to 1024 threads; every thread gets the result. `scratch` holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float * scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read from a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float * scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : -INFINITY;
    return warp_max(v);
}

// ---- cp.async: 16-byte global -> shared copies that bypass registers (sm_80+) ----
// A thread issues copies, commits them as a group, and waits for its groups before the block reads the
// data (after a __syncthreads). Below sm_80 the copy is a plain load and store and the rest no-ops.

// 16-byte global -> shared copy, asynchronous on sm_80+; fill == false writes zeros and reads nothing.
__device__ __forceinline__ void cp_async_16(void * smem, const void * gmem, bool fill) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned dst = unsigned(__cvta_generic_to_shared(smem));
    const int src_bytes = fill ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes) : "memory");
#else
    *reinterpret_cast<uint4 *>(smem) = fill ? *reinterpret_cast<const uint4 *>(gmem) : make_uint4(0, 0, 0, 0);
#endif
}
// The same with an L2 cache policy (l2_policy below) and the first src_bytes (0..16) of the source read, the rest
// of the 16 bytes zeros.
__device__ __forceinline__ void cp_async_16_hinted(void * smem, const void * gmem, int src_bytes, uint64_t policy) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned dst = unsigned(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes), "l"(policy) : "memory");
#else
    unsigned char * d = static_cast<unsigned char *>(smem);
    const unsigned char * s = static_cast<const unsigned char *>(gmem);
    for (int i = 0; i < 16; ++i) d[i] = i < src_bytes ? s[i] : 0;
    (void)policy;
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// Waits for every committed group of this thread.
__device__ __forceinline__ void cp_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}
// Waits until at most kPending of this thread's latest commit groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait_group() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
#endif
}

// ---- L2 cache policies (sm_80+), for the .L2::cache_hint forms of loads, copies and prefetches ----
enum class L2Evict { First, Normal, Last };

// A policy covering every access it is given (fraction 1.0), made by one createpolicy instruction. Below
// sm_80 it is 0 and never used.
template <L2Evict kPriority>
__device__ __forceinline__ uint64_t l2_policy() {
    uint64_t policy = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (kPriority == L2Evict::First) asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    else if constexpr (kPriority == L2Evict::Normal) asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(policy));
    else asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
#endif
    return policy;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Copies src into dst (any strides and float/int dtypes) on the context's stream; used to stage
// inputs into the layout a fast kernel wants.
void copy_tensor(mamba_context & ctx, const Tensor & src, const Tensor & dst);
// A contiguous view of `bytes` at `data` with the given shape and dtype.
Tensor contiguous_view(char * data, DType dtype, std::initializer_list<int64_t> shape);
Tensor contiguous_like(char * data, DType dtype, const Tensor & t);

}  // namespace mamba::cuda
