// A Mamba-1 mixer's decode step at batch 1 in one kernel (mamba_mamba1_step with
// MAMBA_CUDA_MAMBA1_STEP=fused, or =auto where it can run): in_proj with the conv step, x_proj, the state
// update with dt_proj inside, out_proj. Opt-in: measured a few percent slower than the four kernels it
// replaces (below), so the op runs those by default.
//
// The idea: as five kernels (the norm, in_proj + conv, x_proj, the state update, out_proj) a mamba-2.8b
// layer takes about 34 us on an H200 against the 20 us its 82.5 MB of weights take to stream at copy
// bandwidth; between the GEMVs HBM idles while the small kernels wait on each other's round trips. Here
// the weights never wait for the activations: one loader warp per block streams the block's rows of
// in_proj, then of out_proj, into a ring of shared-memory stages (bulk copies, TMA, where the compiler has
// them; 16-byte cp.async otherwise) as fast as the ring frees up, while the compute warps run the serial
// part (conv, x_proj, state update) and pass one grid-wide barrier.
//
// Bytes (mamba-2.8b, bf16): in_proj 2*inner*hidden*2 = 52.4 MB, out_proj hidden*inner*2 = 26.2 MB,
// x_proj (rank+2*dstate)*inner*2 = 2.0 MB, dt_proj inner*rank*2 = 1.6 MB, A and the state
// inner*dstate*4 = 0.33 MB each (the state read and written), plus vectors; FLOPs: 2 per weight element,
// 6 per state element. All of it is read once per step.
//
// Layout: one block per SM, launched cooperatively (the exchange and the barrier need every block resident
// at once). Block b owns
// - the channels [c0, c1) (groups of 8, so that its x_proj columns start 16-byte aligned): their in_proj
//   rows (x and z halves), conv step, x_proj columns (a partial sum of every x_proj output over its
//   channels) and state update;
// - the outputs [h0, h1) = [b*hidden/G, (b+1)*hidden/G) of out_proj.
// Phases: stage the per-channel operands and x -> stream in_proj rows -> conv step -> x_proj partials
// into the context's tagged exchange slots -> block b sums outputs b, b + G, ... in a fixed order (so the
// result does not depend on timing) and hands the sums back the same way -> dt, state update, y_inner out
// -> grid barrier -> every block reads y_inner -> the rest of out_proj's rows -> y; the new states last.
// A stage is 10 KB of whole weight rows (2 of in_proj's, 1 of out_proj's at mamba-2.8b) and one compute
// warp's work (stage s is warp s % 8's), sixteen in the ring.
//
// Measured (H200, mamba-2.8b, bf16, the 8-layer chain of RMSNorm + step in a graph; docs/gpu-results.md
// runs 51-64): 0.358 ms when every warp took a piece of every stage (run 58) against 0.275 for the four
// kernels; 0.2875-0.3069 now (runs 62-63, each run on another GPU; the four kernels 0.2756-0.2780 in the
// same runs); the weights' evict-first hint is in those figures from run 64 (0.2914 against 0.3042 without
// it, the four kernels 0.2764). A per-block timeline (MAMBA_CUDA_MAMBA1_STEP_TIMELINE=1, direct calls, run 62; us from the
// first block's start, means over blocks): operands and x staged 5.0, in_proj consumed 15.1 (warp 0 waits
// for stages ~58% of that phase: streaming-bound), x_proj partials 18.2, sums 22.5, xdbl 23.9, dt 24.5,
// state update 25.3, barrier 26.3, y_inner 27.0, out_proj done 31.7 (warp 0 busy, not waiting, 6700
// cycles for its 3 rows: compute-bound, 8 warps an SM with little to overlap). So what is
// left is latency: ~12 us of serial phases a layer against ~6 us of out_proj streaming to hide them,
// and the staging at the start.
#include <algorithm>
#include <cstdio>
#include <iterator>
#include <string>
#include <type_traits>
#include <vector>

#include "common.cuh"
#include "gemv.cuh"
#include "launch.cuh"
#include "step_pre_norm.cuh"
#include "step_xproj.cuh"

#include "core/env_choice.h"
#include "ops/mamba1_step.h"

namespace mamba::cuda {

namespace {

struct Mamba1StepTraits {
    static constexpr int kComputeWarps = 8;
    static constexpr int kComputeThreads = kComputeWarps * 32;
    static constexpr int kThreads = kComputeThreads + 32;  // + the loader warp
    // A stage is one warp's work: 2 in_proj rows or 1 out_proj row of mamba-2.8b. Twice as many stages as
    // compute warps, so that each warp's next stage loads while it works on the current one.
    static constexpr int kStageBytes = 10240;
    static constexpr int kMaxStages = 16;
    static constexpr int kMinStages = 2;
    static constexpr int kMaxWidth = 4;       // conv filter taps
    static constexpr int kConvSlots = 8;      // a channel's conv operands: width-1 state, width taps, bias
    static constexpr int kConvItems = 4;      // conv operands a compute thread loads (so <= 128 channels a block)
    static constexpr int kDtLanes = 4;        // lanes a channel's dt (its dt_proj row)
    static constexpr int kMaxLanes = 32;      // lanes per channel in the state update (dstate <= 128)
    static constexpr int64_t kMaxFeatures = kStageBytes / 2;  // a 16-bit row must fit in a stage
    static constexpr int kXRegs = 10;         // x vectors (8 floats each) a lane holds in registers
    static constexpr int kTailVectors = 5;    // weight vectors a lane loads at once past those
    static constexpr int kMaxQ = 1024;        // x_proj outputs (rank + 2 dstate) the exchange has room for
    static constexpr int kStamps = 20;        // timeline stamps a block (MAMBA_CUDA_MAMBA1_STEP_TIMELINE)
    static constexpr int kPrimeStages = 6;    // stages the loader issues before x is staged
};
using Tr = Mamba1StepTraits;

struct StepArgs {
    const char * x;
    int64_t x_s;
    const char * w_in;
    const char * b_in;
    int64_t b_in_s;
    char * conv_state;
    int64_t cs_d, cs_k;
    const char * conv_w;
    int64_t cw_d, cw_k;
    const char * conv_b;
    int64_t cb_s;
    const char * w_x;   // (q, inner), contiguous
    const char * w_dt;  // (inner, rank), contiguous, 16-byte aligned
    const float * dt_bias;
    int64_t dtb_s;
    const float * A;
    int64_t A_d, A_n;
    const float * D;
    int64_t D_s;
    float * state;
    int64_t st_d, st_n;
    const char * w_out;
    const char * b_out;
    int64_t b_out_s;
    char * y;
    int64_t y_s;
    char * y_inner;     // (inner), contiguous, 16-byte aligned: the blocks' exchange of the update's output
    // The context's exchange slots (tagged values): block b's partial sum of x_proj output q at
    // [q * grid + b], the sum of output q at [kMaxQ * grid + q].
    unsigned long long * exchange;
    unsigned long long * barrier;
    unsigned long long * timeline;   // kStamps globaltimer readings a block, or null
    int hidden, inner, rank, dstate, width, q;
    int rows_in, rows_out;           // weight rows per stage
    int stages;                      // ring stages
    int max_channels, max_outputs;   // per block, for the shared-memory layout
    int lanes;                       // lanes per channel in the state update
    int x_half;                      // float4s from the low halves of x's 8-element vectors to the high ones
    int pace;                        // out_proj stages in flight at most (0: as many as the ring frees)
    bool evict_first;                // the weights' lines marked to leave L2 first
    bool early;                      // weights and per-channel operands load before the PDL wait
    bool contiguous_state;           // A and the state (inner, dstate) rows dense: copied in 16-byte pieces
    bool x_vec;                      // x unit-stride and 16-byte aligned: loaded 8 elements at a time
    // Byte offsets into dynamic shared memory.
    int off_ring, off_vec, off_part, off_xc, off_z, off_xdbl, off_dt, off_conv, off_A, off_st, off_D, off_dtb, off_wdt, off_wx;
};

__device__ __forceinline__ int range_begin(int n, int b, int G) { return int(int64_t(n) * b / G); }

__device__ __forceinline__ uint32_t smem_u32(const void * p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void mbar_init(uint64_t * bar, unsigned count) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t * bar) {
    asm volatile("{\n\t.reg .b64 state;\n\tmbarrier.arrive.shared.b64 state, [%0];\n\t}" ::"r"(smem_u32(bar)) : "memory");
}

// Spins until the phase of `bar` with the given parity has completed.
__device__ __forceinline__ void mbar_wait(uint64_t * bar, unsigned parity) {
    uint32_t done = 0;
    do {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        asm volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared.b64 p, [%1], %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
                     : "=r"(done)
                     : "r"(smem_u32(bar)), "r"(parity)
                     : "memory");
#else
        asm volatile("{\n\t.reg .pred p;\n\tmbarrier.test_wait.parity.shared.b64 p, [%1], %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
                     : "=r"(done)
                     : "r"(smem_u32(bar)), "r"(parity)
                     : "memory");
#endif
    } while (!done);
}

// The loader's copies: one bulk (TMA) copy a stage where the compiler knows the instruction (PTX 8.0, CUDA 12),
// completing the stage's mbarrier by its byte count; else 16-byte cp.async by the loader's 32 lanes, each
// lane arriving once its copies have landed.
#if defined(__CUDACC_VER_MAJOR__) && __CUDACC_VER_MAJOR__ >= 12
constexpr bool kBulkCopy = true;
#else
constexpr bool kBulkCopy = false;
#endif

// With `evict_first`, the copy's lines leave L2 before others: a step streams every weight once, and
// without the hint those lines push out what the step reads again soon (its code, x, the exchange slots,
// the states) and the next layers' small kernels' data.
__device__ __forceinline__ void bulk_copy(void * dst, const void * src, uint32_t bytes, uint64_t * bar, bool evict_first, uint64_t policy) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDACC_VER_MAJOR__) && __CUDACC_VER_MAJOR__ >= 12
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
    if (evict_first)
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(smem_u32(dst)),
                     "l"(src), "r"(bytes), "r"(smem_u32(bar)), "l"(policy)
                     : "memory");
    else
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_u32(dst)), "l"(src), "r"(bytes),
                     "r"(smem_u32(bar))
                     : "memory");
#else
    (void)dst, (void)src, (void)bytes, (void)bar, (void)evict_first, (void)policy;
    __trap();  // never launched: the host plans the kernel for compute capability 9.0 only
#endif
}

// Orders this thread's view of the generic-proxy accesses to shared memory it has acquired (the compute warps'
// reads of a slot, released by their arrival on its empty barrier) before its next async-proxy access (the bulk
// copy that refills the slot): the PTX memory model puts the two proxies' accesses in no order without it.
__device__ __forceinline__ void fence_proxy_async_shared() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDACC_VER_MAJOR__) && __CUDACC_VER_MAJOR__ >= 12
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

__device__ __forceinline__ void mbar_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDACC_VER_MAJOR__) && __CUDACC_VER_MAJOR__ >= 12
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

// The mbarrier's pending count drops by one when this thread's earlier cp.async copies have landed.
__device__ __forceinline__ void arrive_when_copied(uint64_t * bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];" ::"r"(smem_u32(bar)) : "memory");
}

// Waits for all of this thread's cp.async copies (common.cuh's, 16 bytes through L2 only).
__device__ __forceinline__ void wait_all_copies() {
    cp_async_commit();
    cp_async_wait_all();
}

// Copies `count` 16-byte chunks from src to dst with the compute threads' cp.async.
__device__ __forceinline__ void copy_chunks(void * dst, const void * src, int count, int tid) {
    for (int i = tid; i < count; i += Tr::kComputeThreads) cp_async_16(static_cast<uint4 *>(dst) + i, static_cast<const uint4 *>(src) + i, true);
}

// The compute warps' own barrier (the loader warp never joins it).
__device__ __forceinline__ void compute_sync() { asm volatile("bar.sync 1, %0;" ::"n"(Tr::kComputeThreads) : "memory"); }

// The loader waits (barrier 2, every thread of the block) until each compute thread has issued its
// operand loads.
__device__ __forceinline__ void operands_issued_arrive() { asm volatile("bar.arrive 2, %0;" ::"n"(Tr::kThreads) : "memory"); }
__device__ __forceinline__ void operands_issued_sync() { asm volatile("bar.sync 2, %0;" ::"n"(Tr::kThreads) : "memory"); }

// After its first kPrimeStages the loader waits (barrier 3) until x is staged: the compute warps' loads of x
// (issued after the PDL wait) would otherwise queue behind the whole ring of weights.
__device__ __forceinline__ void staged_arrive() { asm volatile("bar.arrive 3, %0;" ::"n"(Tr::kThreads) : "memory"); }
__device__ __forceinline__ void staged_sync() { asm volatile("bar.sync 3, %0;" ::"n"(Tr::kThreads) : "memory"); }

__device__ __forceinline__ unsigned long long load_acquire(const unsigned long long * p) {
    unsigned long long v;
    asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ unsigned long long load_relaxed(const unsigned long long * p) {
    unsigned long long v;
    asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void store_relaxed(unsigned long long * p, unsigned long long v) {
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// A wait on other blocks gives up after 4 s: a grid that cannot all be resident would spin for ever, and a
// trap becomes a device error at the next synchronization instead of a hang.
__device__ __forceinline__ void trap_after_4s(unsigned long long start) {
    if (global_ns() - start > 4000000000ull) __trap();
}

// A value handed between blocks in one 64-bit store: the launch's tag above the float's bits, so a reader
// knows a fresh value from an earlier launch's without a barrier.
__device__ __forceinline__ unsigned long long tagged(unsigned tag, float v) { return (static_cast<unsigned long long>(tag) << 32) | __float_as_uint(v); }
__device__ __forceinline__ bool has_tag(unsigned long long w, unsigned tag) { return unsigned(w >> 32) == tag; }

// Every compute thread of every block waits here until all G blocks have arrived; writes before it are
// visible to loads after it (made with __ldcg: L1 is not coherent): the block barrier orders its threads'
// writes before thread 0's release, and thread 0's acquire before the others' loads. The count only
// grows, so the target is the next multiple of G above the arrival.
__device__ __forceinline__ void grid_barrier(unsigned long long * count, unsigned G) {
    compute_sync();
    if (threadIdx.x == 0) {
        unsigned long long arrival;
        asm volatile("atom.add.release.gpu.global.u64 %0, [%1], 1;" : "=l"(arrival) : "l"(count) : "memory");
        const unsigned long long target = (arrival / G + 1) * G;
        const unsigned long long start = global_ns();
        while (load_acquire(count) < target) trap_after_4s(start);
    }
    compute_sync();
}

// The 8 16-bit values of a 16-byte vector as float32 (bfloat16: one shift or mask each).
template <class T>
__device__ __forceinline__ void unpack8(const uint4 & w, float (&e)[8]) {
    const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if constexpr (std::is_same_v<T, bf16_t>) {
            e[2 * i] = __uint_as_float(u[i] << 16);
            e[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
        } else {
            const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&u[i]));
            e[2 * i] = f.x;
            e[2 * i + 1] = f.y;
        }
    }
}

template <class T>
__device__ __forceinline__ float round_to(float v) {
    return to_f32<T>(from_f32<T>(v));
}

// Stage s of a block's stream: in_proj's x rows, its z rows, out_proj's rows, each cut in stages of
// `rows` rows (the last one may carry fewer).
struct Stage {
    const char * src;
    int features;   // the row length
    int rows;       // rows per stage of this matrix
    int count;      // rows in this stage
    int part_row;   // this stage's first row among the block's partial-sum rows
};

__device__ __forceinline__ Stage stage_of(const StepArgs & a, int s, int c0, int nc, int h0, int nh, int n_in) {
    Stage st;
    if (s < 2 * n_in) {
        const bool z = s >= n_in;
        const int t = z ? s - n_in : s;
        const int first = t * a.rows_in;
        st.features = a.hidden;
        st.rows = a.rows_in;
        st.count = min(a.rows_in, nc - first);
        st.part_row = (z ? nc : 0) + first;
        st.src = a.w_in + (int64_t(z ? a.inner : 0) + c0 + first) * a.hidden * 2;
    } else {
        const int first = (s - 2 * n_in) * a.rows_out;
        st.features = a.inner;
        st.rows = a.rows_out;
        st.count = min(a.rows_out, nh - first);
        st.part_row = 2 * nc + first;
        st.src = a.w_out + (int64_t(h0) + first) * a.inner * 2;
    }
    return st;
}

// 8 weights (one 16-byte vector) against 8 floats of x, into two accumulators (two FMA chains).
template <class T>
__device__ __forceinline__ void dot8(const uint4 & w, const float4 & xa, const float4 & xb, float & acc0, float & acc1) {
    float e[8];
    unpack8<T>(w, e);
    acc0 = fmaf(e[0], xa.x, acc0);
    acc1 = fmaf(e[1], xa.y, acc1);
    acc0 = fmaf(e[2], xa.z, acc0);
    acc1 = fmaf(e[3], xa.w, acc1);
    acc0 = fmaf(e[4], xb.x, acc0);
    acc1 = fmaf(e[5], xb.y, acc1);
    acc0 = fmaf(e[6], xb.z, acc0);
    acc1 = fmaf(e[7], xb.w, acc1);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// One weight row of `vr` 16-byte vectors in shared memory against x, by one warp: a lane takes the vectors
// lane + 32 j, the first kXRegs of them against x held in registers (xr), the rest against x read from
// shared memory (xlo, xhi: the first and last 4 floats of each 8, apart, so that a warp's loads are
// 16 bytes a lane side by side, free of bank conflicts). Every load of a group is issued before its FMAs: with a bounds branch around each load (runs
// 51-59) a warp waited out a shared-memory round trip per vector. kWhole: the row has at least
// 32 kXRegs vectors, so the register part needs no bounds; otherwise the loads are clamped to the row and
// the vectors past it count as zero.
template <class T, bool kWhole>
__device__ __forceinline__ float row_dot(const uint4 * wv, int vr, const float4 (&xr)[Tr::kXRegs][2], const float4 * xlo, const float4 * xhi, int lane) {
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
    float acc0 = 0.0f, acc1 = 0.0f;
    uint4 w[Tr::kXRegs];
#pragma unroll
    for (int j = 0; j < Tr::kXRegs; ++j) {
        const int v = lane + 32 * j;
        if constexpr (kWhole) {
            w[j] = wv[v];
        } else {
            w[j] = wv[min(v, vr - 1)];
            if (v >= vr) w[j] = zero;
        }
    }
#pragma unroll
    for (int j = 0; j < Tr::kXRegs; ++j) dot8<T>(w[j], xr[j][0], xr[j][1], acc0, acc1);
    if constexpr (kWhole) {
        for (int v0 = lane + 32 * Tr::kXRegs; v0 < vr; v0 += 32 * Tr::kTailVectors) {
            uint4 wt[Tr::kTailVectors];
            float4 xa[Tr::kTailVectors], xb[Tr::kTailVectors];
#pragma unroll
            for (int t = 0; t < Tr::kTailVectors; ++t) {
                const int v = min(v0 + 32 * t, vr - 1);
                wt[t] = wv[v];
                xa[t] = xlo[v];
                xb[t] = xhi[v];
                if (v0 + 32 * t >= vr) wt[t] = zero;
            }
#pragma unroll
            for (int t = 0; t < Tr::kTailVectors; ++t) dot8<T>(wt[t], xa[t], xb[t], acc0, acc1);
        }
    }
    return warp_sum(acc0 + acc1);
}

template <class T>
__global__ void __launch_bounds__(Tr::kThreads, 1) mamba1_step_kernel(StepArgs a) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ unsigned tag_s;
    uint64_t * full = reinterpret_cast<uint64_t *>(smem);
    uint64_t * empty = full + Tr::kMaxStages;
    const int G = int(gridDim.x), b = int(blockIdx.x);
    // Timeline stamps (MAMBA_CUDA_MAMBA1_STEP_TIMELINE; the indices are report_timeline's names): kept in
    // shared memory and written out at the end, so that no store waits in the phases they time.
    __shared__ unsigned long long stamp_s[Tr::kStamps];
    const auto stamp = [&](int i) {
        if (a.timeline) stamp_s[i] = global_ns();
    };
    const auto write_stamps = [&](int first, int last) {
        if (a.timeline)
            for (int i = first; i < last; ++i) a.timeline[size_t(b) * Tr::kStamps + i] = stamp_s[i];
    };
    // Zeroed first: a block with no out_proj row never reaches some stamps, and report_timeline leaves zeros out.
    if (a.timeline && threadIdx.x < Tr::kStamps) stamp_s[threadIdx.x] = 0;
    if (threadIdx.x == 0) stamp(0);
    // Channels in groups of 8, so that the block's x_proj columns start 16-byte aligned.
    const int c0 = 8 * range_begin(a.inner / 8, b, G), nc = 8 * range_begin(a.inner / 8, b + 1, G) - c0;
    const int h0 = range_begin(a.hidden, b, G), nh = range_begin(a.hidden, b + 1, G) - h0;
    const int n_in = (nc + a.rows_in - 1) / a.rows_in;
    const int n_out = (nh + a.rows_out - 1) / a.rows_out;
    const int total = 2 * n_in + n_out;
    const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
    if (threadIdx.x == 0) {
        for (int i = 0; i < a.stages; ++i) {
            mbar_init(&full[i], kBulkCopy ? 1 : 32);  // the bulk copy's arrival, or the loader's 32 lanes
            mbar_init(&empty[i], 32);                 // the stage's warp, each lane once it has read it
        }
        mbar_init_fence();
    }
    __syncthreads();

    if (warp == Tr::kComputeWarps) {
        // The loader: weights only, which no kernel of the step writes once early is set. It starts once the
        // compute warps have issued their operands' loads, so that those are not queued behind 16 stages
        // of weights (run 60: the operands then took 10 us to arrive).
        if (!a.early) wait_for_producer();
        operands_issued_sync();
        const int prime = min(Tr::kPrimeStages, total);
        const uint64_t policy = l2_policy<L2Evict::First>();
        long long waited = 0;  // clock cycles spent waiting for free stages (timeline)
        for (int s = 0; s < total; ++s) {
            if (s == prime) staged_sync();
            const int slot = s % a.stages, round = s / a.stages;
            if (round > 0) {
                const long long t0 = a.timeline ? clock64() : 0;
                mbar_wait(&empty[slot], unsigned(round - 1) & 1u);
                if (a.timeline) waited += clock64() - t0;
            }
            // out_proj's rows stream while the compute warps pass through the x_proj exchange, the state
            // update and the barrier, each a chain of short global-memory round trips: a full ring of requests
            // ahead of those (21 MB on 132 SMs) held each of them up by microseconds (run 62), so here at
            // most `pace` stages are in flight (the stage `pace` back has landed before the next is issued).
            if (a.pace > 0 && s >= 2 * n_in + a.pace) {
                const int back = s - a.pace;
                mbar_wait(&full[back % a.stages], unsigned(back / a.stages) & 1u);
            }
            const Stage st = stage_of(a, s, c0, nc, h0, nh, n_in);
            const int bytes = st.count * st.features * 2;
            unsigned char * dst = smem + a.off_ring + slot * Tr::kStageBytes;
            if constexpr (kBulkCopy) {
                if (lane == 0) {
                    if (round > 0) fence_proxy_async_shared();  // the slot's last reads before the copy's writes
                    bulk_copy(dst, st.src, uint32_t(bytes), &full[slot], a.evict_first, policy);
                }
            } else {
                for (int off = lane * 16; off < bytes; off += 32 * 16) cp_async_16(dst + off, st.src + off, true);
                arrive_when_copied(&full[slot]);
            }
            if (lane == 0 && s == 2 * n_in) stamp(2);
        }
        if (prime == total) staged_sync();
        if (lane == 0) {
            stamp(3);
            if (a.timeline) stamp_s[18] = (unsigned long long)waited;
        }
        if (a.early) wait_for_producer();
        allow_dependents();
        wait_all_copies();
        if (lane == 0) {
            write_stamps(2, 4);
            write_stamps(18, 19);
        }
        return;
    }

    // ---- compute warps ----
    const int tid = int(threadIdx.x);
    float4 * xlo = reinterpret_cast<float4 *>(smem + a.off_vec);  // x (then y_inner) in float32, split (row_dot)
    float4 * xhi = xlo + a.x_half;
    float * part = reinterpret_cast<float *>(smem + a.off_part);
    float * xc_s = reinterpret_cast<float *>(smem + a.off_xc);
    float * z_s = reinterpret_cast<float *>(smem + a.off_z);
    float * xdbl_s = reinterpret_cast<float *>(smem + a.off_xdbl);
    float * dt_s = reinterpret_cast<float *>(smem + a.off_dt);
    float * conv_s = reinterpret_cast<float *>(smem + a.off_conv);
    float * A_s = reinterpret_cast<float *>(smem + a.off_A);
    float * st_s = reinterpret_cast<float *>(smem + a.off_st);
    float * D_s = reinterpret_cast<float *>(smem + a.off_D);
    float * dtb_s = reinterpret_cast<float *>(smem + a.off_dtb);
    T * wdt_s = reinterpret_cast<T *>(smem + a.off_wdt);
    T * wx_s = reinterpret_cast<T *>(smem + a.off_wx);
    const T * x = reinterpret_cast<const T *>(a.x);
    const int W = a.width, N = a.dstate, R = a.rank, Q = a.q, MC = a.max_channels;

    // The block's per-channel operands into shared memory: the large ones (x_proj columns, dt_proj rows, and A
    // and the state when contiguous) by cp.async, the conv operands, D and dt_bias by plain loads into
    // registers issued before them and stored after; then the loader may start (operands_issued). The
    // copies are waited for (cp.async.wait_all) before the barrier after the x staging.
    const auto load_channel_operands = [&] {
        T conv_raw[Tr::kConvItems];
#pragma unroll
        for (int j = 0; j < Tr::kConvItems; ++j) {
            const int i = tid + j * Tr::kComputeThreads, c = i / Tr::kConvSlots, k = i % Tr::kConvSlots;
            const int64_t ch = c0 + c;
            const T * src = nullptr;
            if (k < W - 1) src = reinterpret_cast<const T *>(a.conv_state) + ch * a.cs_d + k * a.cs_k;
            else if (k < 2 * W - 1) src = reinterpret_cast<const T *>(a.conv_w) + ch * a.cw_d + (k - (W - 1)) * a.cw_k;
            else if (k == 2 * W - 1 && a.conv_b) src = reinterpret_cast<const T *>(a.conv_b) + ch * a.cb_s;
            conv_raw[j] = i < nc * Tr::kConvSlots && src ? *src : from_f32<T>(0.0f);
        }
        const float d = tid < nc && a.D ? a.D[int64_t(c0 + tid) * a.D_s] : 0.0f;
        const float dtb = tid < nc && a.dt_bias ? a.dt_bias[int64_t(c0 + tid) * a.dtb_s] : 0.0f;
        const int row_chunks = nc / 8;  // 16-byte pieces of a block's x_proj row slice
        const T * wx = reinterpret_cast<const T *>(a.w_x) + c0;
        for (int i = tid; i < Q * row_chunks; i += Tr::kComputeThreads) {
            const int q = i / row_chunks, k = i % row_chunks;
            cp_async_16(wx_s + q * MC + 8 * k, wx + int64_t(q) * a.inner + 8 * k, true);
        }
        copy_chunks(wdt_s, a.w_dt + int64_t(c0) * R * 2, nc * R * 2 / 16, tid);
        if (a.contiguous_state) {
            copy_chunks(A_s, a.A + int64_t(c0) * N, nc * N / 4, tid);
            copy_chunks(st_s, a.state + int64_t(c0) * N, nc * N / 4, tid);
        }
        operands_issued_arrive();
        if (!a.contiguous_state) {
            for (int i = tid; i < nc * N; i += Tr::kComputeThreads) {
                const int64_t ch = c0 + i / N, n = i % N;
                A_s[i] = a.A[ch * a.A_d + n * a.A_n];
                st_s[i] = a.state[ch * a.st_d + n * a.st_n];
            }
        }
#pragma unroll
        for (int j = 0; j < Tr::kConvItems; ++j) {
            const int i = tid + j * Tr::kComputeThreads;
            if (i < nc * Tr::kConvSlots) conv_s[i] = to_f32<T>(conv_raw[j]);
        }
        if (tid < nc) {
            D_s[tid] = d;
            dtb_s[tid] = dtb;
        }
    };

    if (a.early) load_channel_operands();
    wait_for_producer();
    allow_dependents();
    // This launch's exchange tag: the generation of the barrier count (it grows by G a launch), plus one so
    // that zeroed slots never match. Every block reads the same: earlier launches have finished (the wait
    // above), and no barrier of this one can complete before this block arrives at it.
    if (tid == 0) tag_s = unsigned(load_relaxed(a.barrier) / unsigned(G)) + 1u;
    if (!a.early) load_channel_operands();
    // x into xlo/xhi as float32, its loads issued together.
    if (a.x_vec) {
#pragma unroll 2
        for (int k = tid * 8; k < a.hidden; k += Tr::kComputeThreads * 8) {
            const uint4 raw = *reinterpret_cast<const uint4 *>(x + k);
            const T * e = reinterpret_cast<const T *>(&raw);
            xlo[k / 8] = make_float4(to_f32<T>(e[0]), to_f32<T>(e[1]), to_f32<T>(e[2]), to_f32<T>(e[3]));
            xhi[k / 8] = make_float4(to_f32<T>(e[4]), to_f32<T>(e[5]), to_f32<T>(e[6]), to_f32<T>(e[7]));
        }
    } else {
#pragma unroll 8
        for (int k = tid; k < a.hidden; k += Tr::kComputeThreads)
            reinterpret_cast<float *>(k % 8 < 4 ? xlo : xhi)[(k / 8) * 4 + k % 4] = to_f32<T>(x[int64_t(k) * a.x_s]);
    }
    wait_all_copies();
    compute_sync();
    if (tid == 0) stamp(1);
    staged_arrive();
    const unsigned tag = tag_s;

    // Stage s is warp s % 8's, whole: its rows one after the other, so the eight warps work on eight stages
    // at once and a stage's fixed costs (its barrier waits, the row sums' shuffles) overlap instead of
    // adding up (until run 58 every stage was split over all warps: about 1 us a stage). A lane's first
    // kXRegs x vectors stay in registers for the phase.
    float4 xr[Tr::kXRegs][2];
    const auto load_x_regs = [&](int features) {
        const int vr = features / 8;
#pragma unroll
        for (int j = 0; j < Tr::kXRegs; ++j) {
            const int v = lane + 32 * j;
            xr[j][0] = v < vr ? xlo[v] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            xr[j][1] = v < vr ? xhi[v] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    };
    long long full_wait = 0;  // clock cycles spent waiting for stages to land (timeline)
    const auto consume = [&](int s) {
        const Stage st = stage_of(a, s, c0, nc, h0, nh, n_in);
        const int slot = s % a.stages;
        const long long t0 = a.timeline ? clock64() : 0;
        mbar_wait(&full[slot], unsigned(s / a.stages) & 1u);
        if (a.timeline) full_wait += clock64() - t0;
        const int vr = st.features / 8;
        const uint4 * stage = reinterpret_cast<const uint4 *>(smem + a.off_ring + slot * Tr::kStageBytes);
        const bool whole = vr >= 32 * Tr::kXRegs;
        for (int r = 0; r < st.count; ++r) {
            const float acc = whole ? row_dot<T, true>(stage + r * vr, vr, xr, xlo, xhi, lane) : row_dot<T, false>(stage + r * vr, vr, xr, xlo, xhi, lane);
            if (lane == 0) part[st.part_row + r] = acc;
        }
        // Every lane releases its own reads (a release by lane 0 alone orders only lane 0's reads before the refill).
        mbar_arrive(&empty[slot]);
        if (tid == 0 && s == 2 * n_in) stamp(13);
    };
    // This warp's stages among [first, last).
    const auto consume_range = [&](int first, int last) {
        for (int s = first + ((warp - first) % Tr::kComputeWarps + Tr::kComputeWarps) % Tr::kComputeWarps; s < last; s += Tr::kComputeWarps) consume(s);
    };
    // Warp 0's cycles waiting and in all in a phase's stages (timeline).
    const auto consume_timed = [&](int first, int last, int wait_stamp) {
        full_wait = 0;
        const long long t0 = a.timeline ? clock64() : 0;
        consume_range(first, last);
        if (a.timeline && tid == 0) {
            stamp_s[wait_stamp] = (unsigned long long)full_wait;
            stamp_s[wait_stamp + 1] = (unsigned long long)(clock64() - t0);
        }
    };

    load_x_regs(a.hidden);
    consume_timed(0, 2 * n_in, 14);
    compute_sync();
    if (tid == 0) stamp(4);

    // in_proj's outputs, then the conv step of the block's channels (as causal_conv1d_update_kernel).
    for (int c = tid; c < nc; c += Tr::kComputeThreads) {
        float xr = part[c], zr = part[nc + c];
        if (a.b_in) {
            xr += to_f32<T>(reinterpret_cast<const T *>(a.b_in)[int64_t(c0 + c) * a.b_in_s]);
            zr += to_f32<T>(reinterpret_cast<const T *>(a.b_in)[int64_t(a.inner + c0 + c) * a.b_in_s]);
        }
        const float xv = round_to<T>(xr);
        float * ops = conv_s + c * Tr::kConvSlots;
        float acc = ops[2 * W - 1];
#pragma unroll
        for (int k = 0; k < Tr::kMaxWidth; ++k) {
            if (k < W) acc += ops[W - 1 + k] * (k < W - 1 ? ops[k] : xv);
        }
        xc_s[c] = round_to<T>(silu_f(acc));
        z_s[c] = round_to<T>(zr);
        // The new conv state, written out at the end (stores issued now would wait behind the weights).
#pragma unroll
        for (int k = 0; k < Tr::kMaxWidth - 1; ++k) {
            if (k < W - 2) ops[k] = ops[k + 1];
            else if (k == W - 2) ops[k] = xv;
        }
    }
    compute_sync();

    // x_proj's outputs (dt_low, B, C) without a grid barrier, through the exchange's tagged slots:
    // 1. every block writes its share of every output (its channels only) to the output's slot row;
    // 2. block b sums outputs b, b + G, ... (warp w the w-th of them) over the blocks in a fixed order,
    //    polling the row until every slot carries this launch's tag, and writes the sum to its slot;
    // 3. every block polls the sums' slots.
    // Against a barrier and every block summing every output, each block reads one row of partials instead
    // of all of them (13 MB of L2 reads a step on 132 SMs), and nothing waits for the slowest block but
    // the sums that need it.
    unsigned long long * const sums = a.exchange + size_t(Tr::kMaxQ) * size_t(G);
    {
        const uint4 * wq = reinterpret_cast<const uint4 *>(wx_s);
        const float4 * xc4 = reinterpret_cast<const float4 *>(xc_s);
        for (int q = tid; q < Q; q += Tr::kComputeThreads) {
            float acc0 = 0.0f, acc1 = 0.0f;
#pragma unroll 5
            for (int k = 0; k < nc / 8; ++k) dot8<T>(wq[q * (MC / 8) + k], xc4[2 * k], xc4[2 * k + 1], acc0, acc1);
            store_relaxed(a.exchange + size_t(q) * size_t(G) + size_t(b), tagged(tag, acc0 + acc1));
        }
    }
    if (tid == 0) stamp(5);
    for (int q = b + warp * G; q < Q; q += Tr::kComputeWarps * G) {
        const unsigned long long * row = a.exchange + size_t(q) * size_t(G);
        constexpr int kPerLane = 8;  // G <= 256
        unsigned long long w[kPerLane];
#pragma unroll
        for (int j = 0; j < kPerLane; ++j) w[j] = lane + 32 * j < G ? load_relaxed(row + lane + 32 * j) : tagged(tag, 0.0f);
        const unsigned long long start = global_ns();
        for (;;) {
            bool ready = true;
#pragma unroll
            for (int j = 0; j < kPerLane; ++j) ready = ready && has_tag(w[j], tag);
            if (__all_sync(0xffffffffu, ready)) break;
            trap_after_4s(start);
#pragma unroll
            for (int j = 0; j < kPerLane; ++j)
                if (!has_tag(w[j], tag)) w[j] = load_relaxed(row + lane + 32 * j);
        }
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < kPerLane; ++j) acc += __uint_as_float(unsigned(w[j]));
        acc = warp_sum(acc);
        if (lane == 0) store_relaxed(sums + q, tagged(tag, acc));
    }
    if (tid == 0) stamp(6);
    for (int q = tid; q < Q; q += Tr::kComputeThreads) {
        unsigned long long w = load_relaxed(sums + q);
        const unsigned long long start = global_ns();
        while (!has_tag(w, tag)) {
            trap_after_4s(start);
            w = load_relaxed(sums + q);
        }
        xdbl_s[q] = round_to<T>(__uint_as_float(unsigned(w)));
    }
    compute_sync();
    if (tid == 0) stamp(7);

    // dt of the block's channels: kDtLanes lanes a channel's dt_proj row (R a multiple of 8), 8 ranks at a
    // time, then the bias and softplus.
    {
        const uint4 * wr = reinterpret_cast<const uint4 *>(wdt_s);
        const float4 * d4 = reinterpret_cast<const float4 *>(xdbl_s);
        const int sub = lane % Tr::kDtLanes, per_pass = Tr::kComputeThreads / Tr::kDtLanes;
        for (int first = 0; first < nc; first += per_pass) {
            const int c = first + tid / Tr::kDtLanes, cc = min(c, nc - 1);
            float acc0 = 0.0f, acc1 = 0.0f;
#pragma unroll 5
            for (int k = sub; k < R / 8; k += Tr::kDtLanes) dot8<T>(wr[cc * (R / 8) + k], d4[2 * k], d4[2 * k + 1], acc0, acc1);
            float dt = acc0 + acc1;
#pragma unroll
            for (int o = Tr::kDtLanes / 2; o > 0; o >>= 1) dt += __shfl_xor_sync(0xffffffffu, dt, o);
            if (c < nc && sub == 0) dt_s[c] = softplus_mufu(dt + dtb_s[c]);
        }
    }
    compute_sync();
    if (tid == 0) stamp(8);

    // The state update: `lanes` lanes a channel (a power of two), each 4 states at a time.
    {
        const int L = a.lanes, per_pass = Tr::kComputeThreads / L, lane_g = tid % L;
        const int passes = (nc + per_pass - 1) / per_pass;
        const float * Bv = xdbl_s + R;
        const float * Cv = xdbl_s + R + N;
        T * y_inner = reinterpret_cast<T *>(a.y_inner);
        for (int pass = 0; pass < passes; ++pass) {
            const int c = pass * per_pass + tid / L;
            const bool valid = c < nc;
            const int cc = valid ? c : nc - 1;
            const float dt = dt_s[cc];
            const float xv = xc_s[cc], dtx = dt * xv;
            float acc = 0.0f;
            for (int n = lane_g * 4; n < N; n += L * 4) {
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    // Lanes past the last channel read no state: its owner rewrites it in this pass (racecheck, run 78).
                    const float h_old = valid ? st_s[c * N + n + i] : 0.0f;
                    const float h = __expf(dt * A_s[cc * N + n + i]) * h_old + dtx * Bv[n + i];
                    acc += Cv[n + i] * h;
                    if (valid) st_s[c * N + n + i] = h;  // written out at the end
                }
            }
            for (int o = L / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (valid && lane_g == 0) {
                float out = acc + (a.D ? D_s[c] * xv : 0.0f);
                out *= silu_f(z_s[c]);
                y_inner[c0 + c] = from_f32<T>(out);
            }
        }
    }
    if (tid == 0) stamp(9);
    grid_barrier(a.barrier, unsigned(G));
    if (tid == 0) stamp(10);

    // out_proj: the whole y_inner, then the block's rows.
#pragma unroll 4
    for (int k = tid * 8; k < a.inner; k += Tr::kComputeThreads * 8) {
        const uint4 raw = __ldcg(reinterpret_cast<const uint4 *>(a.y_inner + int64_t(k) * 2));
        const T * e = reinterpret_cast<const T *>(&raw);
        xlo[k / 8] = make_float4(to_f32<T>(e[0]), to_f32<T>(e[1]), to_f32<T>(e[2]), to_f32<T>(e[3]));
        xhi[k / 8] = make_float4(to_f32<T>(e[4]), to_f32<T>(e[5]), to_f32<T>(e[6]), to_f32<T>(e[7]));
    }
    compute_sync();
    if (tid == 0) stamp(11);
    load_x_regs(a.inner);
    consume_timed(2 * n_in, total, 16);
    compute_sync();
    for (int h = tid; h < nh; h += Tr::kComputeThreads) {
        float o = part[2 * nc + h];
        if (a.b_out) o += to_f32<T>(reinterpret_cast<const T *>(a.b_out)[int64_t(h0 + h) * a.b_out_s]);
        reinterpret_cast<T *>(a.y)[int64_t(h0 + h) * a.y_s] = from_f32<T>(o);
    }
    // The block's new states and conv states, now that no weights are in flight.
    if (a.contiguous_state) {
        float4 * dst = reinterpret_cast<float4 *>(a.state + int64_t(c0) * N);
        for (int i = tid; i < nc * N / 4; i += Tr::kComputeThreads) dst[i] = reinterpret_cast<const float4 *>(st_s)[i];
    } else {
        for (int i = tid; i < nc * N; i += Tr::kComputeThreads) a.state[int64_t(c0 + i / N) * a.st_d + int64_t(i % N) * a.st_n] = st_s[i];
    }
    for (int i = tid; i < nc * (W - 1); i += Tr::kComputeThreads) {
        const int c = i / (W - 1), k = i % (W - 1);
        reinterpret_cast<T *>(a.conv_state)[int64_t(c0 + c) * a.cs_d + int64_t(k) * a.cs_k] = from_f32<T>(conv_s[c * Tr::kConvSlots + k]);
    }
    if (tid == 0) {
        stamp(12);
        write_stamps(0, 2);
        write_stamps(4, 18);
    }
}

// MAMBA_CUDA_MAMBA1_STEP: "fused" (the one kernel, or UNSUPPORTED where it cannot run), "auto" (the one
// kernel where it can run, the four ops elsewhere) or "separate" (the four ops, also what unset gives: the
// one kernel is slower, see the top of this file). Read at each call.
enum class StepKernel { Auto, Fused, Separate };
constexpr EnvChoice<StepKernel> kStepKernels[] = {{"auto", StepKernel::Auto}, {"fused", StepKernel::Fused}, {"separate", StepKernel::Separate}};

constexpr EnvChoice<bool> kTimelineSwitch[] = {{"0", false}, {"1", true}};
// MAMBA_CUDA_MAMBA1_STEP_PACE: out_proj stages in flight at most while the step's serial phases run ("0": no
// limit).
constexpr EnvChoice<int> kPaces[] = {{"0", 0}, {"1", 1}, {"2", 2}, {"3", 3}, {"4", 4}, {"6", 6}, {"8", 8}};
constexpr int kDefaultPace = 2;
// MAMBA_CUDA_MAMBA1_STEP_EVICT: "first" marks the streamed weights' lines to leave L2 before other lines,
// "normal" does not.
constexpr EnvChoice<bool> kEvictChoices[] = {{"first", true}, {"normal", false}};
constexpr bool kDefaultEvictFirst = true;

// The one kernel's settings, read at the top of every call (so that a misspelt value fails every call,
// also those that take the four ops).
struct FusedSettings {
    int pace;
    bool evict_first;
    bool timeline;
};
FusedSettings read_fused_settings() {
    return {env_choice("MAMBA_CUDA_MAMBA1_STEP_PACE", kPaces, kDefaultPace), env_choice("MAMBA_CUDA_MAMBA1_STEP_EVICT", kEvictChoices, kDefaultEvictFirst),
            env_choice("MAMBA_CUDA_MAMBA1_STEP_TIMELINE", kTimelineSwitch, false)};
}

// One line on stderr per call: each stamp's mean and latest time over the blocks, in microseconds from
// the first block's start (stamps a block never reached, such as a loader with no out_proj rows, are left out).
void report_timeline(mamba_context & ctx, const unsigned long long * device_stamps, int G) {
    static constexpr const char * kNames[] = {"start",          "staged",     "out_proj issued", "all issued", "in_proj done",
                                              "partials out",   "sums out",   "xdbl in",         "dt done",    "update done",
                                              "barrier passed", "y_inner in", "end",             "warp 0's first out_proj stage done"};
    // Then clock cycles (durations, not times).
    static constexpr const char * kCycleNames[] = {"in_proj: warp 0 waiting for stages", "in_proj: warp 0 in all",
                                                   "out_proj: warp 0 waiting for stages", "out_proj: warp 0 in all",
                                                   "the loader waiting for free stages"};
    std::vector<unsigned long long> t(size_t(G) * Tr::kStamps);
    MAMBA_CUDA_CHECK(cudaMemcpyAsync(t.data(), device_stamps, t.size() * sizeof(t[0]), cudaMemcpyDeviceToHost, ctx.cuda->stream));
    MAMBA_CUDA_CHECK(cudaStreamSynchronize(ctx.cuda->stream));
    unsigned long long origin = ~0ull;
    for (int b = 0; b < G; ++b) origin = std::min(origin, t[size_t(b) * Tr::kStamps]);
    std::string line = cat("mamba1_step timeline (us from the first block's start: mean / latest over ", G, " blocks):");
    for (int i = 1; i < int(std::size(kNames)); ++i) {
        double sum = 0.0, latest = 0.0;
        int n = 0;
        for (int b = 0; b < G; ++b) {
            const unsigned long long v = t[size_t(b) * Tr::kStamps + i];
            if (v == 0) continue;
            const double us = double(v - origin) / 1000.0;
            sum += us;
            latest = std::max(latest, us);
            ++n;
        }
        if (n == 0) continue;
        char figures[64];
        std::snprintf(figures, sizeof figures, " %.2f / %.2f;", sum / n, latest);
        line += cat(" ", kNames[i], figures);
    }
    line += " cycles (mean / most):";
    for (int i = 0; i < int(std::size(kCycleNames)); ++i) {
        double sum = 0.0, most = 0.0;
        for (int b = 0; b < G; ++b) {
            const double v = double(t[size_t(b) * Tr::kStamps + std::size(kNames) + i]);
            sum += v;
            most = std::max(most, v);
        }
        char figures[64];
        std::snprintf(figures, sizeof figures, " %.0f / %.0f;", sum / G, most);
        line += cat(" ", kCycleNames[i], figures);
    }
    std::fprintf(stderr, "%s\n", line.c_str());
}

int rows_per_stage(int64_t features) {
    int rows = 8;
    while (rows > 1 && rows * features * 2 > Tr::kStageBytes) rows /= 2;
    return rows;
}

struct Layout {
    int bytes = 0;
    int add(int64_t n) {
        const int at = bytes;
        bytes += int((n + 15) / 16 * 16);
        return at;
    }
};

// Fills the arguments' sizes and shared-memory layout; returns an empty string where the kernel runs, or
// why it cannot.
std::string plan_fused(const mamba_context & ctx, const Mamba1StepParams & p, StepArgs & a, size_t & smem) {
    const CudaState & cs = *ctx.cuda;
    if (cs.cc_major < 9) return cat("it needs compute capability 9.0, the device has ", cs.cc_major, ".", cs.cc_minor);
    if (p.batch != 1) return cat("it takes batch 1, not ", p.batch);
    const DType t = p.in_proj.linear.weight.dtype;
    if (t != DType::BF16 && t != DType::F16) return cat("in_proj_weight is ", dtype_name(t), "; it takes bfloat16 or float16");
    const std::pair<const char *, const Tensor *> sixteen[] = {
        {"x", &p.in_proj.linear.x},       {"conv_state", &p.in_proj.conv.conv_state}, {"conv_weight", &p.in_proj.conv.weight},
        {"x_proj_weight", &p.x_proj.weight}, {"dt_proj_weight", &*p.update.dt_proj_weight}, {"out_proj_weight", &p.out_proj.weight},
        {"y", &p.out_proj.y},             {"xz", &p.in_proj.linear.y},                {"xc", &p.in_proj.conv.y},
        {"xdbl", &p.x_proj.y},            {"y_inner", &p.update.y}};
    for (const auto & [name, tensor] : sixteen)
        if (tensor->dtype != t) return cat(name, " is ", dtype_name(tensor->dtype), " where in_proj_weight is ", dtype_name(t));
    const std::pair<const char *, const Tensor *> biases[] = {
        {"in_proj_bias", ptr(p.in_proj.linear.bias)}, {"conv_bias", ptr(p.in_proj.conv.bias)}, {"out_proj_bias", ptr(p.out_proj.bias)}};
    for (const auto & [name, tensor] : biases)
        if (tensor && tensor->dtype != t) return cat(name, " is ", dtype_name(tensor->dtype), " where in_proj_weight is ", dtype_name(t));
    if (p.update.state.dtype != DType::F32 || p.update.A.dtype != DType::F32 || (p.update.D && p.update.D->dtype != DType::F32) ||
        (p.update.dt_bias && p.update.dt_bias->dtype != DType::F32))
        return "ssm_state, A, D and dt_bias must be float32";
    if (p.hidden % 8 != 0 || p.inner % 8 != 0 || p.hidden > Tr::kMaxFeatures || p.inner > Tr::kMaxFeatures)
        return cat("hidden (", p.hidden, ") and inner (", p.inner, ") must be multiples of 8 up to ", Tr::kMaxFeatures);
    if (p.rank % 8 != 0) return cat("the rank (", p.rank, ") must be a multiple of 8");
    if (p.width < 2 || p.width > Tr::kMaxWidth) return cat("the conv width (", p.width, ") must be 2 to ", Tr::kMaxWidth);
    if (p.dstate % 4 != 0 || p.dstate > 4 * Tr::kMaxLanes) return cat("dstate (", p.dstate, ") must be a multiple of 4 up to ", 4 * Tr::kMaxLanes);
    const std::pair<const char *, const Tensor *> streamed[] = {{"in_proj_weight", &p.in_proj.linear.weight},
                                                                {"x_proj_weight", &p.x_proj.weight},
                                                                {"dt_proj_weight", &*p.update.dt_proj_weight},
                                                                {"out_proj_weight", &p.out_proj.weight},
                                                                {"y_inner", &p.update.y}};
    for (const auto & [name, w] : streamed)
        if (!w->is_contiguous() || !aligned16(w->data)) return cat(name, " must be contiguous and 16-byte aligned");
    const int G = cs.multiprocessors;
    if (G > 256) return cat("it sums x_proj over at most 256 blocks, one an SM; the device has ", G, " SMs");
    if (p.rank + 2 * p.dstate > Tr::kMaxQ) return cat("x_proj's outputs (rank + 2 dstate = ", p.rank + 2 * p.dstate, ") must be at most ", Tr::kMaxQ);
    if (cs.grid_exchange_slots < size_t(Tr::kMaxQ) * size_t(G + 1)) return "the context has no exchange slots for it";
    if (8 * ceil_div(p.inner / 8, G) * Tr::kConvSlots > Tr::kConvItems * Tr::kComputeThreads)
        return cat("inner (", p.inner, ") must be at most ", Tr::kConvItems * Tr::kComputeThreads / Tr::kConvSlots, " channels a block, ", G, " blocks");
    a.hidden = int(p.hidden);
    a.inner = int(p.inner);
    a.rank = int(p.rank);
    a.dstate = int(p.dstate);
    a.width = int(p.width);
    a.q = int(p.rank + 2 * p.dstate);
    a.rows_in = rows_per_stage(p.hidden);
    a.rows_out = rows_per_stage(p.inner);
    a.max_channels = int(8 * ceil_div(p.inner / 8, G));
    a.max_outputs = int(ceil_div(p.hidden, G));
    int lanes = 1;
    while (lanes * 4 < p.dstate) lanes *= 2;
    a.lanes = lanes;
    const int MC = a.max_channels;
    Layout l;
    l.add(2 * Tr::kMaxStages * 8);  // the mbarriers
    a.off_vec = l.add(std::max(p.hidden, p.inner) * 4);
    a.x_half = int(std::max(p.hidden, p.inner) / 8);
    a.off_part = l.add(int64_t(2 * MC + a.max_outputs) * 4);
    a.off_xc = l.add(MC * 4);
    a.off_z = l.add(MC * 4);
    a.off_xdbl = l.add(int64_t(a.q) * 4);
    a.off_dt = l.add(MC * 4);
    a.off_conv = l.add(int64_t(MC) * Tr::kConvSlots * 4);
    a.off_A = l.add(int64_t(MC) * p.dstate * 4);
    a.off_st = l.add(int64_t(MC) * p.dstate * 4);
    a.off_D = l.add(MC * 4);
    a.off_dtb = l.add(MC * 4);
    a.off_wdt = l.add(int64_t(MC) * p.rank * 2);
    a.off_wx = l.add(int64_t(a.q) * MC * 2);
    a.off_ring = l.bytes;
    const int room = (cs.max_smem_per_block - l.bytes) / Tr::kStageBytes;
    if (room < Tr::kMinStages)
        return cat("its per-block operands take ", l.bytes, " bytes of shared memory, leaving room for ", std::max(room, 0), " weight stages of ",
                   Tr::kStageBytes, " bytes (it needs ", Tr::kMinStages, ")");
    a.stages = std::min(room, Tr::kMaxStages);
    smem = size_t(l.bytes) + size_t(a.stages) * Tr::kStageBytes;
    return {};
}

template <class T>
void launch_fused(mamba_context & ctx, const Mamba1StepParams & p, const FusedSettings & settings, StepArgs & a, size_t smem) {
    const auto kernel = mamba1_step_kernel<T>;
    MAMBA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    int resident = 0;
    MAMBA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kernel, Tr::kThreads, smem));
    if (resident < 1) fail(MAMBA_STATUS_UNSUPPORTED, "mamba1_step: the one-kernel step's block (", smem, " bytes of shared memory) does not fit on an SM");
    const int G = ctx.cuda->multiprocessors;
    const LinearParams & in = p.in_proj.linear;
    const CausalConv1dUpdateParams & conv = p.in_proj.conv;
    const SelectiveStateUpdateParams & up = p.update;
    a.x = in.x.data;
    a.x_s = in.x.stride[1];
    a.x_vec = a.x_s == 1 && aligned16(a.x);
    a.w_in = in.weight.data;
    a.b_in = in.bias ? in.bias->data : nullptr;
    a.b_in_s = in.bias ? in.bias->stride[0] : 0;
    a.conv_state = conv.conv_state.data;
    a.cs_d = conv.conv_state.stride[1];
    a.cs_k = conv.conv_state.stride[2];
    a.conv_w = conv.weight.data;
    a.cw_d = conv.weight.stride[0];
    a.cw_k = conv.weight.stride[1];
    a.conv_b = conv.bias ? conv.bias->data : nullptr;
    a.cb_s = conv.bias ? conv.bias->stride[0] : 0;
    a.w_x = p.x_proj.weight.data;
    a.w_dt = up.dt_proj_weight->data;
    a.dt_bias = up.dt_bias ? up.dt_bias->ptr<float>() : nullptr;
    a.dtb_s = up.dt_bias ? up.dt_bias->stride[0] : 0;
    a.A = up.A.ptr<float>();
    a.A_d = up.A.stride[0];
    a.A_n = up.A.stride[1];
    a.D = up.D ? up.D->ptr<float>() : nullptr;
    a.D_s = up.D ? up.D->stride[0] : 0;
    a.state = up.state.ptr<float>();
    a.st_d = up.state.stride[1];
    a.st_n = up.state.stride[2];
    a.w_out = p.out_proj.weight.data;
    a.b_out = p.out_proj.bias ? p.out_proj.bias->data : nullptr;
    a.b_out_s = p.out_proj.bias ? p.out_proj.bias->stride[0] : 0;
    a.y = p.out_proj.y.data;
    a.y_s = p.out_proj.y.stride[1];
    a.y_inner = up.y.data;
    a.exchange = ctx.cuda->grid_exchange;
    a.pace = settings.pace;
    a.evict_first = settings.evict_first;
    a.contiguous_state = a.A_n == 1 && a.A_d == p.dstate && a.st_n == 1 && a.st_d == p.dstate && aligned16(a.A) && aligned16(a.state);
    a.barrier = ctx.cuda->grid_barrier;
    a.early = readable_before_wait(ctx, {&in.weight, ptr(in.bias), &conv.conv_state, &conv.weight, ptr(conv.bias), &p.x_proj.weight, &*up.dt_proj_weight,
                                         ptr(up.dt_bias), &up.A, ptr(up.D), &up.state, &p.out_proj.weight, ptr(p.out_proj.bias)});
    // Cooperative: measured as fast as a plain launch (run 52: 3.265 against 3.271 ms/step), and it keeps the
    // grid resident at once whatever else the device runs.
    // MAMBA_CUDA_MAMBA1_STEP_TIMELINE=1: every block's phase times, printed after each call not captured.
    const bool timeline = settings.timeline && !stream_capturing(ctx);
    const size_t timeline_bytes = size_t(G) * Tr::kStamps * sizeof(unsigned long long);
    a.timeline = timeline ? static_cast<unsigned long long *>(workspace(ctx, timeline_bytes)) : nullptr;
    if (timeline) MAMBA_CUDA_CHECK(cudaMemsetAsync(a.timeline, 0, timeline_bytes, ctx.cuda->stream));
    launch_kernel_shaped(ctx, a.early ? "mamba1_step_kernel early" : "mamba1_step_kernel", true, LaunchShape{1u, true}, kernel, dim3(unsigned(G)),
                         dim3(Tr::kThreads), smem, a);
    MAMBA_CUDA_CHECK_LAUNCH("mamba1_step_kernel");
    if (timeline) report_timeline(ctx, a.timeline, G);
}

// MAMBA_CUDA_MAMBA1_XPROJ, for the four kernels: "auto" (or unset) folds x_proj into in_proj at batch 1, or into the
// conv step at 2 to kXProjMaxRows rows, where it can (step_xproj.cuh), "fused" does so or fails with UNSUPPORTED,
// "separate" runs x_proj as its own GEMV.
enum class XProjFold { Auto, Fused, Separate };
constexpr EnvChoice<XProjFold> kXProjFolds[] = {{"auto", XProjFold::Auto}, {"fused", XProjFold::Fused}, {"separate", XProjFold::Separate}};

// MAMBA_CUDA_MAMBA1_XPROJ_REPLICAS: copies of x_proj's sums that in_proj's blocks take in turn (fewer atomic adds
// queued on one address), as many as fit the context's sums.
constexpr EnvChoice<int> kXProjReplicas[] = {{"1", 1}, {"2", 2}, {"4", 4}, {"8", 8}};
static_assert(kXProjMaxReplicas == 8, "the choices go up to the most replicas");
constexpr int kDefaultXProjReplicas = 4;

// Why x_proj cannot fold into in_proj (batch 1) or the conv step (more rows) and the state update read its sums, empty
// where it can.
std::string plan_xproj_fold(mamba_context & ctx, const Mamba1StepParams & p) {
    const bool one_row = p.in_proj.linear.rows == 1;
    std::string why = one_row ? gemv_conv1d_xproj_unsupported(ctx, p.in_proj, p.x_proj, CudaState::kXProjSumsCapacity)
                              : conv1d_xproj_unsupported(ctx, p.in_proj, p.x_proj, CudaState::kXProjPartialsCapacity);
    if (why.empty()) why = selective_state_update_sums_unsupported(p.update);
    return why.empty() ? why : cat(one_row ? "x_proj cannot fold into in_proj: " : "x_proj cannot fold into the conv step: ", why);
}

// MAMBA_CUDA_MAMBA1_SUMS_CLEAR: who zeroes x_proj's sums for the next step. "out_proj" (or unset): out_proj's GEMV,
// at its end (past its PDL wait, so the state update's reads are done); where out_proj is no GEMV, a memset after it.
// "update": the state update's last block, found by a count of arrivals (a fence and an atomic add a block, then the
// zeroing, at the end of the update's critical path).
enum class SumsClear { OutProj, Update };
constexpr EnvChoice<SumsClear> kSumsClears[] = {{"out_proj", SumsClear::OutProj}, {"update", SumsClear::Update}};

// in_proj + conv adding x_proj's sums (and taking the pre-norm where pre_norm is given), the state update reading
// them, out_proj: three kernels.
void run_with_xproj_folded(mamba_context & ctx, const Mamba1StepParams & p, int replicas, SumsClear clear_by, const RmsNormParams * pre_norm) {
    CudaState & cs = *ctx.cuda;
    XProjSums sums;
    sums.data = cs.xproj_sums;
    sums.arrivals = clear_by == SumsClear::Update ? reinterpret_cast<unsigned *>(cs.xproj_sums + CudaState::kXProjSumsCapacity) : nullptr;
    sums.capacity = CudaState::kXProjSumsCapacity;
    sums.stride = xproj_replica_stride(p.x_proj.out_features);
    sums.replicas = int(std::min<int64_t>(replicas, sums.capacity / sums.stride));
    if (cs.xproj_sums_dirty) {
        count_queued(ctx);
        MAMBA_CUDA_CHECK(cudaMemsetAsync(cs.xproj_sums, 0, CudaState::kXProjSumsBytes, cs.stream));
    }
    cs.xproj_sums_dirty = true;
    gemv_conv1d_xproj(ctx, p.in_proj, p.x_proj, sums, pre_norm);
    note_in_proj_writes(ctx, p.in_proj, pre_norm);
    selective_state_update_from_sums(ctx, p.update, sums);
    if (clear_by == SumsClear::Update) {
        cs.xproj_sums_dirty = false;
        linear(ctx, p.out_proj);
        return;
    }
    const ClearAfterWait clear{sums.data, int64_t(sums.replicas) * sums.stride};
    if (try_gemv(ctx, p.out_proj, &clear, /*stage_weights=*/true)) {
        note_writes(ctx, {&p.out_proj.y});
    } else {
        linear(ctx, p.out_proj);
        count_queued(ctx);
        MAMBA_CUDA_CHECK(cudaMemsetAsync(sums.data, 0, size_t(clear.count) * sizeof(double), cs.stream));
    }
    cs.xproj_sums_dirty = false;
}

// Batched (2 to kXProjMaxRows rows): in_proj's GEMM, the conv step storing x_proj's sums of every row, one replica a
// cluster of its blocks, into the context's partials (conv_xproj_step.cu), the state update adding them, out_proj: four
// kernels instead of five. The partials are overwritten every step: nothing zeroes them, and the batch-1 sums are not
// touched.
void run_with_xproj_in_conv(mamba_context & ctx, const Mamba1StepParams & p) {
    const CudaState & cs = *ctx.cuda;
    XProjSums sums;
    sums.data = cs.xproj_partials;
    sums.capacity = CudaState::kXProjPartialsCapacity;
    sums.stride = xproj_replica_stride(p.x_proj.out_features);
    sums.rows = int(p.in_proj.linear.rows);
    sums.replicas = conv1d_xproj_clusters(p.in_proj, p.x_proj);
    sums.row_stride = int64_t(sums.replicas) * sums.stride;
    linear(ctx, p.in_proj.linear);
    conv1d_xproj(ctx, p.in_proj, p.x_proj, sums);
    selective_state_update_from_sums(ctx, p.update, sums);
    linear(ctx, p.out_proj);
}

}  // namespace

void mamba1_step(mamba_context & ctx, const Mamba1StepParams & p) {
    const StepKernel choice = env_choice("MAMBA_CUDA_MAMBA1_STEP", kStepKernels, StepKernel::Separate);
    const XProjFold xproj = env_choice("MAMBA_CUDA_MAMBA1_XPROJ", kXProjFolds, XProjFold::Auto);
    const int xproj_replicas = env_choice("MAMBA_CUDA_MAMBA1_XPROJ_REPLICAS", kXProjReplicas, kDefaultXProjReplicas);
    const SumsClear sums_clear = env_choice("MAMBA_CUDA_MAMBA1_SUMS_CLEAR", kSumsClears, SumsClear::OutProj);
    update_release_point(ReleaseAt::Start);  // read by the state update; a misspelt value fails here, before any launch
    const FusedSettings settings = read_fused_settings();
    StepArgs a{};
    size_t smem = 0;
    const std::string why = choice == StepKernel::Separate ? std::string("not chosen") : plan_fused(ctx, p, a, smem);
    if (choice == StepKernel::Fused && !why.empty())
        fail(MAMBA_STATUS_UNSUPPORTED, "MAMBA_CUDA_MAMBA1_STEP=fused, but the one-kernel step cannot run: ", why);
    if (why.empty()) {
        run_or_fold_pre_norm(ctx, p.pre_norm, p.in_proj, "the one-kernel step (MAMBA_CUDA_MAMBA1_STEP) reads the norm's output");
        if (p.in_proj.linear.weight.dtype == DType::BF16) launch_fused<bf16_t>(ctx, p, settings, a, smem);
        else launch_fused<f16_t>(ctx, p, settings, a, smem);
        note_writes(ctx, {&p.out_proj.y, &p.in_proj.conv.conv_state, &p.update.state, &p.update.y});
        return;
    }
    // The four ops' GEMVs stream their weights evict-first in L2 (gemv.cu: 7% faster decode on mamba-2.8b).
    const EvictFirstWeights evict_first(ctx);
    const std::string no_fold = xproj == XProjFold::Separate ? std::string("not chosen") : plan_xproj_fold(ctx, p);
    if (xproj == XProjFold::Fused && !no_fold.empty()) fail(MAMBA_STATUS_UNSUPPORTED, "MAMBA_CUDA_MAMBA1_XPROJ=fused, but ", no_fold);
    const RmsNormParams * pre_norm = run_or_fold_pre_norm(ctx, p.pre_norm, p.in_proj);
    if (no_fold.empty() && p.in_proj.linear.rows > 1) {
        run_with_xproj_in_conv(ctx, p);  // the pre-norm (batch 1 only) is not folded
        return;
    }
    if (no_fold.empty()) {
        run_with_xproj_folded(ctx, p, xproj_replicas, sums_clear, pre_norm);
        return;
    }
    step_in_proj(ctx, p.in_proj, pre_norm);
    linear(ctx, p.x_proj);
    selective_state_update(ctx, p.update);
    linear(ctx, p.out_proj);
}

}  // namespace mamba::cuda
