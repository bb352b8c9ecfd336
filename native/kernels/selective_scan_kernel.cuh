// The fused Mamba-1 selective scan kernels, instantiated per element type in selective_scan_<type>.cu
// so the variants compile in parallel.
//
// What must move: batch*dim*len*(u + delta + z + y) + batch*groups*dstate*len*(B + C) bytes, e.g. bf16
// B8 D5120 L2048 N16: 671 MB + 1 MB, 0.16 ms at 4.2 TB/s. FLOPs per (b, d, t, n): one exp2 (MUFU, 16 a
// clock per SM on sm_90: 1.34 G of them, 0.32 ms at 132 SMs x 1.98 GHz), a multiply for dt*A, two FMAs
// for h and one for the C contraction; per (b, d, t): softplus, SiLU (two MUFU each). The kernel is
// bound by instruction issue and latency, not by HBM: the step is branch-free (softplus as
// max(x, 0) + log1p(e^-|x|) without branches, selects for the options) so that the compiler interleaves
// the 16 unrolled steps of a chunk; the step (scan_step) is shared by the channel and rows kernels.
// Moving 2, 4 or 8 of the 16 exp2 onto the FMA pipe (a degree-5 polynomial) was measured 9-35% slower
// than all on the MUFU (H200, bf16 B8 D5120 L2048 N16): the MUFU is not the limit.
//
// Design of the base channel kernel (selective_scan_channel_kernel; duo, this path's default, is in selective_scan_lanes.cuh,
// split in selective_scan_split.cuh):
// - Fusion: softplus(delta + bias), exp2 with A pre-scaled by log2(e), the recurrence, the C
//   contraction, the D skip and the SiLU(z) gate in one kernel; each input read once, y written once.
// - One thread per channel, its (up to 16) states in registers for its whole segment: no reduction
//   across lanes. A block is 128 channels of one group for one segment of one batch row.
// - Tiling: chunks of 16 steps. u, delta, z rows ((b, d, l) layout, time contiguous) are read 32 bytes
//   per thread and chunk (a full sector, two 16-byte loads) one chunk ahead of the compute; B and C of
//   the group ((b, g, n, l)) are loaded once per block and chunk with 16-byte loads by the first
//   2*N*pieces threads, converted to float [step][state] in double-buffered shared memory and read by
//   every thread as broadcast float4s. One __syncthreads per chunk.
// - Enough threads: below 32768 channels (batch 1) the sequence is split into up to S segments of a
//   multiple of 16 steps (about 2 x SMs x 512 threads in all, segments of at least 32 steps, so a 512-step
//   prefill chunk of one sequence still fills the device); a summary
//   pass gives each segment's local end state and sum of dt, a small pass carries the states across
//   segments, and the final pass re-runs every segment from its true start state. Cost of the split:
//   (S-1)/S more reads of u, delta, B and exp2 work.
// - Any length (the last chunk is masked: dt = 0 past the end leaves h unchanged), dstate 1..16
//   (padded to 4, 8 or 16), groups, initial/final state (slot 0 of the segment states holds the
//   initial state so an aliased final state is written only after it was read).
// (b, l, d) buffers (the model's views: channels contiguous, time stride dim) take
// selective_scan_split_rows_kernel (default) or selective_scan_rows_kernel (base): tiles of steps x the
// block's channels copied into shared memory with 16-byte cp.async, double buffered, y written back the
// same way (design further down), sequences split into segments as on the main path.
// Everything else (dstate > 16, time-invariant B/C, rows not 16-byte aligned, groups narrower than a
// block) takes the general kernel (selective_scan_kernel): G lanes per channel, shuffle reduction.
// The main path reads any strides (16-byte loads when the time axis is contiguous and rows aligned,
// else per-step loads, coalesced across a warp for (b, l, d) buffers); for the general kernel, inputs
// whose time axis is not contiguous are copied first (selective_scan.cu).
#pragma once

#include <type_traits>

#include "common.cuh"
#include "launch.cuh"
#include "scan_math.h"

namespace mamba::cuda::scan {

// First statement of every kernel of the segmented passes (launch_segmented_scan launches them with PDL):
// wait until the previous kernel in the stream has completed (the summaries before the carry, the carry
// before the scan, the op before all of them), then let the next pass's blocks be scheduled, so that its
// launch and block fill overlap this pass's tail. Nothing is read before the wait (launch.cuh's contract).
__device__ __forceinline__ void segmented_pass_entry() {
    wait_for_producer();
    allow_dependents();
}

// Kernel of the contiguous channel path and of the (b, l, d) rows path (MAMBA_CUDA_SCAN_VARIANT=base|split|
// duo; unset: duo on the channel path, split on the rows path): base is selective_scan_channel_kernel /
// selective_scan_rows_kernel (one thread a channel), split two lanes a channel exchanging by shuffles
// (selective_scan_split.cuh), duo two lanes a channel exchanging through shared memory
// (selective_scan_lanes.cuh, channel path only: on the rows path duo runs split). split and duo need
// dstate 5..16; dstate <= 4 runs base. The general kernel has no variants.
// Measured on an H200 (bf16, ms; every variant passed the scan tests), with kernels since removed:
// hoist (phase-split steps, rows in registers), hoist_smem (rows in shared memory), pair (two channels a
// thread); quad, quad_regs64, oct, sixteen (4 to 16 lanes a channel: table in selective_scan_lanes.cuh):
//   channel path                          base   hoist  hoist_smem  pair   split  duo
//   B8 D5120 L2048 N16 z bias softplus    0.891  0.867  0.882       1.504  0.703  0.612
//   B1 D5120 L16384                       1.183  1.134  1.181       1.554  1.132  1.030
//   rows path (b, l, d) view              base   split  duo
//   B8 D5120 L2048                        0.751  0.686  0.752
//   B1 D5120 L512                         0.0643 0.0577 0.0619
// (The first table's base to split columns come from an earlier run than its duo column and the rows table.)
// Also removed: a rows-path duo kernel (duo's shared-memory pairing on split's rows tiles), measured slower
// than split there (selective_scan_split.cuh).
enum class ScanVariant : int { Default, Base, Split, Duo };

// The kernel a call runs: Default is duo on the contiguous channel path (vec) and split elsewhere (on the
// rows path; the strided channel path has no variants).
inline ScanVariant resolve_scan_variant(ScanVariant v, bool vec) {
    if (v != ScanVariant::Default) return v;
    return vec ? ScanVariant::Duo : ScanVariant::Split;
}

struct ScanArgs {
    const char *u, *delta, *B, *C, *z;
    char * y;
    const float *A, *D, *delta_bias, *init;
    float * fin;
    int64_t u_sb, u_sd, dl_sb, dl_sd, z_sb, z_sd, y_sb, y_sd;
    // Variable B/C: (batch, groups, dstate, len) with unit stride over len. Invariant: (dim, dstate),
    // where B_sg is the stride over dim and B_sb is unused.
    int64_t B_sb, B_sg, B_sn, C_sb, C_sg, C_sn;
    int64_t A_sd, A_sn, D_s, bias_s;
    int64_t init_sb, init_sd, init_sn, fin_sb, fin_sd, fin_sn;
    int64_t dim, len, dstate, channels_per_group;
    // Sequence segments of the channel path: nseg segments of seg_len steps (a multiple of the chunk);
    // with nseg > 1, seg_state holds (batch, nseg, 16-padded dstate, dim) floats and seg_dt_sum
    // (batch, nseg, dim).
    int64_t seg_len, nseg;
    float *seg_state, *seg_dt_sum;
    // Time strides of the channel path (the general kernel needs 1): u, delta, z, y and B, C.
    int64_t u_st, dl_st, z_st, y_st, B_st, C_st;
    bool softplus, has_D, has_z, has_bias, has_init, has_fin, vec;
    // (b, l, d) path: u, delta, z, y have unit channel stride and 16-byte aligned time rows (rows);
    // B and C rows of a step are dstate contiguous, 16-byte aligned elements (rows_bc_vec).
    bool rows, rows_bc_vec;
    ScanVariant variant;
    int multiprocessors;  // of the device, for kernels picked by how well a grid fills it
};

// Compile-time shape of one scan configuration.
template <class T, int kStatesPerLane, int kLanesPerChannel, bool kVariableBC>
struct ScanTraits {
    using Elem = T;
    static constexpr int kThreads = 128;
    static constexpr int kSPT = kStatesPerLane;
    static constexpr int kG = kLanesPerChannel;
    static constexpr int kChunk = 8;
    static constexpr int kChannels = kThreads / kG;                          // channels per block
    static constexpr int kStepsPerLane = kChunk >= kG ? kChunk / kG : 1;     // discretization work split
    static constexpr int kActiveLanes = kChunk / kStepsPerLane;
    static constexpr bool kVarBC = kVariableBC;
};

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads) selective_scan_kernel(ScanArgs a) {
    using T = typename Tr::Elem;
    constexpr int SPT = Tr::kSPT, G = Tr::kG, CH = Tr::kChunk, SPL = Tr::kStepsPerLane;
    __shared__ float s_dt[Tr::kChannels][CH + 1], s_du[Tr::kChannels][CH + 1], s_skip[Tr::kChannels][CH + 1],
        s_gate[Tr::kChannels][CH + 1], s_y[Tr::kChannels][CH + 1];

    const int lane_g = threadIdx.x % G, cl = threadIdx.x / G;
    const int64_t b = blockIdx.y;
    const int64_t d_raw = int64_t(blockIdx.x) * Tr::kChannels + cl;
    const bool channel_valid = d_raw < a.dim;
    const int64_t d = channel_valid ? d_raw : a.dim - 1;  // idle lanes shadow a real channel; they never store
    const int64_t g = d / a.channels_per_group;

    const T * up = reinterpret_cast<const T *>(a.u) + b * a.u_sb + d * a.u_sd;
    const T * dp = reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d * a.dl_sd;
    const T * zp = a.has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d * a.z_sd : nullptr;
    T * yp = reinterpret_cast<T *>(a.y) + b * a.y_sb + d * a.y_sd;
    const T *Bp, *Cp;
    if constexpr (Tr::kVarBC) {
        Bp = reinterpret_cast<const T *>(a.B) + b * a.B_sb + g * a.B_sg;
        Cp = reinterpret_cast<const T *>(a.C) + b * a.C_sb + g * a.C_sg;
    } else {
        Bp = reinterpret_cast<const T *>(a.B) + d * a.B_sg;
        Cp = reinterpret_cast<const T *>(a.C) + d * a.C_sg;
    }

    float A2[SPT], h[SPT], Bc[SPT], Cc[SPT];
#pragma unroll
    for (int s = 0; s < SPT; ++s) {
        const int64_t n = int64_t(lane_g) * SPT + s;
        const bool valid = n < a.dstate;
        A2[s] = valid ? a.A[d * a.A_sd + n * a.A_sn] * kLog2e : 0.0f;
        h[s] = valid && a.has_init ? a.init[b * a.init_sb + d * a.init_sd + n * a.init_sn] : 0.0f;
        Bc[s] = Cc[s] = 0.0f;
        if constexpr (!Tr::kVarBC) {
            if (valid) {
                Bc[s] = to_f32<T>(Bp[n * a.B_sn]);
                Cc[s] = to_f32<T>(Cp[n * a.C_sn]);
            }
        }
    }
    const float Dv = a.has_D ? a.D[d * a.D_s] : 0.0f;
    const float bias = a.has_bias ? a.delta_bias[d * a.bias_s] : 0.0f;

    for (int64_t t0 = 0; t0 < a.len; t0 += CH) {
        const bool full = t0 + CH <= a.len;
        // 1. Discretize this chunk's steps, split over the group's lanes.
        if (lane_g < Tr::kActiveLanes) {
            const int k0 = lane_g * SPL;
            const int64_t t = t0 + k0;
            float uu[SPL], dl[SPL], zz[SPL];
            if (full) {
                load_floats<T, SPL>(up + t, uu, a.vec);
                load_floats<T, SPL>(dp + t, dl, a.vec);
                if (a.has_z) load_floats<T, SPL>(zp + t, zz, a.vec);
            } else {
#pragma unroll
                for (int i = 0; i < SPL; ++i) {
                    const bool in = t + i < a.len;
                    uu[i] = in ? to_f32<T>(up[t + i]) : 0.0f;
                    dl[i] = in ? to_f32<T>(dp[t + i]) : 0.0f;
                    zz[i] = in && a.has_z ? to_f32<T>(zp[t + i]) : 0.0f;
                }
            }
#pragma unroll
            for (int i = 0; i < SPL; ++i) {
                const bool in = t + i < a.len;
                float dt = dl[i] + bias;
                if (a.softplus) dt = softplus_mufu(dt);
                // Steps past the end leave h unchanged: decay exp2(0) = 1 and no input.
                s_dt[cl][k0 + i] = in ? dt : 0.0f;
                s_du[cl][k0 + i] = in ? dt * uu[i] : 0.0f;
                s_skip[cl][k0 + i] = Dv * uu[i];
                s_gate[cl][k0 + i] = a.has_z ? silu_f(zz[i]) : 1.0f;
            }
        }
        // 2. B and C of this lane's states for the chunk.
        float Bv[SPT][CH], Cv[SPT][CH];
        if constexpr (Tr::kVarBC) {
#pragma unroll
            for (int s = 0; s < SPT; ++s) {
                const int64_t n = int64_t(lane_g) * SPT + s;
                if (n < a.dstate && full) {
                    load_floats<T, CH>(Bp + n * a.B_sn + t0, Bv[s], a.vec);
                    load_floats<T, CH>(Cp + n * a.C_sn + t0, Cv[s], a.vec);
                } else {
#pragma unroll
                    for (int k = 0; k < CH; ++k) {
                        const bool in = n < a.dstate && t0 + k < a.len;
                        Bv[s][k] = in ? to_f32<T>(Bp[n * a.B_sn + t0 + k]) : 0.0f;
                        Cv[s][k] = in ? to_f32<T>(Cp[n * a.C_sn + t0 + k]) : 0.0f;
                    }
                }
            }
        }
        __syncwarp();
        // 3. The recurrence over the chunk's steps.
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            const float dt = s_dt[cl][k], du = s_du[cl][k];
            float acc = 0.0f;
#pragma unroll
            for (int s = 0; s < SPT; ++s) {
                const float Bk = Tr::kVarBC ? Bv[s][k] : Bc[s];
                const float Ck = Tr::kVarBC ? Cv[s][k] : Cc[s];
                h[s] = exp2f(dt * A2[s]) * h[s] + du * Bk;
                acc += Ck * h[s];
            }
#pragma unroll
            for (int o = G / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (lane_g == 0) s_y[cl][k] = (acc + s_skip[cl][k]) * s_gate[cl][k];
        }
        __syncwarp();
        // 4. Write y for the chunk.
        if (lane_g < Tr::kActiveLanes && channel_valid) {
            const int k0 = lane_g * SPL;
            const int64_t t = t0 + k0;
            float out[SPL];
#pragma unroll
            for (int i = 0; i < SPL; ++i) out[i] = s_y[cl][k0 + i];
            if (full) {
                store_floats<T, SPL>(yp + t, out, a.vec);
            } else {
#pragma unroll
                for (int i = 0; i < SPL; ++i)
                    if (t + i < a.len) yp[t + i] = from_f32<T>(out[i]);
            }
        }
        __syncwarp();
    }
    if (a.has_fin && channel_valid) {
#pragma unroll
        for (int s = 0; s < SPT; ++s) {
            const int64_t n = int64_t(lane_g) * SPT + s;
            if (n < a.dstate) a.fin[b * a.fin_sb + d * a.fin_sd + n * a.fin_sn] = h[s];
        }
    }
}

template <class Tr>
void launch_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    if (batch > 65535) fail(MAMBA_STATUS_UNSUPPORTED, "selective_scan on CUDA supports batch <= 65535");
    const dim3 grid(unsigned(ceil_div(a.dim, Tr::kChannels)), unsigned(batch));
    count_queued(ctx);
    selective_scan_kernel<Tr><<<grid, Tr::kThreads, 0, stream_of(ctx)>>>(a);
    MAMBA_CUDA_CHECK_LAUNCH("selective_scan_kernel");
}

template <class T, bool kVar>
void dispatch_scan_config(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    const int64_t N = a.dstate;
    // Fewer lanes per channel when there are channels enough to fill the device; more otherwise.
    const bool many_channels = batch * a.dim >= 8 * int64_t(a.multiprocessors) * 128 / 4;
    if (N <= 4) launch_scan<ScanTraits<T, 4, 1, kVar>>(ctx, a, batch);
    else if (N <= 8) launch_scan<ScanTraits<T, 4, 2, kVar>>(ctx, a, batch);
    else if (N <= 16 && many_channels) launch_scan<ScanTraits<T, 4, 4, kVar>>(ctx, a, batch);
    else if (N <= 16) launch_scan<ScanTraits<T, 2, 8, kVar>>(ctx, a, batch);
    else if (N <= 32) launch_scan<ScanTraits<T, 4, 8, kVar>>(ctx, a, batch);
    else if (N <= 64) launch_scan<ScanTraits<T, 4, 16, kVar>>(ctx, a, batch);
    else if (N <= 128) launch_scan<ScanTraits<T, 4, 32, kVar>>(ctx, a, batch);
    else launch_scan<ScanTraits<T, 8, 32, kVar>>(ctx, a, batch);
}


// ---- the step shared by the channel and (b, l, d) rows kernels -----------------------------------------

// Per-thread constants of the step.
struct StepConsts {
    float bias, Dv;
    bool softplus, has_z;
};

// A step's N float32 B (or C) values from shared memory, as broadcast float4 loads.
template <int N>
__device__ __forceinline__ void shared_floats(const float * row, float (&out)[N]) {
    static_assert(N % 4 == 0, "whole float4s");
#pragma unroll
    for (int q = 0; q < N / 4; ++q) {
        const float4 v = reinterpret_cast<const float4 *>(row)[q];
        out[4 * q] = v.x, out[4 * q + 1] = v.y, out[4 * q + 2] = v.z, out[4 * q + 3] = v.w;
    }
}

__device__ __forceinline__ float scan_silu(float x) { return __fdividef(x, 1.0f + ex2_mufu(-x * kLog2e)); }

// dt of one step from its raw delta; 0 past the end (decay 1, no input). Branch-free so that the
// compiler can interleave consecutive steps.
__device__ __forceinline__ float step_dt(float delta, const StepConsts & c, bool in_range) {
    const float x = delta + c.bias;
    const float sp = softplus_mufu(x);
    const float dt = c.softplus ? sp : x;
    return in_range ? dt : 0.0f;
}

// One step of one channel: h = exp2(dt A log2e) h + dt u B, returns y = (C.h + D u) * SiLU(z) (0 for a
// segment summary).
template <int N, bool kSummary>
__device__ __forceinline__ float scan_step(float (&h)[N], const float (&A2)[N], float dt, float u, float z, const float (&Bv)[N], const float (&Cv)[N],
                                           const StepConsts & c) {
    static_assert(N >= 2, "two accumulators");
    const float du = dt * u;
#pragma unroll
    for (int n = 0; n < N; ++n) {
        h[n] = fmaf(ex2_mufu(dt * A2[n]), h[n], du * Bv[n]);
    }
    if constexpr (kSummary) {
        return 0.0f;
    } else {
        // Two accumulators halve the dependent chain.
        float acc0 = fmaf(Cv[0], h[0], c.Dv * u), acc1 = Cv[1] * h[1];
#pragma unroll
        for (int n = 2; n < N; n += 2) {
            acc0 = fmaf(Cv[n], h[n], acc0);
            if (n + 1 < N) acc1 = fmaf(Cv[n + 1], h[n + 1], acc1);
        }
        const float y = acc0 + acc1;
        const float gated = y * scan_silu(z);
        return c.has_z ? gated : y;
    }
}

// ---- one thread per channel, sequence split into segments -----------------------------------------
// The main path (variable B/C, dstate <= 16, 16-byte aligned rows, every block inside one group).
// Each thread owns one channel with all its states in registers, so there is no lane reduction; the
// block's 128 channels share one group's B and C, staged per chunk of 16 steps in shared memory as
// float [step][state] and read back as broadcast float4s. Each thread reads its u, delta and z rows
// 32 bytes (one full sector) per chunk with 16-byte loads, one chunk ahead of the compute, and B/C of
// the next chunk are loaded while the current one runs: one __syncthreads per chunk.
// Too few channels to fill the device (batch 1): the sequence is cut into segments run in parallel.
//   pass 1 (kSummary): segments 0..S-2 scan from a zero state and keep only their end state and the sum
//           of their dt (the segment's decay is exp2(A*log2e * sum dt)); no y, no C, no z is read;
//   pass 2 (combine_segments): per (batch, channel, state), a sequential carry over the S segments
//           turns the local end states into the true start state of every segment;
//   pass 3: every segment re-runs from its true start state and writes y (the last one the final state).
// The split costs one extra read of u, delta, B and one extra exp2 per (t, n) for segments 0..S-2,
// traded for S times more threads when batch * dim is small.
template <class T, int kStates>
struct ChannelScanTraits {
    using Elem = T;
    static constexpr int kN = kStates;                   // states per channel (dstate padded up)
    static constexpr int kChunk = 16;                    // steps per chunk: 32 bytes of a bf16 row
    static constexpr int kVec = 16 / int(sizeof(T));     // elements per 16-byte load
    static constexpr int kPieces = kChunk / kVec;        // 16-byte loads per row and chunk
    // Channels per block: small blocks spread B8 D5120 (640 blocks) evenly over 132 SMs; float32 with
    // 16 states needs 128 threads to stage B and C in one load each.
    static constexpr int kThreads = 2 * kN * kPieces <= 64 ? 64 : 128;
    // 16 warps an SM for 16-bit types (at most 128 registers a thread); float32 keeps its registers.
    static constexpr int kMinBlocksPerSM = sizeof(T) == 2 ? 512 / kThreads : 1;
    static_assert(2 * kN * kPieces <= kThreads, "B/C staging needs one thread per 16-byte piece");
};

// Threads an SM is assumed to hold (see kMinBlocksPerSM), and the shortest segment worth a split.
constexpr int64_t kResidentThreadsPerSM = 512;
constexpr int64_t kMinSegmentSteps = 32;

// One chunk of one row kept as raw 32-bit words (two 16-bit elements or one float) until consumed;
// words, not an array of T, so that per-step loads stay in registers.
template <class T, int CH>
struct RawChunk {
    static constexpr int kPerWord = 4 / int(sizeof(T));
    static constexpr int kWords = CH / kPerWord;
    static_assert(kWords % 4 == 0, "a chunk is whole 16-byte vectors");
    uint32_t w[kWords];
    __device__ __forceinline__ static uint32_t bits(T x) {
        if constexpr (std::is_same_v<T, float>) return __float_as_uint(x);
        else if constexpr (std::is_same_v<T, bf16_t>) return __bfloat16_as_ushort(x);
        else return __half_as_ushort(x);
    }
    __device__ __forceinline__ float at(int k) const {
        const uint32_t word = w[k / kPerWord] >> (16 * (kPerWord - 1) * (k % kPerWord));
        if constexpr (std::is_same_v<T, float>) return __uint_as_float(word);
        else if constexpr (std::is_same_v<T, bf16_t>) return __bfloat162float(__ushort_as_bfloat16((unsigned short)(word & 0xffffu)));
        else return __half2float(__ushort_as_half((unsigned short)(word & 0xffffu)));
    }
    // count < CH: the steps past the end read as zero. kContiguous: unit time stride, 16-byte aligned.
    template <bool kContiguous>
    __device__ __forceinline__ void load(const T * p, int count, int64_t stride) {
        if (kContiguous && count >= CH) {
#pragma unroll
            for (int c = 0; c < kWords / 4; ++c) {
                const uint4 q = reinterpret_cast<const uint4 *>(p)[c];
                w[4 * c] = q.x;
                w[4 * c + 1] = q.y;
                w[4 * c + 2] = q.z;
                w[4 * c + 3] = q.w;
            }
        } else {
#pragma unroll
            for (int i = 0; i < kWords; ++i) {
                uint32_t word = 0;
#pragma unroll
                for (int j = 0; j < kPerWord; ++j) {
                    const int k = i * kPerWord + j;
                    if (k < count) word |= bits(p[k * stride]) << (16 * (kPerWord - 1) * j);
                }
                w[i] = word;
            }
        }
    }
};

// kContiguous: every streamed tensor has unit time stride and 16-byte aligned rows ((b, d, l) and
// (b, g, n, l) layouts): 16-byte loads. Otherwise, e.g. (b, l, d) and (b, l, n) buffers viewed with the
// time axis last, each thread reads its channel one step at a time; consecutive threads read
// consecutive channels, so a warp's loads of one step stay coalesced.
template <class Tr, bool kSummary, bool kContiguous>
// Per-step loads need more address registers: fewer blocks an SM for them rather than spills.
__global__ void __launch_bounds__(Tr::kThreads, kContiguous ? Tr::kMinBlocksPerSM : (Tr::kMinBlocksPerSM * 3 + 3) / 4) selective_scan_channel_kernel(ScanArgs a) {
    segmented_pass_entry();
    using T = typename Tr::Elem;
    constexpr int N = Tr::kN, CH = Tr::kChunk, kVec = Tr::kVec, kPieces = Tr::kPieces;
    constexpr int kRows = kSummary ? N : 2 * N;  // B rows, then C rows
    // Strided staging: thread i holds elements i, i + kThreads, ... of the chunk's [B|C][step][state].
    constexpr int kStridedPer = kRows * CH / Tr::kThreads;
    static_assert(kRows * CH % Tr::kThreads == 0, "strided B/C staging splits evenly");
    __shared__ __align__(16) float s_B[2][CH][N];
    __shared__ __align__(16) float s_C[2][CH][N];

    const int64_t b = blockIdx.y;
    const int64_t seg = blockIdx.z;
    const int64_t d_first = int64_t(blockIdx.x) * Tr::kThreads;
    const int64_t d_raw = d_first + threadIdx.x;
    const bool channel_valid = d_raw < a.dim;
    const int64_t d = channel_valid ? d_raw : a.dim - 1;  // idle threads shadow a real channel; they never store
    const int64_t g = d_first / a.channels_per_group;     // the whole block is in one group
    const int64_t t_begin = seg * a.seg_len;
    const int64_t t_end = t_begin + a.seg_len < a.len ? t_begin + a.seg_len : a.len;

    const T * up = reinterpret_cast<const T *>(a.u) + b * a.u_sb + d * a.u_sd;
    const T * dp = reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d * a.dl_sd;
    const bool has_z = !kSummary && a.has_z;
    const T * zp = has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d * a.z_sd : nullptr;
    T * yp = reinterpret_cast<T *>(a.y) + b * a.y_sb + d * a.y_sd;
    const T * Bp = reinterpret_cast<const T *>(a.B) + b * a.B_sb + g * a.B_sg;
    const T * Cp = reinterpret_cast<const T *>(a.C) + b * a.C_sb + g * a.C_sg;

    // Segment state slots: (batch, segment, state, dim) floats, dim innermost for coalescing.
    auto slot = [&](int64_t s, int n) { return ((b * a.nseg + s) * N + n) * a.dim + d; };
    float A2[N], h[N];
#pragma unroll
    for (int n = 0; n < N; ++n) {
        const bool valid = n < a.dstate;
        A2[n] = valid ? a.A[d * a.A_sd + n * a.A_sn] * kLog2e : 0.0f;
        const float init = valid && a.has_init ? a.init[b * a.init_sb + d * a.init_sd + n * a.init_sn] : 0.0f;
        if constexpr (kSummary) {
            h[n] = 0.0f;
            // Slot 0 holds the initial state, read here, before pass 3 may overwrite an aliased final state.
            if (seg == 0 && channel_valid) a.seg_state[slot(0, n)] = init;
        } else {
            h[n] = a.nseg > 1 ? a.seg_state[slot(seg, n)] : init;
        }
    }
    const StepConsts consts{a.has_bias ? a.delta_bias[d * a.bias_s] : 0.0f, a.has_D ? a.D[d * a.D_s] : 0.0f, a.softplus, has_z};

    // Staging role: thread i < kRows * kPieces loads 16 bytes (piece i % kPieces) of row i / kPieces.
    const int stage_row = threadIdx.x / kPieces, stage_piece = threadIdx.x % kPieces;
    const bool stager = threadIdx.x < kRows * kPieces;
    const int stage_n = stage_row < N ? stage_row : stage_row - N;
    const bool stage_c = stage_row >= N;
    const bool stage_valid = stager && stage_n < a.dstate;
    const T * stage_ptr = (stage_c ? Cp + stage_n * a.C_sn : Bp + stage_n * a.B_sn) + stage_piece * kVec;
    RawChunk<T, kVec> stage_raw;
    T strided_raw[kContiguous ? 1 : kStridedPer];
    auto stage_load = [&](int64_t t0) {
        if constexpr (kContiguous) {
            const int64_t count = t_end - t0 - stage_piece * kVec;
            if (stage_valid) stage_raw.template load<true>(stage_ptr + t0, count < kVec ? int(count > 0 ? count : 0) : kVec, 1);
        } else {
#pragma unroll
            for (int j = 0; j < kStridedPer; ++j) {
                const int e = int(threadIdx.x) + j * Tr::kThreads;
                const int n = e % N, k = (e / N) % CH;
                const bool c = e >= N * CH;
                const bool in = n < a.dstate && t0 + k < t_end;
                strided_raw[j] = in ? (c ? Cp[n * a.C_sn + (t0 + k) * a.C_st] : Bp[n * a.B_sn + (t0 + k) * a.B_st]) : from_f32<T>(0.0f);
            }
        }
    };
    auto stage_store = [&](int buf) {
        if constexpr (kContiguous) {
            if (!stager) return;
            float(*dst)[N] = stage_c ? s_C[buf] : s_B[buf];
#pragma unroll
            for (int k = 0; k < kVec; ++k) dst[stage_piece * kVec + k][stage_n] = stage_valid ? stage_raw.at(k) : 0.0f;
        } else {
#pragma unroll
            for (int j = 0; j < kStridedPer; ++j) {
                const int e = int(threadIdx.x) + j * Tr::kThreads;
                const int n = e % N, k = (e / N) % CH;
                float(*dst)[N] = e >= N * CH ? s_C[buf] : s_B[buf];
                dst[k][n] = to_f32<T>(strided_raw[j]);
            }
        }
    };

    RawChunk<T, CH> u_next, dl_next, z_next{};  // z reads as zeros without z (its gate is then unused)
    auto row_load = [&](int64_t t0) {
        const int64_t left = t_end - t0;
        const int count = left < CH ? int(left) : CH;
        u_next.template load<kContiguous>(up + t0 * a.u_st, count, a.u_st);
        dl_next.template load<kContiguous>(dp + t0 * a.dl_st, count, a.dl_st);
        if (has_z) z_next.template load<kContiguous>(zp + t0 * a.z_st, count, a.z_st);
    };

    float dt_sum = 0.0f;
    row_load(t_begin);
    stage_load(t_begin);
    stage_store(0);
    __syncthreads();
    int buf = 0;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += CH, buf ^= 1) {
        const RawChunk<T, CH> uu = u_next, dl = dl_next, zz = z_next;
        const bool more = t0 + CH < t_end;
        if (more) {
            row_load(t0 + CH);
            stage_load(t0 + CH);
        }
        const int steps = t_end - t0 < CH ? int(t_end - t0) : CH;
        float out[CH];
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            const float dt = step_dt(dl.at(k), consts, k < steps);  // past the end: u also reads as zero
            if constexpr (kSummary) dt_sum += dt;
            float Bv[N], Cv[N];
            shared_floats<N>(s_B[buf][k], Bv);
            if constexpr (!kSummary) shared_floats<N>(s_C[buf][k], Cv);
            out[k] = scan_step<N, kSummary>(h, A2, dt, uu.at(k), zz.at(k), Bv, Cv, consts);
        }
        if constexpr (!kSummary) {
            if (channel_valid) {
                if (kContiguous && steps == CH) {
                    store_floats<T, CH>(yp + t0, out, true);
                } else {
#pragma unroll
                    for (int k = 0; k < CH; ++k)
                        if (k < steps) yp[(t0 + k) * a.y_st] = from_f32<T>(out[k]);
                }
            }
        }
        if (more) stage_store(buf ^ 1);
        __syncthreads();
    }
    if (!channel_valid) return;
    if constexpr (kSummary) {
        // Local end state into the next segment's slot; pass 2 adds the carried-in part.
#pragma unroll
        for (int n = 0; n < N; ++n) a.seg_state[slot(seg + 1, n)] = h[n];
        a.seg_dt_sum[(b * a.nseg + seg) * a.dim + d] = dt_sum;
    } else if (a.has_fin && seg == a.nseg - 1) {
#pragma unroll
        for (int n = 0; n < N; ++n)
            if (n < a.dstate) a.fin[b * a.fin_sb + d * a.fin_sd + n * a.fin_sn] = h[n];
    }
}

// Pass 2: slot[s] = exp2(A*log2e * dt_sum[s-1]) * slot[s-1] + slot[s], from slot 0 (the initial state).
// Up to kCarryLoadsAhead segments, a thread requests all of its slots and sums before the first FMA, so
// the carry costs one memory round trip instead of one per segment (B1 D5120 L2048: 8 segments).
constexpr int kCarryLoadsAhead = 16;
template <int N>
__global__ void __launch_bounds__(256) combine_segments_kernel(ScanArgs a, int64_t batch) {
    segmented_pass_entry();
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= batch * a.dim * N) return;
    const int64_t d = i % a.dim, n = (i / a.dim) % N, b = i / (a.dim * N);
    const float A2 = n < a.dstate ? a.A[d * a.A_sd + n * a.A_sn] * kLog2e : 0.0f;
    float * st = a.seg_state + (b * a.nseg * N + n) * a.dim + d;
    const float * dt_sum = a.seg_dt_sum + b * a.nseg * a.dim + d;
    const int64_t slot_stride = N * a.dim;
    float carry = st[0];
    if (a.nseg <= kCarryLoadsAhead) {
        float local[kCarryLoadsAhead], dts[kCarryLoadsAhead];
#pragma unroll
        for (int s = 1; s < kCarryLoadsAhead; ++s) {
            local[s] = s < a.nseg ? st[s * slot_stride] : 0.0f;
            dts[s] = s < a.nseg ? dt_sum[(s - 1) * a.dim] : 0.0f;
        }
#pragma unroll
        for (int s = 1; s < kCarryLoadsAhead; ++s) {
            if (s >= a.nseg) break;
            carry = exp2f(A2 * dts[s]) * carry + local[s];
            st[s * slot_stride] = carry;
        }
        return;
    }
    for (int64_t s = 1; s < a.nseg; ++s) {
        const float decay = exp2f(A2 * dt_sum[(s - 1) * a.dim]);
        carry = decay * carry + st[s * slot_stride];
        st[s * slot_stride] = carry;
    }
}

// Segment length (a multiple of chunk) for batch * dim threads over len steps; len itself (rounded
// up): no split. A split is worth its extra pass only when the threads fill less than half of the
// device (multiprocessors x resident_per_sm threads, the kernel's launch bounds); it then aims at
// `waves` full waves of blocks (2 by default; split's rows plan: 1). A one-wave plan splits only where
// the two-wave rule at kResidentThreadsPerSM would: its gain was measured at B1, and this keeps the
// calls between the two thresholds (B4 D5120 on 132 SMs) unsplit, as before.
inline int64_t scan_segment_len(int64_t batch, int64_t dim, int64_t len, int chunk, int multiprocessors,
                                int64_t resident_per_sm = kResidentThreadsPerSM, int64_t waves = 2) {
    int64_t nseg = 1;
    const int64_t channels = batch * ceil_div(dim, int64_t(64)) * 64;
    const int64_t capacity = int64_t(multiprocessors) * resident_per_sm;
    const int64_t split_capacity = waves == 1 ? int64_t(multiprocessors) * kResidentThreadsPerSM : capacity;
    if (2 * channels <= split_capacity) {
        nseg = waves * capacity / channels;
        const int64_t by_len = len / kMinSegmentSteps;
        nseg = nseg < by_len ? nseg : by_len;
        nseg = nseg < 1 ? 1 : nseg > 4096 ? 4096 : nseg;
    }
    return ceil_div(ceil_div(len, nseg), int64_t(chunk)) * chunk;
}

// Any strides; a.vec picks the 16-byte loads.
inline bool channel_scan_supported(int64_t batch, int64_t dim, int64_t len, int64_t dstate, int64_t channels_per_group, bool variable) {
    constexpr int kThreads = 128;
    const bool one_group_per_block = channels_per_group % kThreads == 0 || channels_per_group >= dim;
    return variable && dstate <= 16 && len > 0 && one_group_per_block && batch <= 65535;
}

// The passes of a scan over sequence segments (see selective_scan_channel_kernel): with more than one
// segment, the summaries of segments 0..S-2 and the carry across segments, then every segment's scan.
// summary and scan are the two instances of one kernel (kSummary true and false), N its padded dstate.
using ScanKernel = void (*)(ScanArgs);
template <int N>
void launch_segmented_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch, int channels_per_block, int threads, ScanKernel summary,
                           ScanKernel scan) {
    const unsigned blocks = unsigned(ceil_div(a.dim, int64_t(channels_per_block)));
    // PDL-safe (segmented_pass_entry): each pass's launch overlaps the tail of the one before.
    if (a.nseg > 1) {
        launch_kernel(ctx, "scan_segment_summaries", true, summary, dim3(blocks, unsigned(batch), unsigned(a.nseg - 1)), dim3(unsigned(threads)), 0, a);
        const int64_t total = batch * a.dim * N;
        launch_kernel(ctx, "combine_segments_kernel", true, combine_segments_kernel<N>, dim3(unsigned(ceil_div(total, int64_t(256)))), dim3(256u), 0, a, batch);
    }
    launch_kernel(ctx, "scan_segments", true, scan, dim3(blocks, unsigned(batch), unsigned(a.nseg)), dim3(unsigned(threads)), 0, a);
}

template <class Tr, bool kContiguous>
void launch_channel_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    launch_segmented_scan<Tr::kN>(ctx, a, batch, Tr::kThreads, Tr::kThreads, selective_scan_channel_kernel<Tr, true, kContiguous>,
                                  selective_scan_channel_kernel<Tr, false, kContiguous>);
}

// ---- (b, l, d) buffers: time-major tiles staged in shared memory -----------------------------------
// The model's views: u, delta, z, y as (batch, len, dim) buffers (channels contiguous, time stride dim)
// and B, C as columns of x_proj's (batch, len, dt_rank + 2 * dstate) output. A warp's threads own 32
// consecutive channels, so one step of one tensor is only 64 bytes (bf16) per warp; read step by step
// that is one small transaction in flight per tensor and step. Here a block's tile of CH steps x
// kThreads channels of u, delta (and z) is copied into shared memory with 16-byte cp.async for the whole
// tile at once, the next tile in flight while the current one is consumed (double buffered); each
// thread then reads its channel's column from shared memory, writes y over its u column, and the
// block stores the y tile with 16-byte stores. B and C rows of the tile's steps (CH x dstate) are
// staged once per block the same way (or element by element when not 16-byte aligned).
// Bytes and FLOPs are those of the main path (top of this file): the layout changes only the access
// pattern. Shared memory: 2 x CH x kThreads x (3 tensors) elements + 2 x 2 x CH x N elements + 2 x CH x N
// floats (the tile's B and C converted once per block, one more barrier a tile): 16 KB for bf16 (64
// threads, 16 steps), 27 KB for float32 (128 threads, 8 steps). Segments as the main path.
template <class T, int kStates>
struct RowsScanTraits {
    using Elem = T;
    static constexpr int kN = kStates;
    static constexpr int kThreads = ChannelScanTraits<T, kStates>::kThreads;
    static constexpr int kMinBlocksPerSM = ChannelScanTraits<T, kStates>::kMinBlocksPerSM;
    static constexpr int kVec = 16 / int(sizeof(T));               // elements per 16-byte piece
    static constexpr int kChunk = sizeof(T) == 2 ? 16 : 8;           // steps per tile (divides the segment length)
    static constexpr int kRowPieces = kThreads / kVec;               // pieces per step of a tile
    static constexpr int kTilePieces = kChunk * kRowPieces;          // pieces per tile and tensor
    static constexpr int kPiecesPerThread = kTilePieces / kThreads;
    static constexpr int kBCRowPieces = kN * int(sizeof(T)) / 16;    // pieces per step of B (0: no vector)
    static_assert(kTilePieces % kThreads == 0, "tile pieces split evenly over the threads");
};

template <class Tr, bool kSummary>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM) selective_scan_rows_kernel(ScanArgs a) {
    segmented_pass_entry();
    using T = typename Tr::Elem;
    constexpr int N = Tr::kN, CH = Tr::kChunk, TH = Tr::kThreads, VEC = Tr::kVec;
    __shared__ __align__(16) T s_u[2][CH][TH];  // u tile; y is written over it
    __shared__ __align__(16) T s_dl[2][CH][TH];
    __shared__ __align__(16) T s_z[kSummary ? 1 : 2][CH][TH];
    __shared__ __align__(16) T s_B[2][CH][N];
    __shared__ __align__(16) T s_C[kSummary ? 1 : 2][CH][N];
    // The current tile's B and C as float32, converted once per block rather than by every thread per step.
    __shared__ __align__(16) float s_Bf[CH][N];
    __shared__ __align__(16) float s_Cf[kSummary ? 1 : CH][N];

    const int tid = int(threadIdx.x);
    const int64_t b = blockIdx.y;
    const int64_t seg = blockIdx.z;
    const int64_t d_first = int64_t(blockIdx.x) * TH;
    const int64_t d_raw = d_first + tid;
    const bool channel_valid = d_raw < a.dim;
    const int64_t d = channel_valid ? d_raw : a.dim - 1;  // idle threads shadow a real channel; they never store
    const int64_t g = d_first / a.channels_per_group;     // the whole block is in one group
    const int64_t t_begin = seg * a.seg_len;
    const int64_t t_end = t_begin + a.seg_len < a.len ? t_begin + a.seg_len : a.len;

    // Tile bases at the block's first channel (unit channel stride).
    const T * ub = reinterpret_cast<const T *>(a.u) + b * a.u_sb + d_first;
    const T * db = reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d_first;
    const bool has_z = !kSummary && a.has_z;
    const T * zb = has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d_first : nullptr;
    T * yb = reinterpret_cast<T *>(a.y) + b * a.y_sb + d_first;
    const T * Bp = reinterpret_cast<const T *>(a.B) + b * a.B_sb + g * a.B_sg;
    const T * Cp = reinterpret_cast<const T *>(a.C) + b * a.C_sb + g * a.C_sg;

    auto slot = [&](int64_t s, int n) { return ((b * a.nseg + s) * N + n) * a.dim + d; };
    float A2[N], h[N];
#pragma unroll
    for (int n = 0; n < N; ++n) {
        const bool valid = n < a.dstate;
        A2[n] = valid ? a.A[d * a.A_sd + n * a.A_sn] * kLog2e : 0.0f;
        const float init = valid && a.has_init ? a.init[b * a.init_sb + d * a.init_sd + n * a.init_sn] : 0.0f;
        if constexpr (kSummary) {
            h[n] = 0.0f;
            // Slot 0 holds the initial state, read here, before the last pass may overwrite an aliased final state.
            if (seg == 0 && channel_valid) a.seg_state[slot(0, n)] = init;
        } else {
            h[n] = a.nseg > 1 ? a.seg_state[slot(seg, n)] : init;
        }
    }
    const StepConsts consts{a.has_bias ? a.delta_bias[d * a.bias_s] : 0.0f, a.has_D ? a.D[d * a.D_s] : 0.0f, a.softplus, has_z};

    // Issues the copies of the tile at t0 into buffer buf. Steps past the segment end and channels past
    // dim (dim is a multiple of VEC, so a piece is all in or all out) read as zeros.
    auto tile_load = [&](int buf, int64_t t0) {
#pragma unroll
        for (int j = 0; j < Tr::kPiecesPerThread; ++j) {
            const int p = tid + j * TH;
            const int k = p / Tr::kRowPieces, ch = (p % Tr::kRowPieces) * VEC;
            const bool in = t0 + k < t_end && d_first + ch < a.dim;
            const int64_t t = in ? t0 + k : t_begin;  // a valid address even when nothing is read
            const int c = in ? ch : 0;
            cp_async_16(&s_u[buf][k][ch], ub + t * a.u_st + c, in);
            cp_async_16(&s_dl[buf][k][ch], db + t * a.dl_st + c, in);
            if (has_z) cp_async_16(&s_z[buf][k][ch], zb + t * a.z_st + c, in);
        }
        constexpr int kBCRows = kSummary ? 1 : 2;
        if constexpr (Tr::kBCRowPieces > 0) {
            if (a.rows_bc_vec) {
                constexpr int kPieces = kBCRows * CH * Tr::kBCRowPieces;
                for (int p = tid; p < kPieces; p += TH) {
                    const int piece = p % Tr::kBCRowPieces, k = (p / Tr::kBCRowPieces) % CH;
                    const bool is_c = p >= CH * Tr::kBCRowPieces;
                    const bool in = t0 + k < t_end;
                    const int64_t t = in ? t0 + k : t_begin;
                    T * dst = is_c ? &s_C[buf][k][piece * VEC] : &s_B[buf][k][piece * VEC];
                    const T * src = (is_c ? Cp + t * a.C_st : Bp + t * a.B_st) + piece * VEC;
                    cp_async_16(dst, src, in);
                }
                return;
            }
        }
        // Element by element (unaligned or strided B/C, padded dstate); plain stores into the free buffer.
        for (int e = tid; e < kBCRows * CH * N; e += TH) {
            const int n = e % N, k = (e / N) % CH;
            const bool is_c = e >= CH * N;
            const bool in = n < a.dstate && t0 + k < t_end;
            const T v = in ? (is_c ? Cp[n * a.C_sn + (t0 + k) * a.C_st] : Bp[n * a.B_sn + (t0 + k) * a.B_st]) : from_f32<T>(0.0f);
            if (is_c) s_C[buf][k][n] = v;
            else s_B[buf][k][n] = v;
        }
    };

    float dt_sum = 0.0f;
    tile_load(0, t_begin);
    cp_async_commit();
    int buf = 0;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += CH, buf ^= 1) {
        // The tile at t0 has landed for every thread, and every thread is done with the other buffer.
        cp_async_wait_all();
        __syncthreads();
        if (t0 + CH < t_end) {
            tile_load(buf ^ 1, t0 + CH);
            cp_async_commit();
        }
        const int steps = t_end - t0 < CH ? int(t_end - t0) : CH;
        for (int e = tid; e < CH * N; e += TH) {
            s_Bf[e / N][e % N] = to_f32<T>(s_B[buf][e / N][e % N]);
            if constexpr (!kSummary) s_Cf[e / N][e % N] = to_f32<T>(s_C[buf][e / N][e % N]);
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            // Past the end: decay 1 and no input (u and B read as zero).
            const float dt = step_dt(to_f32<T>(s_dl[buf][k][tid]), consts, k < steps);
            if constexpr (kSummary) dt_sum += dt;
            float Bv[N], Cv[N];
            shared_floats<N>(s_Bf[k], Bv);
            if constexpr (!kSummary) shared_floats<N>(s_Cf[k], Cv);
            const float z = has_z ? to_f32<T>(s_z[kSummary ? 0 : buf][k][tid]) : 0.0f;
            const float y = scan_step<N, kSummary>(h, A2, dt, to_f32<T>(s_u[buf][k][tid]), z, Bv, Cv, consts);
            if constexpr (!kSummary) s_u[buf][k][tid] = from_f32<T>(y);  // only this thread reads this column
        }
        if constexpr (!kSummary) {
            __syncthreads();
#pragma unroll
            for (int j = 0; j < Tr::kPiecesPerThread; ++j) {
                const int p = tid + j * TH;
                const int k = p / Tr::kRowPieces, ch = (p % Tr::kRowPieces) * VEC;
                if (k < steps && d_first + ch < a.dim)
                    *reinterpret_cast<uint4 *>(yb + (t0 + k) * a.y_st + ch) = *reinterpret_cast<const uint4 *>(&s_u[buf][k][ch]);
            }
        }
    }
    if (!channel_valid) return;
    if constexpr (kSummary) {
#pragma unroll
        for (int n = 0; n < N; ++n) a.seg_state[slot(seg + 1, n)] = h[n];
        a.seg_dt_sum[(b * a.nseg + seg) * a.dim + d] = dt_sum;
    } else if (a.has_fin && seg == a.nseg - 1) {
#pragma unroll
        for (int n = 0; n < N; ++n)
            if (n < a.dstate) a.fin[b * a.fin_sb + d * a.fin_sd + n * a.fin_sn] = h[n];
    }
}

template <class Tr>
void launch_rows_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    launch_segmented_scan<Tr::kN>(ctx, a, batch, Tr::kThreads, Tr::kThreads, selective_scan_rows_kernel<Tr, true>, selective_scan_rows_kernel<Tr, false>);
}

}  // namespace mamba::cuda::scan
