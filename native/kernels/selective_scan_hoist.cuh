// Variant kernels of the contiguous channel path of the Mamba-1 selective scan (MAMBA_CUDA_SCAN_VARIANT;
// the default, `base`, is selective_scan_channel_kernel in selective_scan_kernel.cuh).
//
// Bytes and FLOPs are those of the main path (top of selective_scan_kernel.cuh): bf16 B8 D5120 L2048 N16
// moves 672 MB (0.16 ms at 4.2 TB/s) and issues per (channel, step) 16 exp2 + 4 MUFU for softplus and
// SiLU, 16 x (dt*A multiply, du*B multiply, h FMA, C FMA). The base kernel is bound by neither HBM nor a
// pipe's throughput but by latency: in sm_80 SASS of the bf16 N16 kernel a step is 121 issue slots of
// compute (41 FMUL, 38 FFMA, 20 MUFU, 8 LDS.128, 4 FADD, conversions) plus about 15 a step of chunk
// loads, staging and stores (about 136 in all); at 0.89 ms on an H200 (132 SMs x 4 schedulers, 1.8-2.0
// GHz) that is about 40% of one issue a clock per scheduler, and the MUFU (8 cycles a warp instruction
// per scheduler: 160 cycles a step, 0.40-0.44 ms for the whole B8 run) is busy 45-50% of the time. Warps issue in order, so a warp whose next instruction waits on a long chain
// (softplus: FADD, MUFU.EX2, MUFU.RCP, a 6-FMA series, then 16 MUFU.EX2 on its result) stalls; with 4
// warps a scheduler (128 registers a thread) nothing else is ready often enough.
//
// Design: the same data movement and arithmetic as base, reordered so independent work sits together:
// - Phase split per chunk of 16 steps: (1) dt and dt*u of all 16 steps (16 independent softplus chains,
//   their MUFU ops back to back), (2) the recurrence and C contraction of the 16 steps (only h is carried;
//   every exp2 of step k + 1 is ready while step k's FMAs drain), (3) D skip and SiLU(z) gate of the 16
//   steps (16 more independent chains) and the y store. Same float32 operations as base (the D skip is
//   added after C.h instead of before).
// - kSharedRows (variant hoist_smem): u, delta and z rows are copied into shared memory with 16-byte
//   cp.async one chunk ahead (each thread its own rows: no barrier needed for them), instead of held in
//   registers (48 registers for the current and the next chunk), and phase 3 re-reads u and z there, so
//   that the kernel fits 96 registers: 20 warps an SM (5 a scheduler) instead of 16. Shared memory per
//   64-thread bf16 block: rows 2 x 3 x 64 x 32 bytes = 12 KB, B/C 4 KB: 10 blocks an SM take 170 KB of
//   the H200's 227 KB. float32 keeps the register rows (its rows would take 24 KB a block).
// - Segments (few channels): the summary pass and the combine pass are those of base; only the passes'
//   kernel differs.
#pragma once

#include "selective_scan_kernel.cuh"

namespace mamba::cuda::scan {

template <class T, int kStates, bool kRowsInShared>
struct HoistScanTraits {
    using Elem = T;
    using Channel = ChannelScanTraits<T, kStates>;
    static constexpr int kN = kStates;
    static constexpr int kChunk = Channel::kChunk;
    static constexpr int kVec = Channel::kVec;
    static constexpr int kPieces = Channel::kPieces;
    static constexpr int kThreads = Channel::kThreads;
    // float32 rows would take 60 KB of shared memory a block: float32 keeps them in registers.
    static constexpr bool kSharedRows = kRowsInShared && sizeof(T) == 2;
    // Row stride in shared memory: unpadded (two-way bank conflicts on 6 16-byte reads and writes a chunk
    // cost less than the 50% more shared memory that would cut the blocks an SM).
    static constexpr int kRowStride = kChunk;
    // 16-bit types: 16 warps an SM (128 registers), 20 with the rows in shared memory (96 registers; at 24
    // warps and 80 registers the N16 recurrence spills 120 bytes).
    static constexpr int kMinBlocksPerSM = sizeof(T) == 2 ? (kSharedRows ? 640 : 512) / kThreads : 1;
};

template <class Tr, bool kSummary>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM) selective_scan_hoist_kernel(ScanArgs a) {
    using T = typename Tr::Elem;
    using Raw = RawChunk<T, Tr::kChunk>;
    constexpr int N = Tr::kN, CH = Tr::kChunk, kVec = Tr::kVec, kPieces = Tr::kPieces, TH = Tr::kThreads;
    constexpr int kRows = kSummary ? N : 2 * N;  // B rows, then C rows
    constexpr int kRowTensors = kSummary ? 2 : 3;  // u, delta (, z)
    constexpr bool kShared = Tr::kSharedRows;
    __shared__ __align__(16) float s_B[2][CH][N];
    __shared__ __align__(16) float s_C[kSummary ? 1 : 2][CH][N];
    __shared__ __align__(16) T s_rows[kShared ? 2 : 1][kRowTensors][kShared ? TH : 1][Tr::kRowStride];

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

    const bool has_z = !kSummary && a.has_z;
    const T * rows[3] = {reinterpret_cast<const T *>(a.u) + b * a.u_sb + d * a.u_sd, reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d * a.dl_sd,
                         has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d * a.z_sd : nullptr};
    T * yp = reinterpret_cast<T *>(a.y) + b * a.y_sb + d * a.y_sd;
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

    // B/C staging as in base: thread i < kRows * kPieces loads 16 bytes (piece i % kPieces) of row i / kPieces.
    const int stage_row = tid / kPieces, stage_piece = tid % kPieces;
    const bool stager = tid < kRows * kPieces;
    const int stage_n = stage_row < N ? stage_row : stage_row - N;
    const bool stage_c = stage_row >= N;
    const bool stage_valid = stager && stage_n < a.dstate;
    const T * stage_ptr = (stage_c ? Cp + stage_n * a.C_sn : Bp + stage_n * a.B_sn) + stage_piece * kVec;
    RawChunk<T, kVec> stage_raw;
    auto stage_load = [&](int64_t t0) {
        const int64_t count = t_end - t0 - stage_piece * kVec;
        if (stage_valid) stage_raw.template load<true>(stage_ptr + t0, count < kVec ? int(count > 0 ? count : 0) : kVec, 1);
    };
    auto stage_store = [&](int buf) {
        if (!stager) return;
        float(*dst)[N] = stage_c ? s_C[buf] : s_B[buf];
#pragma unroll
        for (int k = 0; k < kVec; ++k) dst[stage_piece * kVec + k][stage_n] = stage_valid ? stage_raw.at(k) : 0.0f;
    };

    // Rows of u, delta, z: registers one chunk ahead (base's scheme), or this thread's shared rows.
    Raw next[kShared ? 1 : kRowTensors] = {};  // z reads as zeros without z (its gate is then unused)
    auto rows_fetch = [&](int64_t t0, int buf) {
        const int64_t left = t_end - t0;
        const int count = left < CH ? int(left) : CH;
#pragma unroll
        for (int r = 0; r < kRowTensors; ++r) {
            if (r == 2 && !has_z) continue;
            if constexpr (kShared) {
#pragma unroll
                for (int q = 0; q < CH / kVec; ++q) {
                    T * dst = &s_rows[buf][r][tid][q * kVec];
                    if ((q + 1) * kVec <= count) {
                        cp_async_16(dst, rows[r] + t0 + q * kVec, true);
                    } else {
                        // A piece reaching past the end: element by element (what lies past the row end may
                        // not be addressable), zeros past the end.
#pragma unroll
                        for (int e = 0; e < kVec; ++e) dst[e] = q * kVec + e < count ? rows[r][t0 + q * kVec + e] : from_f32<T>(0.0f);
                    }
                }
            } else {
                next[r].template load<true>(rows[r] + t0, count, 1);
            }
        }
        if constexpr (kShared) cp_async_commit();
    };
    // Tensor r of this chunk from this thread's shared row (kShared).
    auto row_take = [&](int buf, int r) {
        Raw raw;
        const uint4 * src = reinterpret_cast<const uint4 *>(&s_rows[buf][r][kShared ? tid : 0][0]);
#pragma unroll
        for (int c = 0; c < Raw::kWords / 4; ++c) {
            const uint4 q = src[c];
            raw.w[4 * c] = q.x, raw.w[4 * c + 1] = q.y, raw.w[4 * c + 2] = q.z, raw.w[4 * c + 3] = q.w;
        }
        return raw;
    };

    float dt_sum = 0.0f;
    rows_fetch(t_begin, 0);
    stage_load(t_begin);
    stage_store(0);
    __syncthreads();
    int buf = 0;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += CH, buf ^= 1) {
        const bool more = t0 + CH < t_end;
        const int steps = t_end - t0 < CH ? int(t_end - t0) : CH;
        // Register rows: all of this chunk taken before the next chunk's loads overwrite them. Shared rows:
        // u and delta now, u and z again for phase 3 (fewer live registers in the recurrence).
        Raw cur[kRowTensors] = {};
        if constexpr (kShared) {
            cp_async_wait_all();  // this thread's own rows of this chunk have landed
            cur[0] = row_take(buf, 0);
            cur[1] = row_take(buf, 1);
        } else {
#pragma unroll
            for (int r = 0; r < kRowTensors; ++r) cur[r] = next[r];
        }
        if (more) {
            rows_fetch(t0 + CH, buf ^ 1);
            stage_load(t0 + CH);
        }
        // Phase 1: dt and dt * u of every step (past the end: dt = 0, u reads as zero).
        float dt[CH], du[CH];
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            dt[k] = step_dt(cur[1].at(k), consts, k < steps);
            du[k] = dt[k] * cur[0].at(k);
            if constexpr (kSummary) dt_sum += dt[k];
        }
        // Phase 2: the recurrence and the C contraction.
        float acc[CH];
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            float Bv[N];
            shared_floats<N>(s_B[buf][k], Bv);
#pragma unroll
            for (int n = 0; n < N; ++n) h[n] = fmaf(ex2_mufu(dt[k] * A2[n]), h[n], du[k] * Bv[n]);
            if constexpr (!kSummary) {
                float Cv[N];
                shared_floats<N>(s_C[buf][k], Cv);
                float acc0 = Cv[0] * h[0], acc1 = Cv[1] * h[1];
#pragma unroll
                for (int n = 2; n < N; n += 2) {
                    acc0 = fmaf(Cv[n], h[n], acc0);
                    if (n + 1 < N) acc1 = fmaf(Cv[n + 1], h[n + 1], acc1);
                }
                acc[k] = acc0 + acc1;
            }
        }
        // Phase 3: D skip, SiLU(z) gate, y.
        if constexpr (!kSummary) {
            const Raw uu = kShared ? row_take(buf, 0) : cur[0];
            const Raw zz = kShared ? (has_z ? row_take(buf, 2) : Raw{}) : cur[2];
            float out[CH];
#pragma unroll
            for (int k = 0; k < CH; ++k) {
                const float y = fmaf(consts.Dv, uu.at(k), acc[k]);
                out[k] = has_z ? y * scan_silu(zz.at(k)) : y;
            }
            if (channel_valid) {
                if (steps == CH) {
                    store_floats<T, CH>(yp + t0, out, true);
                } else {
#pragma unroll
                    for (int k = 0; k < CH; ++k)
                        if (k < steps) yp[t0 + k] = from_f32<T>(out[k]);
                }
            }
        }
        if (more) stage_store(buf ^ 1);
        __syncthreads();
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
void launch_hoist_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    launch_segmented_scan<Tr::kN>(ctx, a, batch, Tr::kThreads, Tr::kThreads, selective_scan_hoist_kernel<Tr, true>, selective_scan_hoist_kernel<Tr, false>);
}

}  // namespace mamba::cuda::scan
