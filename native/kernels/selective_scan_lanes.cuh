// Kernel `duo` of the Mamba-1 scan's contiguous channel path (MAMBA_CUDA_SCAN_VARIANT=duo; the default
// of that path for dstate 5..16, every element type): two lanes per channel, each with half of the
// states, as split (selective_scan_split.cuh), but exchanging through shared memory instead of shuffles.
// The (b, l, d) rows path has no duo kernel: there duo runs split (measured below, duo lost there).
//
// Bytes and FLOPs are those of the main path (top of selective_scan_kernel.cuh). Why: split at bf16 B8
// D5120 has 19.4 warps an SM, each spending ~62 issue slots a step on a dependent in-order stream; the
// kernel waits on each warp's chain, not on the MUFU (floor ~0.40 ms). duo cuts that stream:
// - A block is 128 threads: 64 channels of one group. Lane q of a channel owns states q*NL..q*NL+NL-1
//   (NL = N/2; h and A*log2e in registers) and steps 8q..8q+7 of each 16-step chunk: it loads only its
//   8 elements of the u, delta, z rows (bf16: one 16-byte load each; the two lanes together read the
//   chunk's 32 bytes), computes dt and dt*u of its steps, and y of its steps.
// - Exchanges through shared memory rather than SHFL (split: 3 SHFL a step): phase 1, each lane writes
//   dt and dt*u of its steps and their D skip (6 STS.128); __syncwarp; phase 2, every lane reads (dt, dt*u)
//   of two steps per LDS.128, updates its NL states and writes its partial C.h of four steps per STS.128;
//   __syncwarp; phase 3, the owner of a step adds the two lanes' partials (4 LDS.128, 8 FADD) to the skip.
// - B and C of the chunk are staged as float once per block (one 16-byte load per staging thread, as
//   base) in [step][state] order, so that a lane reads its NL states of a step with NL/4 LDS.128 each.
// - Per lane and step (NL 8): 8 FMUL + 8 MUFU + 8 FMUL + 8 FFMA for h, 8 for C.h, 4 LDS.128 (B, C), and
//   half of a step's softplus, SiLU, loads and stores: ~46 issue slots against split's ~62, no SHFL,
//   4.75 shared accesses.
// - Launch bounds 5 blocks an SM (20 warps, 96 registers, as split); shared memory ~32 KB a block.
//   Segments (a sequence cut into parts for small batches) are planned for these resident threads
//   (scan_segment_len).
// - dstate 5..16 (padded to 8 or 16); masking, segments and the aliased final state as base
//   (selective_scan_kernel.cuh).
//
// Measured on an H200 (bf16, ms; every variant passed the scan tests). quad, quad_regs64, oct and
// sixteen were this kernel with 4, 4 (8 blocks an SM, 64 registers), 8 and 16 lanes a channel (NL
// states and 16/L steps a lane), on both paths; they lost everywhere and were removed:
//   channel path (b, d, l)                 base   split  duo    quad   quad_regs64  oct    sixteen
//   B8 D5120 L2048 N16 z bias softplus     0.892  0.706  0.612  0.905  0.969        0.900  1.245
//   B1 D5120 L16384                        1.180  1.135  1.030  1.343  1.183        1.359  1.364
//   rows path (b, l, d) view               base   split  duo    quad                oct    sixteen
//   B8 D5120 L2048                         0.751  0.686  0.752  1.011               1.034  1.438
//   B1 D5120 L512 (2.8b prefill chunk)     0.0643 0.0577 0.0619 0.0702              0.0750 0.0640
// ptxas (CUDA 11.8, sm_90, bf16 N16), registers / bytes spilled, channel path: duo 96 / 0 (also bf16
// N8; float32 N16 96 / 8; 31 KB shared memory a block at N16), quad 48 / 92 (about 17 LDL in a chunk's
// ~600 instructions), quad_regs64 64 / 24, oct 64 / 0, sixteen 72 / 0; rows path: duo 96 / 32, quad
// 64 / 100, oct 64 / 68, sixteen 72 / 0 (the rows spills sat in the tile copies, not in the step loop).
// So quad lost partly to spills in its step loop, quad_regs64 (fewer spills) to 1.2 waves at B8. oct and
// sixteen did not spill on the channel path, so their loss is not register bound; the likely cause (not
// profiled): every lane still reads (dt, dt*u) of all 16 steps and phase 3 reads L partial rows, so the
// shared traffic a channel-step grows with L while the state work a lane shrinks, and a chunk's 16 steps
// are cut into 2- or 1-step pieces between the phases. On the rows path duo's extra barrier a tile and
// its column reads of the tile (bank conflicts) cost more than the missing SHFL saved.
#pragma once

#include "selective_scan_kernel.cuh"

namespace mamba::cuda::scan {

template <class T, int kStates>
struct DuoScanTraits {
    using Elem = T;
    static constexpr int kN = kStates;
    static constexpr int kLanes = 2;
    static constexpr int kLaneStates = kN / kLanes;  // NL
    static constexpr int kChunk = 16;
    static constexpr int kLaneSteps = kChunk / kLanes;  // LS: 8
    static constexpr int kThreads = 128;
    static constexpr int kChannels = kThreads / kLanes;
    static constexpr int kMinBlocksPerSM = 5;
    static constexpr int kResidentThreads = kThreads * kMinBlocksPerSM;
    static constexpr int kVec = 16 / int(sizeof(T));  // elements per 16-byte staging load
    static constexpr int kPieces = kChunk / kVec;     // staging loads per B/C row and chunk
    // Shared strides in floats, padded so that a warp's accesses fall in distinct banks.
    // (dt, dt*u) of every step, then D*u of every step, per channel: 13 float4s, odd, so that the 16
    // channels of a warp spread over the banks.
    static constexpr int kDtStride = 3 * kChunk + 4;
    static constexpr int kPartRow = kChunk + 4;                  // one lane's partials
    static constexpr int kPartStride = kLanes * kPartRow + 16;  // a channel's partials
    static_assert(kLaneStates % 4 == 0, "a lane's B/C of a step are whole float4s");
    static_assert(kChunk == ChannelScanTraits<T, kStates>::kChunk, "segments are cut in base's chunks");
    static_assert(2 * kN * kPieces <= kThreads, "B/C staging needs one thread per 16-byte piece");
};

// A lane's 8 elements of one row, kept as raw 32-bit words until used; 16-byte loads when whole.
template <class T>
struct DuoRow {
    static constexpr int kSteps = 8;
    static constexpr int kPerWord = 4 / int(sizeof(T));
    static constexpr int kWords = kSteps / kPerWord;  // 4 (16-bit types) or 8 (float32)
    uint32_t w[kWords];
    __device__ __forceinline__ float at(int i) const {
        const uint32_t word = w[i / kPerWord] >> (16 * (kPerWord - 1) * (i % kPerWord));
        if constexpr (std::is_same_v<T, float>) return __uint_as_float(word);
        else if constexpr (std::is_same_v<T, bf16_t>) return __bfloat162float(__ushort_as_bfloat16((unsigned short)(word & 0xffffu)));
        else return __half2float(__ushort_as_half((unsigned short)(word & 0xffffu)));
    }
    // count < 8: the elements past it read as zero. p is 16-byte aligned when count >= 8.
    __device__ __forceinline__ void load(const T * p, int count) {
        if (count >= kSteps) {
#pragma unroll
            for (int c = 0; c < kWords / 4; ++c) {
                const uint4 q = reinterpret_cast<const uint4 *>(p)[c];
                w[4 * c] = q.x, w[4 * c + 1] = q.y, w[4 * c + 2] = q.z, w[4 * c + 3] = q.w;
            }
            return;
        }
#pragma unroll
        for (int i = 0; i < kWords; ++i) w[i] = 0;
#pragma unroll
        for (int k = 0; k < kSteps; ++k)
            if (k < count) w[k / kPerWord] |= RawChunk<T, 16>::bits(p[k]) << (16 * (kPerWord - 1) * (k % kPerWord));
    }
};

// Stores 8 floats as T: 16-byte stores when whole (p 16-byte aligned), else the first count.
template <class T>
__device__ __forceinline__ void store_duo_row(T * p, const float (&v)[8], int count) {
    if (count >= 8) {
        constexpr int kPerWord = 4 / int(sizeof(T)), kWords = 8 / kPerWord;
        uint32_t w[kWords];
#pragma unroll
        for (int i = 0; i < kWords; ++i) {
            w[i] = 0;
#pragma unroll
            for (int j = 0; j < kPerWord; ++j) w[i] |= RawChunk<T, 16>::bits(from_f32<T>(v[i * kPerWord + j])) << (16 * (kPerWord - 1) * j);
        }
#pragma unroll
        for (int c = 0; c < kWords / 4; ++c) reinterpret_cast<uint4 *>(p)[c] = make_uint4(w[4 * c], w[4 * c + 1], w[4 * c + 2], w[4 * c + 3]);
        return;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i)
        if (i < count) p[i] = from_f32<T>(v[i]);
}

// K consecutive floats (K a multiple of 4) from 16-byte aligned shared memory as LDS.128s.
template <int K>
__device__ __forceinline__ void shared_load(const float * p, float (&out)[K]) {
    static_assert(K % 4 == 0, "whole float4s");
#pragma unroll
    for (int i = 0; i < K; i += 4) {
        const float4 v = *reinterpret_cast<const float4 *>(p + i);
        out[i] = v.x, out[i + 1] = v.y, out[i + 2] = v.z, out[i + 3] = v.w;
    }
}

// The first K floats of v (K a multiple of 4) to 16-byte aligned shared memory as STS.128s.
template <int K, int M>
__device__ __forceinline__ void store_shared(float * p, const float (&v)[M]) {
    static_assert(K <= M && K % 4 == 0, "enough values, whole float4s");
#pragma unroll
    for (int i = 0; i < K; i += 4) *reinterpret_cast<float4 *>(p + i) = make_float4(v[i], v[i + 1], v[i + 2], v[i + 3]);
}

// ---- the three phases of a chunk ---------------------------------------------------------------------

// Phase 1: dt, dt * u (dt 0 past mine) and the D skip of this lane's LS steps into the channel's dt_row
// ((dt, dt*u) of every step, then D*u of every step); returns the sum of this lane's dt.
template <class Tr, bool kSummary>
__device__ __forceinline__ float duo_publish_steps(float * dt_row, int lane, const float (&dl)[Tr::kLaneSteps], const float (&u)[Tr::kLaneSteps],
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

// Phase 2: every step of the chunk: (dt, dt*u) of two steps a load from dt_row; this lane's NL states of
// B and C (Bs, Cs: the chunk's staged floats, [step][state]); this lane's partial C.h of four steps at a
// time into its row of the channel's part (kPartRow floats a lane).
template <class Tr, bool kSummary>
__device__ __forceinline__ void duo_recurrence(float (&h)[Tr::kLaneStates], const float (&A2)[Tr::kLaneStates], const float * dt_row, const float * Bs,
                                               const float * Cs, float * part, int lane) {
    constexpr int N = Tr::kN, NL = Tr::kLaneStates, CH = Tr::kChunk;
    float dd[4], Bg[NL], Cg[NL], acc[4];
#pragma unroll
    for (int k = 0; k < CH; ++k) {
        if (k % 2 == 0) shared_load<4>(dt_row + 2 * k, dd);
        shared_load<NL>(Bs + k * N + lane * NL, Bg);
        if constexpr (!kSummary) shared_load<NL>(Cs + k * N + lane * NL, Cg);
        const float dt = dd[2 * (k % 2)], du = dd[2 * (k % 2) + 1];
#pragma unroll
        for (int j = 0; j < NL; ++j) h[j] = fmaf(ex2_mufu(dt * A2[j]), h[j], du * Bg[j]);
        if constexpr (!kSummary) {
            float acc0 = Cg[0] * h[0], acc1 = 0.0f;
#pragma unroll
            for (int j = 1; j < NL; ++j) {
                if (j % 2) acc1 = fmaf(Cg[j], h[j], acc1);
                else acc0 = fmaf(Cg[j], h[j], acc0);
            }
            acc[k % 4] = acc0 + acc1;
            if (k % 4 == 3) store_shared<4>(part + lane * Tr::kPartRow + k - 3, acc);
        }
    }
}

// Phase 3: y of this lane's LS steps before the gate: the D skip plus the two lanes' partial C.h.
template <class Tr>
__device__ __forceinline__ void duo_sum_partials(const float * dt_row, const float * part, int lane, float (&y)[Tr::kLaneSteps]) {
    constexpr int LS = Tr::kLaneSteps;
    shared_load<LS>(dt_row + 2 * Tr::kChunk + LS * lane, y);
#pragma unroll
    for (int q = 0; q < Tr::kLanes; ++q) {
        float p[LS];
        shared_load<LS>(part + q * Tr::kPartRow + lane * LS, p);
#pragma unroll
        for (int i = 0; i < LS; ++i) y[i] += p[i];
    }
}

template <class Tr, bool kSummary>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM) selective_scan_duo_kernel(ScanArgs a) {
    segmented_pass_entry();
    using T = typename Tr::Elem;
    constexpr int N = Tr::kN, L = Tr::kLanes, NL = Tr::kLaneStates, CH = Tr::kChunk, LS = Tr::kLaneSteps;
    constexpr int kVec = Tr::kVec, kPieces = Tr::kPieces, TC = Tr::kChannels;
    constexpr int kRows = kSummary ? N : 2 * N;  // B rows, then C rows
    // B/C of a chunk as float, [step][state].
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
            dst[k * N + stage_n] = stage_valid ? stage_raw.at(i) : 0.0f;
        }
    };

    // This lane's steps of u and delta, one chunk ahead (z is loaded at the start of its chunk and used
    // at its end: fewer registers); past the end they read as zeros.
    DuoRow<T> u_next{}, dl_next{}, zz{};
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
        const DuoRow<T> uu = u_next, dl = dl_next;
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
            const float own_dt = duo_publish_steps<Tr, kSummary>(s_dt[cl], lane, dlf, uf, mine, consts);
            if constexpr (kSummary) dt_sum += own_dt;
        }
        __syncwarp();
        // Phase 2: every step of the chunk.
        duo_recurrence<Tr, kSummary>(h, A2, s_dt[cl], s_B[buf], s_C[kSummary ? 0 : buf], s_part[kSummary ? 0 : cl], lane);
        // Phase 3: the owner of a step sums the lanes' partials, adds the D skip, gates with SiLU(z), stores y.
        if constexpr (!kSummary) {
            __syncwarp();
            float y[LS];
            duo_sum_partials<Tr>(s_dt[cl], s_part[cl], lane, y);
            if (has_z) {
#pragma unroll
                for (int i = 0; i < LS; ++i) y[i] *= scan_silu(zz.at(i));
            }
            if (channel_valid) store_duo_row<T>(yp + t0, y, mine);
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
void launch_duo_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    launch_segmented_scan<Tr::kN>(ctx, a, batch, Tr::kChannels, Tr::kThreads, selective_scan_duo_kernel<Tr, true>, selective_scan_duo_kernel<Tr, false>);
}

}  // namespace mamba::cuda::scan
