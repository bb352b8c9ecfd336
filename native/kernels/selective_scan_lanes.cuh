// Kernels `duo`, `quad` (`quad_regs64`), `oct` and `sixteen` of the Mamba-1 scan's contiguous channel path
// and (b, l, d) rows path (MAMBA_CUDA_SCAN_VARIANT=duo|quad|quad_regs64|oct|sixteen; the default stays
// split, selective_scan_split.cuh): 2, 4, 8 or 16 lanes per channel, each with N/lanes of the states,
// exchanging through shared memory instead of shuffles (duo is split's layout with these exchanges).
// Not yet measured on a GPU. On the rows path quad_regs64 is quad and float32 duo runs split (below).
//
// Bytes and FLOPs are those of the main path (top of selective_scan_kernel.cuh). Why: split at bf16 B8
// D5120 has 19.4 warps an SM, each spending ~62 issue slots a step on a dependent in-order stream; the
// kernel waits on each warp's chain, not on the MUFU (floor ~0.40 ms). More lanes a channel give more
// warps an SM and a shorter stream per warp, without more MUFU work:
// - A block is 128 threads: 128/L channels (L = lanes) of one group. Lane q of a channel owns states
//   q*NL..q*NL+NL-1 (NL = N/L; h and A*log2e in registers) and steps q*LS..q*LS+LS-1 of each 16-step chunk
//   (LS = 16/L): it loads only its LS elements of the u, delta, z rows (bf16: 8, 4, 2 bytes; the L lanes
//   together read the chunk's 32-byte sector), computes dt and dt*u of its steps, and y of its steps.
// - Exchanges through shared memory rather than SHFL (split: 3 SHFL a step): phase 1, each lane writes
//   dt and dt*u of its steps and their D skip (2-5 STS); __syncwarp; phase 2, every lane reads (dt, dt*u) of two steps per
//   LDS.128, updates its NL states and writes its partial C.h of four steps per STS.128; __syncwarp;
//   phase 3, the owner of a step sums the L partials (L LDS of LS floats, (L-1)*LS FADD).
// - B and C of the chunk are staged as float once per block (one 16-byte load per staging thread, as
//   base) in the order [step / SG][lane][state of the lane][step % SG] with SG = max(1, 4/NL), so that a
//   lane reads NL states x SG steps with conflict-free LDS.128s: NL/4 LDS a step each for B and C.
// - Per lane and step, quad (NL 4, LS 4): 4 FMUL + 4 MUFU + 4 FMUL + 4 FFMA for h, 4 for C.h, 2 LDS.128
//   (B, C), 0.5 LDS.128 (dt, dt*u), 0.25 STS.128, and a quarter of a step's softplus, SiLU, loads and stores:
//   ~29 issue slots against split's ~62, ~115 a channel-step (split ~124, base ~136). sixteen (NL 1):
//   ~9 a lane-step, 1.25 shared accesses; one state a lane, so B1 D5120 fills 19 warps an SM unsplit
//   (B1 D5120 L16384: no segments, so no summary pass; quad plans 16 segments there, oct 6).
//   duo (NL 8, LS 8): ~46 a lane-step against split's ~62 (no SHFL; 4.75 shared accesses).
// - Launch bounds: duo 5 blocks an SM (20 warps, 96 registers, as split); quad 10 (40 warps, 48
//   registers: B8 D5120 needs 38.8, one wave); quad_regs64 the same kernel at 8 (32 warps, 64
//   registers: 1.2 waves at B8, fewer spills); oct 8 (64 registers); sixteen 7 (28 warps, 72 registers;
//   B1 D5120 needs 19.4). ptxas (CUDA 11.8, sm_90, bf16 N16): quad 48 registers, 92 bytes spilled (about
//   17 LDL in a chunk's ~600 instructions), quad_regs64 64 registers, 24 bytes; duo 96, oct 64, sixteen
//   72 without spills. Shared memory per block ~21 KB (quad), ~32 KB (duo). Segments (a sequence cut
//   into parts for small batches) are planned for these resident threads (scan_segment_len).
// - dstate 5..16 (padded to 8 or 16; with N 8 the lanes are min(L, 8)); masking, segments and the
//   aliased final state as base (selective_scan_kernel.cuh).
#pragma once

#include "selective_scan_kernel.cuh"

namespace mamba::cuda::scan {

// kBlocks: blocks an SM the launch bounds ask for (0: the default of the lane count, below).
template <class T, int kStates, int kLanesWanted, int kBlocks = 0>
struct LanesScanTraits {
    using Elem = T;
    static constexpr int kN = kStates;
    static constexpr int kLanes = kLanesWanted < kStates ? kLanesWanted : kStates;  // at least one state a lane
    static constexpr int kLaneStates = kN / kLanes;                                  // NL
    static constexpr int kChunk = 16;
    static constexpr int kLaneSteps = kChunk / kLanes;                               // LS
    static constexpr int kGroupSteps = kLaneStates >= 4 ? 1 : 4 / kLaneStates;        // SG: steps per B/C read
    static constexpr int kLaneWidth = kLaneStates * kGroupSteps;                      // W: floats per B/C read (4 or NL)
    static constexpr int kThreads = 128;
    static constexpr int kChannels = kThreads / kLanes;
    static constexpr int kMinBlocksPerSM = kBlocks > 0 ? kBlocks : kLanes == 2 ? 5 : kLanes == 4 ? 10 : kLanes == 8 ? 8 : 7;
    static constexpr int kResidentThreads = kThreads * kMinBlocksPerSM;
    static constexpr int kVec = 16 / int(sizeof(T));      // elements per 16-byte staging load
    static constexpr int kPieces = kChunk / kVec;        // staging loads per B/C row and chunk
    // Shared strides in floats, padded so that a warp's accesses fall in distinct banks.
    // (dt, dt*u) of every step, then D*u of every step, per channel: 13 float4s, odd, so that the 8
    // channels of a warp fall in distinct banks.
    static constexpr int kDtStride = 3 * kChunk + 4;
    static constexpr int kPartRow = kChunk + 4;                                   // one lane's partials
    static constexpr int kPartStride = kLanes * kPartRow + (kLanes == 4 ? 0 : 16);  // a channel's partials
    static_assert(kN % kLanes == 0 && kLaneWidth % 4 == 0, "a lane's B/C of SG steps are whole float4s");
    static_assert(kLaneSteps >= 1 && kChunk % 4 == 0, "whole float4 partials");
    static_assert(kChunk == ChannelScanTraits<T, kStates>::kChunk, "segments are cut in base's chunks");
    static_assert(2 * kN * kPieces <= kThreads, "B/C staging needs one thread per 16-byte piece");
};

// A lane's LS elements of one row, kept as raw 32-bit words until used; one vector load when whole.
template <class T, int LS>
struct LaneRow {
    static constexpr int kBytes = LS * int(sizeof(T));
    static constexpr int kPerWord = 4 / int(sizeof(T));
    static constexpr int kWords = kBytes >= 4 ? kBytes / 4 : 1;
    uint32_t w[kWords];
    __device__ __forceinline__ float at(int i) const {
        const uint32_t word = w[i / kPerWord] >> (16 * (kPerWord - 1) * (i % kPerWord));
        if constexpr (std::is_same_v<T, float>) return __uint_as_float(word);
        else if constexpr (std::is_same_v<T, bf16_t>) return __bfloat162float(__ushort_as_bfloat16((unsigned short)(word & 0xffffu)));
        else return __half2float(__ushort_as_half((unsigned short)(word & 0xffffu)));
    }
    // count < LS: the elements past it read as zero. p is aligned to kBytes when count >= LS.
    __device__ __forceinline__ void load(const T * p, int count) {
        if (count >= LS) {
            if constexpr (kBytes % 16 == 0) {
#pragma unroll
                for (int c = 0; c < kBytes / 16; ++c) {
                    const uint4 q = reinterpret_cast<const uint4 *>(p)[c];
                    w[4 * c] = q.x, w[4 * c + 1] = q.y, w[4 * c + 2] = q.z, w[4 * c + 3] = q.w;
                }
            } else if constexpr (kBytes == 8) {
                const uint2 q = *reinterpret_cast<const uint2 *>(p);
                w[0] = q.x, w[1] = q.y;
            } else if constexpr (kBytes == 4) {
                w[0] = *reinterpret_cast<const uint32_t *>(p);
            } else {
                w[0] = *reinterpret_cast<const unsigned short *>(p);
            }
            return;
        }
#pragma unroll
        for (int i = 0; i < kWords; ++i) w[i] = 0;
#pragma unroll
        for (int k = 0; k < LS; ++k)
            if (k < count) w[k / kPerWord] |= RawChunk<T, 16>::bits(p[k]) << (16 * (kPerWord - 1) * (k % kPerWord));
    }
};

// Stores LS floats as T: one vector store when whole (p aligned to LS elements), else the first count.
template <class T, int LS>
__device__ __forceinline__ void store_lane_row(T * p, const float (&v)[LS], int count) {
    constexpr int kBytes = LS * int(sizeof(T));
    if (count >= LS && kBytes >= 4) {
        constexpr int kWords = kBytes / 4, kPerWord = 4 / int(sizeof(T));
        uint32_t w[kWords > 0 ? kWords : 1];
#pragma unroll
        for (int i = 0; i < kWords; ++i) {
            w[i] = 0;
#pragma unroll
            for (int j = 0; j < kPerWord; ++j) w[i] |= RawChunk<T, 16>::bits(from_f32<T>(v[i * kPerWord + j])) << (16 * (kPerWord - 1) * j);
        }
        if constexpr (kBytes % 16 == 0) {
#pragma unroll
            for (int c = 0; c < kBytes / 16; ++c) reinterpret_cast<uint4 *>(p)[c] = make_uint4(w[4 * c], w[4 * c + 1], w[4 * c + 2], w[4 * c + 3]);
        }
        else if constexpr (kBytes == 8) *reinterpret_cast<uint2 *>(p) = make_uint2(w[0], w[1]);
        else if constexpr (kBytes == 4) *reinterpret_cast<uint32_t *>(p) = w[0];
        return;
    }
#pragma unroll
    for (int i = 0; i < LS; ++i)
        if (i < count) p[i] = from_f32<T>(v[i]);
}

// K consecutive floats from 16-byte aligned shared memory (K = 1, 2 or a multiple of 4) as vector loads.
template <int K>
__device__ __forceinline__ void shared_load(const float * p, float (&out)[K]) {
    if constexpr (K % 4 == 0) {
#pragma unroll
        for (int i = 0; i < K; i += 4) {
            const float4 v = *reinterpret_cast<const float4 *>(p + i);
            out[i] = v.x, out[i + 1] = v.y, out[i + 2] = v.z, out[i + 3] = v.w;
        }
    } else if constexpr (K == 2) {
        const float2 v = *reinterpret_cast<const float2 *>(p);
        out[0] = v.x, out[1] = v.y;
    } else {
        static_assert(K == 1, "1, 2 or a multiple of 4 floats");
        out[0] = *p;
    }
}

// The first K floats of v to 16-byte aligned shared memory (K = 1, 2 or a multiple of 4) as vector stores.
template <int K, int M>
__device__ __forceinline__ void store_shared(float * p, const float (&v)[M]) {
    static_assert(K <= M, "enough values");
    if constexpr (K % 4 == 0) {
#pragma unroll
        for (int i = 0; i < K; i += 4) *reinterpret_cast<float4 *>(p + i) = make_float4(v[i], v[i + 1], v[i + 2], v[i + 3]);
    } else if constexpr (K == 2) *reinterpret_cast<float2 *>(p) = make_float2(v[0], v[1]);
    else *p = v[0];
}

// ---- the three phases of a chunk, shared by the channel and (b, l, d) rows kernels ------------------

// Phase 1: dt, dt * u (dt 0 past mine) and the D skip of this lane's LS steps into the channel's dt_row
// ((dt, dt*u) of every step, then D*u of every step); returns the sum of this lane's dt.
template <class Tr, bool kSummary>
__device__ __forceinline__ float lanes_publish_steps(float * dt_row, int lane, const float (&dl)[Tr::kLaneSteps], const float (&u)[Tr::kLaneSteps],
                                                     int mine, const StepConsts & c) {
    constexpr int LS = Tr::kLaneSteps, CH = Tr::kChunk;
    float own[2 * LS], sum = 0.0f;
#pragma unroll
    for (int i = 0; i < LS; ++i) {
        own[2 * i] = step_dt(dl[i], c, i < mine);
        own[2 * i + 1] = own[2 * i] * u[i];
        sum += own[2 * i];
    }
    store_shared<2 * LS>(dt_row + 2 * LS * lane, own);
    if constexpr (!kSummary) {
        // The D skip, read back in phase 3 (u is not kept in registers through phase 2).
#pragma unroll
        for (int i = 0; i < LS; ++i) own[i] = c.Dv * u[i];
        store_shared<LS>(dt_row + 2 * CH + LS * lane, own);
    }
    return sum;
}

// Phase 2: every step of the chunk: (dt, dt*u) of two steps a load from dt_row; B and C (Bs, Cs: the
// chunk's staged floats) of SG steps a load; this lane's partial C.h of four steps at a time into its
// row of the channel's part (kPartRow floats a lane).
template <class Tr, bool kSummary>
__device__ __forceinline__ void lanes_recurrence(float (&h)[Tr::kLaneStates], const float (&A2)[Tr::kLaneStates], const float * dt_row, const float * Bs,
                                                 const float * Cs, float * part, int lane) {
    constexpr int L = Tr::kLanes, NL = Tr::kLaneStates, CH = Tr::kChunk, SG = Tr::kGroupSteps, W = Tr::kLaneWidth;
    float dd[4], Bg[W], Cg[W], acc[4];
#pragma unroll
    for (int k = 0; k < CH; ++k) {
        if (k % 2 == 0) shared_load<4>(dt_row + 2 * k, dd);
        if (k % SG == 0) {
            shared_load<W>(Bs + ((k / SG) * L + lane) * W, Bg);
            if constexpr (!kSummary) shared_load<W>(Cs + ((k / SG) * L + lane) * W, Cg);
        }
        const float dt = dd[2 * (k % 2)], du = dd[2 * (k % 2) + 1];
#pragma unroll
        for (int j = 0; j < NL; ++j) h[j] = fmaf(ex2_mufu(dt * A2[j]), h[j], du * Bg[j * SG + k % SG]);
        if constexpr (!kSummary) {
            float acc0 = Cg[k % SG] * h[0], acc1 = 0.0f;
#pragma unroll
            for (int j = 1; j < NL; ++j) {
                if (j % 2) acc1 = fmaf(Cg[j * SG + k % SG], h[j], acc1);
                else acc0 = fmaf(Cg[j * SG + k % SG], h[j], acc0);
            }
            acc[k % 4] = acc0 + acc1;
            if (k % 4 == 3) store_shared<4>(part + lane * Tr::kPartRow + k - 3, acc);
        }
    }
}

// Phase 3: y of this lane's LS steps before the gate: the D skip plus the L lanes' partial C.h.
template <class Tr>
__device__ __forceinline__ void lanes_sum_partials(const float * dt_row, const float * part, int lane, float (&y)[Tr::kLaneSteps]) {
    constexpr int L = Tr::kLanes, LS = Tr::kLaneSteps;
    shared_load<LS>(dt_row + 2 * Tr::kChunk + LS * lane, y);
#pragma unroll
    for (int q = 0; q < L; ++q) {
        float p[LS];
        shared_load<LS>(part + q * Tr::kPartRow + lane * LS, p);
#pragma unroll
        for (int i = 0; i < LS; ++i) y[i] += p[i];
    }
}

template <class Tr, bool kSummary>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM) selective_scan_lanes_kernel(ScanArgs a) {
    using T = typename Tr::Elem;
    constexpr int N = Tr::kN, L = Tr::kLanes, NL = Tr::kLaneStates, CH = Tr::kChunk, LS = Tr::kLaneSteps, SG = Tr::kGroupSteps, W = Tr::kLaneWidth;
    constexpr int kVec = Tr::kVec, kPieces = Tr::kPieces, TC = Tr::kChannels;
    constexpr int kRows = kSummary ? N : 2 * N;  // B rows, then C rows
    // B/C of a chunk: float index ((k / SG) * L + lane) * W + j * SG + k % SG for step k, state lane*NL+j.
    __shared__ __align__(16) float s_B[2][CH * N];
    __shared__ __align__(16) float s_C[kSummary ? 1 : 2][kSummary ? 4 : CH * N];
    __shared__ __align__(16) float s_dt[TC][Tr::kDtStride];  // (dt, dt*u) of every step, then D*u, per channel
    __shared__ __align__(16) float s_part[kSummary ? 1 : TC][kSummary ? 4 : Tr::kPartStride];  // partial C.h, [lane][step]

    const int tid = int(threadIdx.x);
    const int lane = tid % L;  // which states and which steps of the chunk
    const int cl = tid / L;    // channel of the block
    const int64_t b = blockIdx.y;
    const int64_t seg = blockIdx.z;
    const int64_t d_first = int64_t(blockIdx.x) * TC;
    const int64_t d_raw = d_first + cl;
    const bool channel_valid = d_raw < a.dim;
    const int64_t d = channel_valid ? d_raw : a.dim - 1;  // idle lanes shadow a real channel; they never store
    const int64_t g = d_first / a.channels_per_group;     // the whole block is in one group
    const int64_t t_begin = seg * a.seg_len;
    const int64_t t_end = t_begin + a.seg_len < a.len ? t_begin + a.seg_len : a.len;
    const bool has_z = !kSummary && a.has_z;

    // This lane's steps of a chunk start at lane * LS.
    const T * up = reinterpret_cast<const T *>(a.u) + b * a.u_sb + d * a.u_sd + lane * LS;
    const T * dp = reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d * a.dl_sd + lane * LS;
    const T * zp = has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d * a.z_sd + lane * LS : nullptr;
    T * yp = reinterpret_cast<T *>(a.y) + b * a.y_sb + d * a.y_sd + lane * LS;
    const T * Bp = reinterpret_cast<const T *>(a.B) + b * a.B_sb + g * a.B_sg;
    const T * Cp = reinterpret_cast<const T *>(a.C) + b * a.C_sb + g * a.C_sg;

    auto slot = [&](int64_t s, int n) { return ((b * a.nseg + s) * N + n) * a.dim + d; };
    float A2[NL], h[NL];
#pragma unroll
    for (int j = 0; j < NL; ++j) {
        const int n = lane * NL + j;
        const bool valid = n < a.dstate;
        A2[j] = valid ? a.A[d * a.A_sd + n * a.A_sn] * kLog2e : 0.0f;
        const float init = valid && a.has_init ? a.init[b * a.init_sb + d * a.init_sd + n * a.init_sn] : 0.0f;
        if constexpr (kSummary) {
            h[j] = 0.0f;
            // Slot 0 holds the initial state, read here, before the last pass may overwrite an aliased final state.
            if (seg == 0 && channel_valid) a.seg_state[slot(0, n)] = init;
        } else {
            h[j] = a.nseg > 1 ? a.seg_state[slot(seg, n)] : init;
        }
    }
    const StepConsts consts{a.has_bias ? a.delta_bias[d * a.bias_s] : 0.0f, a.has_D ? a.D[d * a.D_s] : 0.0f, a.softplus, has_z};

    // B/C staging as base: thread i < kRows * kPieces loads 16 bytes (piece i % kPieces) of row i / kPieces.
    const int stage_row = tid / kPieces, stage_piece = tid % kPieces;
    const bool stager = tid < kRows * kPieces;
    const int stage_n = stage_row < N ? stage_row : stage_row - N;
    const bool stage_c = stage_row >= N;
    const bool stage_valid = stager && stage_n < a.dstate;
    const T * stage_ptr = (stage_c ? Cp + stage_n * a.C_sn : Bp + stage_n * a.B_sn) + stage_piece * kVec;
    // Where state stage_n of step k goes: its lane's W floats of step group k / SG.
    const int stage_base = (stage_n / NL) * W + (stage_n % NL) * SG;
    RawChunk<T, kVec> stage_raw;
    auto stage_load = [&](int64_t t0) {
        const int64_t count = t_end - t0 - stage_piece * kVec;
        if (stage_valid) stage_raw.template load<true>(stage_ptr + t0, count < kVec ? int(count > 0 ? count : 0) : kVec, 1);
    };
    auto stage_store = [&](int buf) {
        if (!stager) return;
        float * dst = stage_c ? s_C[kSummary ? 0 : buf] : s_B[buf];
#pragma unroll
        for (int i = 0; i < kVec; ++i) {
            const int k = stage_piece * kVec + i;
            dst[(k / SG) * L * W + stage_base + k % SG] = stage_valid ? stage_raw.at(i) : 0.0f;
        }
    };

    // This lane's steps of u and delta, one chunk ahead (z is loaded at the start of its chunk and used
    // at its end: fewer registers); past the end they read as zeros.
    LaneRow<T, LS> u_next{}, dl_next{}, zz{};
    auto own_count = [&](int64_t t0) {
        const int64_t left = t_end - t0 - lane * LS;
        return left < LS ? int(left > 0 ? left : 0) : LS;
    };
    auto row_load = [&](int64_t t0) {
        const int count = own_count(t0);
        u_next.load(up + t0, count);
        dl_next.load(dp + t0, count);
    };

    float dt_sum = 0.0f;
    row_load(t_begin);
    stage_load(t_begin);
    stage_store(0);
    __syncthreads();
    int buf = 0;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += CH, buf ^= 1) {
        const LaneRow<T, LS> uu = u_next, dl = dl_next;
        const bool more = t0 + CH < t_end;
        const int mine = own_count(t0);
        if (has_z) zz.load(zp + t0, mine);
        if (more) {
            row_load(t0 + CH);
            stage_load(t0 + CH);
        }
        // Phase 1: dt, dt * u and the D skip of this lane's steps (past the end: dt = 0, u reads as zero).
        {
            float dlf[LS], uf[LS];
#pragma unroll
            for (int i = 0; i < LS; ++i) dlf[i] = dl.at(i), uf[i] = uu.at(i);
            const float own_dt = lanes_publish_steps<Tr, kSummary>(s_dt[cl], lane, dlf, uf, mine, consts);
            if constexpr (kSummary) dt_sum += own_dt;
        }
        __syncwarp();
        // Phase 2: every step of the chunk.
        lanes_recurrence<Tr, kSummary>(h, A2, s_dt[cl], s_B[buf], s_C[kSummary ? 0 : buf], s_part[kSummary ? 0 : cl], lane);
        // Phase 3: the owner of a step sums the lanes' partials, adds the D skip, gates with SiLU(z), stores y.
        if constexpr (!kSummary) {
            __syncwarp();
            float y[LS];
            lanes_sum_partials<Tr>(s_dt[cl], s_part[cl], lane, y);
            if (has_z) {
#pragma unroll
                for (int i = 0; i < LS; ++i) y[i] *= scan_silu(zz.at(i));
            }
            if (channel_valid) store_lane_row<T, LS>(yp + t0, y, mine);
        }
        if (more) stage_store(buf ^ 1);
        // Every lane is done with this chunk's B/C buffer, s_dt and s_part before the next chunk writes them.
        __syncthreads();
    }
    if constexpr (kSummary) {
#pragma unroll
        for (int o = L / 2; o > 0; o >>= 1) dt_sum += __shfl_xor_sync(0xffffffffu, dt_sum, o);  // every lane's steps
    }
    if (!channel_valid) return;
    if constexpr (kSummary) {
#pragma unroll
        for (int j = 0; j < NL; ++j) a.seg_state[slot(seg + 1, lane * NL + j)] = h[j];
        if (lane == 0) a.seg_dt_sum[(b * a.nseg + seg) * a.dim + d] = dt_sum;
    } else if (a.has_fin && seg == a.nseg - 1) {
#pragma unroll
        for (int j = 0; j < NL; ++j)
            if (lane * NL + j < a.dstate) a.fin[b * a.fin_sb + d * a.fin_sd + (lane * NL + j) * a.fin_sn] = h[j];
    }
}

template <class Tr>
void launch_lanes_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    launch_segmented_scan<Tr::kN>(ctx, a, batch, Tr::kChannels, Tr::kThreads, selective_scan_lanes_kernel<Tr, true>, selective_scan_lanes_kernel<Tr, false>);
}


// ---- the lanes kernels on (b, l, d) buffers ----------------------------------------------------------
// The model's views (see selective_scan_rows_kernel): tiles of CH steps x TC channels of u, delta (and z)
// copied into shared memory with 16-byte cp.async, double buffered; B and C rows of the tile's steps
// staged the same way and converted once per block into the lanes' float layout (one more barrier a
// tile); y written over the u tile and stored with 16-byte stores. The compute is the lanes kernel's:
// lane q of a channel reads u, delta (z) of its LS steps of the tile's column, phases 1-3 as above.
// Bytes and FLOPs are the main path's. Shared memory per block, bf16 N16: quad ~27 KB (8 blocks an SM
// by shared memory, so 8 in the launch bounds too: 64 registers), duo ~42 KB; float32 duo would exceed
// 48 KB and runs split. The tile's column reads are LS 2-byte loads a tensor a lane with up to 4-way
// bank conflicts (the L lanes read rows LS apart). ptxas (CUDA 11.8, sm_90, bf16 N16): quad 64
// registers, 100 bytes spilled, oct 64 / 68, sixteen 72 / 0, duo 96 / 32; the spill loads sit in the
// tile copies, not in the step loop.
template <class T, int kStates, int kLanesWanted>
struct LanesRowsScanTraits : LanesScanTraits<T, kStates, kLanesWanted, (kLanesWanted == 4 ? 8 : 0)> {
    using Base = LanesScanTraits<T, kStates, kLanesWanted, (kLanesWanted == 4 ? 8 : 0)>;
    static constexpr int kVec = 16 / int(sizeof(T));                     // elements per 16-byte piece
    static constexpr int kRowPieces = Base::kChannels / kVec;            // pieces per step of a tile
    static constexpr int kTilePieces = Base::kChunk * kRowPieces;        // pieces per tile and tensor
    static constexpr int kBCRowPieces = kStates * int(sizeof(T)) / 16;   // pieces per step of B
    static_assert(Base::kChannels % kVec == 0, "tile rows are whole 16-byte pieces");
    static_assert(kBCRowPieces >= 1, "B/C rows are whole 16-byte pieces");
};

template <class Tr, bool kSummary>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM) selective_scan_lanes_rows_kernel(ScanArgs a) {
    using T = typename Tr::Elem;
    constexpr int N = Tr::kN, L = Tr::kLanes, NL = Tr::kLaneStates, CH = Tr::kChunk, LS = Tr::kLaneSteps, SG = Tr::kGroupSteps, W = Tr::kLaneWidth;
    constexpr int TH = Tr::kThreads, TC = Tr::kChannels, VEC = Tr::kVec;
    __shared__ __align__(16) T s_u[2][CH][TC];  // u tile; y is written over it
    __shared__ __align__(16) T s_dl[2][CH][TC];
    __shared__ __align__(16) T s_z[kSummary ? 1 : 2][CH][TC];
    __shared__ __align__(16) T s_Braw[2][CH][N];
    __shared__ __align__(16) T s_Craw[kSummary ? 1 : 2][CH][N];
    // The tile's B and C as float in the lanes' order (see selective_scan_lanes_kernel).
    __shared__ __align__(16) float s_B[CH * N];
    __shared__ __align__(16) float s_C[kSummary ? 4 : CH * N];
    __shared__ __align__(16) float s_dt[TC][Tr::kDtStride];
    __shared__ __align__(16) float s_part[kSummary ? 1 : TC][kSummary ? 4 : Tr::kPartStride];

    const int tid = int(threadIdx.x);
    const int lane = tid % L;
    const int col = tid / L;  // this channel's column of the tile
    const int64_t b = blockIdx.y;
    const int64_t seg = blockIdx.z;
    const int64_t d_first = int64_t(blockIdx.x) * TC;
    const int64_t d_raw = d_first + col;
    const bool channel_valid = d_raw < a.dim;
    const int64_t d = channel_valid ? d_raw : a.dim - 1;  // idle lanes shadow a real channel; they never store
    const int64_t g = d_first / a.channels_per_group;     // the whole block is in one group
    const int64_t t_begin = seg * a.seg_len;
    const int64_t t_end = t_begin + a.seg_len < a.len ? t_begin + a.seg_len : a.len;
    const bool has_z = !kSummary && a.has_z;

    // Tile bases at the block's first channel (unit channel stride).
    const T * ub = reinterpret_cast<const T *>(a.u) + b * a.u_sb + d_first;
    const T * db = reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d_first;
    const T * zb = has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d_first : nullptr;
    T * yb = reinterpret_cast<T *>(a.y) + b * a.y_sb + d_first;
    const T * Bp = reinterpret_cast<const T *>(a.B) + b * a.B_sb + g * a.B_sg;
    const T * Cp = reinterpret_cast<const T *>(a.C) + b * a.C_sb + g * a.C_sg;

    auto slot = [&](int64_t s, int n) { return ((b * a.nseg + s) * N + n) * a.dim + d; };
    float A2[NL], h[NL];
#pragma unroll
    for (int j = 0; j < NL; ++j) {
        const int n = lane * NL + j;
        const bool valid = n < a.dstate;
        A2[j] = valid ? a.A[d * a.A_sd + n * a.A_sn] * kLog2e : 0.0f;
        const float init = valid && a.has_init ? a.init[b * a.init_sb + d * a.init_sd + n * a.init_sn] : 0.0f;
        if constexpr (kSummary) {
            h[j] = 0.0f;
            // Slot 0 holds the initial state, read here, before the last pass may overwrite an aliased final state.
            if (seg == 0 && channel_valid) a.seg_state[slot(0, n)] = init;
        } else {
            h[j] = a.nseg > 1 ? a.seg_state[slot(seg, n)] : init;
        }
    }
    const StepConsts consts{a.has_bias ? a.delta_bias[d * a.bias_s] : 0.0f, a.has_D ? a.D[d * a.D_s] : 0.0f, a.softplus, has_z};

    // Issues the copies of the tile at t0 into buffer buf. Steps past the segment end and channels past
    // dim (dim is a multiple of VEC, so a piece is all in or all out) read as zeros.
    auto tile_load = [&](int buf, int64_t t0) {
#pragma unroll
        for (int p0 = 0; p0 < Tr::kTilePieces; p0 += TH) {
            const int p = p0 + tid;
            if (Tr::kTilePieces % TH == 0 || p < Tr::kTilePieces) {
                const int k = p / Tr::kRowPieces, ch = (p % Tr::kRowPieces) * VEC;
                const bool in = t0 + k < t_end && d_first + ch < a.dim;
                const int64_t t = in ? t0 + k : t_begin;  // a valid address even when nothing is read
                const int c = in ? ch : 0;
                cp_async_16(&s_u[buf][k][ch], ub + t * a.u_st + c, in);
                cp_async_16(&s_dl[buf][k][ch], db + t * a.dl_st + c, in);
                if (has_z) cp_async_16(&s_z[buf][k][ch], zb + t * a.z_st + c, in);
            }
        }
        constexpr int kBCRows = kSummary ? 1 : 2;
        if (a.rows_bc_vec) {
            constexpr int kPieces = kBCRows * CH * Tr::kBCRowPieces;
            for (int p = tid; p < kPieces; p += TH) {
                const int piece = p % Tr::kBCRowPieces, k = (p / Tr::kBCRowPieces) % CH;
                const bool is_c = p >= CH * Tr::kBCRowPieces;
                const bool in = t0 + k < t_end;
                const int64_t t = in ? t0 + k : t_begin;
                T * dst = is_c ? &s_Craw[kSummary ? 0 : buf][k][piece * VEC] : &s_Braw[buf][k][piece * VEC];
                const T * src = (is_c ? Cp + t * a.C_st : Bp + t * a.B_st) + piece * VEC;
                cp_async_16(dst, src, in);
            }
            return;
        }
        // Element by element (unaligned or strided B/C, padded dstate); plain stores into the free buffer.
        for (int e = tid; e < kBCRows * CH * N; e += TH) {
            const int n = e % N, k = (e / N) % CH;
            const bool is_c = e >= CH * N;
            const bool in = n < a.dstate && t0 + k < t_end;
            const T v = in ? (is_c ? Cp[n * a.C_sn + (t0 + k) * a.C_st] : Bp[n * a.B_sn + (t0 + k) * a.B_st]) : from_f32<T>(0.0f);
            if (is_c) s_Craw[kSummary ? 0 : buf][k][n] = v;
            else s_Braw[buf][k][n] = v;
        }
    };

    float dt_sum = 0.0f;
    tile_load(0, t_begin);
    cp_async_commit();
    int buf = 0;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += CH, buf ^= 1) {
        // The tile at t0 has landed for every thread, and every thread is done with the other buffer and
        // with the previous tile's float B/C, s_dt and s_part.
        cp_async_wait_all();
        __syncthreads();
        if (t0 + CH < t_end) {
            tile_load(buf ^ 1, t0 + CH);
            cp_async_commit();
        }
        const int steps = t_end - t0 < CH ? int(t_end - t0) : CH;
        for (int e = tid; e < CH * N; e += TH) {
            const int k = e / N, n = e % N;
            const int at = ((k / SG) * L + n / NL) * W + (n % NL) * SG + k % SG;
            s_B[at] = to_f32<T>(s_Braw[buf][k][n]);
            if constexpr (!kSummary) s_C[at] = to_f32<T>(s_Craw[buf][k][n]);
        }
        // Phase 1 (its tile reads need no barrier: the tile landed above).
        {
            const int own = lane * LS;
            const int mine = steps - own < LS ? (steps - own > 0 ? steps - own : 0) : LS;
            float dlf[LS], uf[LS];
#pragma unroll
            for (int i = 0; i < LS; ++i) {
                dlf[i] = to_f32<T>(s_dl[buf][own + i][col]);
                uf[i] = to_f32<T>(s_u[buf][own + i][col]);
            }
            const float own_dt = lanes_publish_steps<Tr, kSummary>(s_dt[col], lane, dlf, uf, mine, consts);
            if constexpr (kSummary) dt_sum += own_dt;
        }
        __syncthreads();  // the float B/C of the tile (and s_dt of this warp)
        lanes_recurrence<Tr, kSummary>(h, A2, s_dt[col], s_B, s_C, s_part[kSummary ? 0 : col], lane);
        if constexpr (!kSummary) {
            __syncwarp();
            float y[LS];
            lanes_sum_partials<Tr>(s_dt[col], s_part[col], lane, y);
#pragma unroll
            for (int i = 0; i < LS; ++i) {
                const int k = lane * LS + i;
                const float gated = has_z ? y[i] * scan_silu(to_f32<T>(s_z[buf][k][col])) : y[i];
                s_u[buf][k][col] = from_f32<T>(gated);  // only this lane reads this entry
            }
            __syncthreads();
            for (int p = tid; p < Tr::kTilePieces; p += TH) {
                const int k = p / Tr::kRowPieces, ch = (p % Tr::kRowPieces) * VEC;
                if (k < steps && d_first + ch < a.dim)
                    *reinterpret_cast<uint4 *>(yb + (t0 + k) * a.y_st + ch) = *reinterpret_cast<const uint4 *>(&s_u[buf][k][ch]);
            }
        }
    }
    if constexpr (kSummary) {
#pragma unroll
        for (int o = L / 2; o > 0; o >>= 1) dt_sum += __shfl_xor_sync(0xffffffffu, dt_sum, o);  // every lane's steps
    }
    if (!channel_valid) return;
    if constexpr (kSummary) {
#pragma unroll
        for (int j = 0; j < NL; ++j) a.seg_state[slot(seg + 1, lane * NL + j)] = h[j];
        if (lane == 0) a.seg_dt_sum[(b * a.nseg + seg) * a.dim + d] = dt_sum;
    } else if (a.has_fin && seg == a.nseg - 1) {
#pragma unroll
        for (int j = 0; j < NL; ++j)
            if (lane * NL + j < a.dstate) a.fin[b * a.fin_sb + d * a.fin_sd + (lane * NL + j) * a.fin_sn] = h[j];
    }
}

template <class Tr>
void launch_lanes_rows_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    launch_segmented_scan<Tr::kN>(ctx, a, batch, Tr::kChannels, Tr::kThreads, selective_scan_lanes_rows_kernel<Tr, true>,
                                  selective_scan_lanes_rows_kernel<Tr, false>);
}

}  // namespace mamba::cuda::scan
